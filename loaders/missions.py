"""Upstream module `missions` (spec/UPSTREAM.md): its tables, batch functions and loaders."""

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
    select,
)

from loaders.base import UpstreamLoader
from loaders.types import Timestamp

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


class MissionSubmissionsByCohortIdLoader(UpstreamLoader):
    """Submissions to the cohort's missions (missions and submissions share a module)."""

    module, key, many = "missions", "cohort_id", True

    def statement(self, keys: Sequence[Any]) -> Executable:
        s = mission_submissions.c
        return (
            select(
                missions.c.cohort_id,
                s.mission_id,
                s.status,
                s.submitted_at,
                s.reviewed_at,
            )
            .join_from(mission_submissions, missions, s.mission_id == missions.c.id)
            .where(missions.c.cohort_id.in_(keys))
        )
