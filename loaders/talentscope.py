"""Upstream module `talentscope` (docs/upstream.md): its tables, batch functions and loaders."""

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
    case,
    func,
    or_,
    select,
)
from sqlalchemy.engine import Row

from loaders.base import UpstreamLoader, fetch_by_key
from loaders.engines import Upstream
from loaders.types import Timestamp, instant, int_list, invalid_instant

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
    """Per (cohort, learner) the latest score: greatest computed_at (as an instant), ties
    by greatest id. Refused when a computed_at is not a timestamp (the rows carry
    `invalid`, true only for such a row)."""

    module, key, many = "talentscope", "cohort_id", True
    checked_instants = "readiness_scores.computed_at"

    def statement(self, keys: Sequence[Any]) -> Executable:
        r = readiness_scores.c
        rank = (
            func.row_number()
            .over(
                partition_by=(r.cohort_id, r.learner_id),
                order_by=(instant(r.computed_at).desc(), r.id.desc()),
            )
            .label("rank")
        )
        invalid = invalid_instant(r.computed_at).label("invalid")
        ranked = select(r.cohort_id, r.learner_id, r.score, rank, invalid).where(
            r.cohort_id.in_(keys)
        )
        sub = ranked.subquery()
        return select(sub.c.cohort_id, sub.c.learner_id, sub.c.score, sub.c.invalid).where(
            or_(sub.c.rank == 1, sub.c.invalid)
        )


# --- Batch functions (whole batches known up front: a refresh cycle's cohorts) ----------


async def level_learners_by_cohort_id(
    upstream: Upstream, cohort_ids: Sequence[int]
) -> list[list[Row[Any]]]:
    """Per cohort, the learners at each (competency, level) of their latest assessment
    (greatest assessed_at as an instant, then greatest id, per learner and competency): rows
    (cohort_id, competency, level, learner_ids). Refused when an assessed_at is not a
    timestamp."""
    c = competency_scores.c

    def statement(keys: list[int]) -> Executable:
        rank = (
            func.row_number()
            .over(
                partition_by=(c.cohort_id, c.learner_id, c.competency),
                order_by=(instant(c.assessed_at).desc(), c.id.desc()),
            )
            .label("rank")
        )
        invalid = invalid_instant(c.assessed_at).label("invalid")
        ranked = (
            select(c.cohort_id, c.learner_id, c.competency, c.level, rank, invalid)
            .where(c.cohort_id.in_(keys))
            .subquery()
        )
        r = ranked.c
        return (
            select(
                r.cohort_id,
                r.competency,
                r.level,
                int_list(r.learner_id).label("learner_ids"),
                func.sum(case((r.invalid, 1), else_=0)).label("invalid"),
            )
            .where(or_(r.rank == 1, r.invalid))
            .group_by(r.cohort_id, r.competency, r.level)
        )

    found = await fetch_by_key(upstream, "talentscope", statement, cohort_ids, "cohort_id")
    invalid = sum(r.invalid for rows in found for r in rows)
    upstream.check_instants("talentscope", "competency_scores.assessed_at", invalid)
    return found
