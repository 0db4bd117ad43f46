"""Upstream module `missions` (docs/upstream.md): its tables, batch functions and loaders."""

from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    Column,
    Date,
    Executable,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    case,
    func,
    select,
)
from sqlalchemy.engine import Row

from loaders.base import UpstreamLoader, fetch_by_key
from loaders.engines import Upstream
from loaders.types import Timestamp, int_list, micros_between

metadata = MetaData()
missions = Table(
    "missions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("cohort_id", Integer, nullable=False, index=True),
    Column("title", Text, nullable=False),
    Column("due_date", Date, nullable=False),
)
mission_submissions = Table(
    "mission_submissions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("mission_id", Integer, ForeignKey("missions.id"), nullable=False, index=True),
    Column("learner_id", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("started_at", Timestamp, nullable=False),
    Column("submitted_at", Timestamp, nullable=True),
    Column("reviewed_at", Timestamp, nullable=True),
)


class MissionsByCohortIdLoader(UpstreamLoader):
    module, key, many = "missions", "cohort_id", True

    def statement(self, keys: Sequence[Any]) -> Executable:
        m = missions.c
        return (
            select(m.id, m.cohort_id, m.title, m.due_date)
            .where(m.cohort_id.in_(keys))
            .order_by(m.id)
        )


# --- Batch functions (whole batches known up front: a refresh cycle's cohorts) ----------


async def submission_counts_by_cohort_id(
    upstream: Upstream, cohort_ids: Sequence[int]
) -> list[list[Row[Any]]]:
    """Per cohort, its missions' submissions counted by mission and status, with the review
    times of those reviewed (`review_us`: microseconds from submitted_at to reviewed_at,
    of each submission with both set): rows (cohort_id, mission_id, status, submissions,
    review_us, timed: how many have both). Refused when a submission with both timestamps
    has one that is not a timestamp (its review time is then null)."""
    s = mission_submissions.c
    both = and_(s.submitted_at.is_not(None), s.reviewed_at.is_not(None))

    def statement(keys: list[int]) -> Executable:
        timed = (
            select(
                missions.c.cohort_id,
                s.mission_id,
                s.status,
                micros_between(s.submitted_at, s.reviewed_at).label("review_us"),
                case((both, 1), else_=0).label("timed"),
            )
            .join_from(mission_submissions, missions, s.mission_id == missions.c.id)
            .where(missions.c.cohort_id.in_(keys))
            .subquery()
        )
        t = timed.c
        return select(
            t.cohort_id,
            t.mission_id,
            t.status,
            func.count().label("submissions"),
            int_list(t.review_us).label("review_us"),
            func.sum(t.timed).label("timed"),
        ).group_by(t.cohort_id, t.mission_id, t.status)

    found = await fetch_by_key(upstream, "missions", statement, cohort_ids, "cohort_id")
    # A submission with both timestamps and no review time holds one that is not a timestamp.
    invalid = sum(r.timed - len(r.review_us) for rows in found for r in rows)
    upstream.check_instants("missions", "mission_submissions.submitted_at/reviewed_at", invalid)
    return found
