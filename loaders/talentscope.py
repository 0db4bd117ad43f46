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
from sqlalchemy.engine import Row

from loaders.base import UpstreamLoader, fetch_by_key
from loaders.engines import Upstream
from loaders.types import Timestamp, int_list

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


# --- Batch functions (whole batches known up front: a refresh cycle's cohorts) ----------


async def level_learners_by_cohort_id(
    upstream: Upstream, cohort_ids: Sequence[int]
) -> list[list[Row[Any]]]:
    """Per cohort, the learners at each (competency, level) of their latest assessment
    (greatest assessed_at, then greatest id, per learner and competency): rows
    (cohort_id, competency, level, learner_ids)."""
    c = competency_scores.c

    def statement(keys: list[int]) -> Executable:
        rank = (
            func.row_number()
            .over(
                partition_by=(c.cohort_id, c.learner_id, c.competency),
                order_by=(c.assessed_at.desc(), c.id.desc()),
            )
            .label("rank")
        )
        ranked = (
            select(c.cohort_id, c.learner_id, c.competency, c.level, rank)
            .where(c.cohort_id.in_(keys))
            .subquery()
        )
        r = ranked.c
        return (
            select(r.cohort_id, r.competency, r.level, int_list(r.learner_id).label("learner_ids"))
            .where(r.rank == 1)
            .group_by(r.cohort_id, r.competency, r.level)
        )

    return await fetch_by_key(upstream, "talentscope", statement, cohort_ids, "cohort_id")
