"""Upstream module `talentscope` (spec/UPSTREAM.md): its tables, batch functions and loaders."""

from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    Column,
    Executable,
    Float,
    Integer,
    MetaData,
    Table,
    Text,
    func,
    select,
)

from loaders.base import UpstreamLoader
from loaders.types import Timestamp

metadata = MetaData()
readiness_scores = Table(
    "readiness_scores",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("cohort_id", Integer, nullable=False, index=True),
    Column("learner_id", Integer, nullable=False),
    Column("score", Float, nullable=False),
    Column("computed_at", Timestamp, nullable=False),
)
competency_scores = Table(
    "competency_scores",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("cohort_id", Integer, nullable=False, index=True),
    Column("learner_id", Integer, nullable=False),
    Column("competency", Text, nullable=False),
    Column("level", Integer, nullable=False),
    Column("assessed_at", Timestamp, nullable=False),
)


class LatestReadinessScoresByCohortIdLoader(UpstreamLoader):
    """Per (cohort, learner) the latest score: greatest computed_at, ties by greatest id."""

    module, key, many = "talentscope", "cohort_id", True

    def statement(self, keys: Sequence[Any]) -> Executable:
        r = readiness_scores.c
        rank = (
            func.row_number()
            .over(
                partition_by=(r.cohort_id, r.learner_id),
                order_by=(r.computed_at.desc(), r.id.desc()),
            )
            .label("rank")
        )
        ranked = select(r.cohort_id, r.learner_id, r.score, rank).where(r.cohort_id.in_(keys))
        sub = ranked.subquery()
        return select(sub.c.cohort_id, sub.c.learner_id, sub.c.score).where(sub.c.rank == 1)


class LatestCompetencyLevelsByCohortIdLoader(UpstreamLoader):
    """Per (cohort, learner, competency) the latest level: greatest assessed_at, then id."""

    module, key, many = "talentscope", "cohort_id", True

    def statement(self, keys: Sequence[Any]) -> Executable:
        c = competency_scores.c
        rank = (
            func.row_number()
            .over(
                partition_by=(c.cohort_id, c.learner_id, c.competency),
                order_by=(c.assessed_at.desc(), c.id.desc()),
            )
            .label("rank")
        )
        ranked = select(c.cohort_id, c.learner_id, c.competency, c.level, rank).where(
            c.cohort_id.in_(keys)
        )
        sub = ranked.subquery()
        return select(sub.c.cohort_id, sub.c.learner_id, sub.c.competency, sub.c.level).where(
            sub.c.rank == 1
        )
