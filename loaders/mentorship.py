"""Upstream module `mentorship` (docs/upstream.md): its tables, batch functions and loaders."""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Column,
    Executable,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
    literal,
    select,
)
from sqlalchemy.engine import Row

from loaders.base import UpstreamLoader, fetch_by_key
from loaders.engines import Upstream
from loaders.types import Timestamp, instant

metadata = MetaData()
mentors = Table(
    "mentors",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("name", Text, nullable=False),
    Column("email", Text, nullable=False),
    Column("max_learners", Integer, nullable=False),
)
mentor_assignments = Table(
    "mentor_assignments",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("cohort_id", Integer, nullable=False, index=True),
    Column("mentor_id", Integer, ForeignKey("mentors.id"), nullable=False),
    Column("learner_id", Integer, nullable=False),
    Column("assigned_at", Timestamp, nullable=False),
    Column("ended_at", Timestamp, nullable=True),
)
mentorship_sessions = Table(
    "mentorship_sessions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("cohort_id", Integer, nullable=False, index=True),
    Column("mentor_id", Integer, ForeignKey("mentors.id"), nullable=False),
    Column("learner_id", Integer, nullable=False),
    Column("scheduled_at", Timestamp, nullable=False),
    Column("status", String(16), nullable=False),
)


class MentorByIdLoader(UpstreamLoader):
    module, key = "mentorship", "id"

    def statement(self, keys: Sequence[Any]) -> Executable:
        m = mentors.c
        return select(m.id, m.name, m.email, m.max_learners).where(m.id.in_(keys))


class ActiveMentorAssignmentsByCohortIdLoader(UpstreamLoader):
    """Assignments with `ended_at` null: the only ones any figure uses."""

    module, key, many = "mentorship", "cohort_id", True

    def statement(self, keys: Sequence[Any]) -> Executable:
        a = mentor_assignments.c
        return select(a.cohort_id, a.mentor_id, a.learner_id).where(
            a.cohort_id.in_(keys), a.ended_at.is_(None)
        )


# --- Batch functions (whole batches known up front: a refresh cycle's cohorts) ----------


async def session_counts_by_cohort_id(
    upstream: Upstream, cohort_ids: Sequence[int], now: datetime
) -> list[list[Row[Any]]]:
    """Per cohort, its sessions counted by mentor, status and whether they are past
    (scheduled at or before `now`, compared as instants): rows (cohort_id, mentor_id, status,
    past, sessions). A cohort's few dozen counts instead of its hundreds of sessions.
    Refused when a scheduled_at is not a timestamp (its `past` is null)."""
    s = mentorship_sessions.c
    past = instant(s.scheduled_at) <= instant(literal(now, Timestamp))

    def statement(keys: list[int]) -> Executable:
        flagged = (
            select(s.cohort_id, s.mentor_id, s.status, past.label("past"))
            .where(s.cohort_id.in_(keys))
            .subquery()
        )
        f = flagged.c
        return select(
            f.cohort_id, f.mentor_id, f.status, f.past, func.count().label("sessions")
        ).group_by(f.cohort_id, f.mentor_id, f.status, f.past)

    found = await fetch_by_key(upstream, "mentorship", statement, cohort_ids, "cohort_id")
    invalid = sum(r.sessions for rows in found for r in rows if r.past is None)
    upstream.check_instants("mentorship", "mentorship_sessions.scheduled_at", invalid)
    return found
