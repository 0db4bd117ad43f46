"""Upstream module `portfolio` (docs/upstream.md): its tables, batch functions and loaders."""

from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    Column,
    Executable,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    func,
    literal,
    null,
    select,
    union_all,
)
from sqlalchemy.engine import Row

from loaders.base import fetch_by_key
from loaders.engines import Upstream
from loaders.types import Timestamp

metadata = MetaData()
portfolio_items = Table(
    "portfolio_items",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("cohort_id", Integer, nullable=False, index=True),
    Column("learner_id", Integer, nullable=False),
    Column("status", String(16), nullable=False),
    Column("quality_score", Float, nullable=True),
    Column("updated_at", Timestamp, nullable=False),
)


# --- Batch functions (whole batches known up front: a refresh cycle's cohorts) ----------

PUBLISHED = "published"


async def portfolio_rows_by_cohort_id(
    upstream: Upstream, cohort_ids: Sequence[int]
) -> list[list[Row[Any]]]:
    """Per cohort, rows (cohort_id, learner_id, status, quality_score, items): each published
    item (items 1), in the order the database returns them; then the other items counted by
    status (learner_id and quality_score null). What portfolio health reads, in about half
    the rows."""
    p = portfolio_items.c

    def statement(keys: list[int]) -> Executable:
        published = select(
            p.cohort_id, p.learner_id, p.status, p.quality_score, literal(1).label("items")
        ).where(p.cohort_id.in_(keys), p.status == PUBLISHED)
        others = (
            select(
                p.cohort_id,
                null().label("learner_id"),
                p.status,
                null().label("quality_score"),
                func.count().label("items"),
            )
            .where(p.cohort_id.in_(keys), p.status != PUBLISHED)
            .group_by(p.cohort_id, p.status)
        )
        return union_all(published, others)

    return await fetch_by_key(upstream, "portfolio", statement, cohort_ids, "cohort_id")
