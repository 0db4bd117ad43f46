"""Upstream module `portfolio` (spec/UPSTREAM.md): its tables, batch functions and loaders."""

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
    select,
)

from loaders.base import UpstreamLoader
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


class PortfolioItemsByCohortIdLoader(UpstreamLoader):
    module, key, many = "portfolio", "cohort_id", True

    def statement(self, keys: Sequence[Any]) -> Executable:
        p = portfolio_items.c
        return select(p.cohort_id, p.learner_id, p.status, p.quality_score).where(
            p.cohort_id.in_(keys)
        )
