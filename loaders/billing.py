"""Upstream module `billing` (docs/upstream.md): its tables, batch functions and loaders."""

from collections.abc import Sequence
from datetime import date
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
    func,
    select,
)
from sqlalchemy.engine import Row

from loaders.base import fetch_by_key
from loaders.engines import Upstream
from loaders.types import Timestamp

metadata = MetaData()
payments = Table(
    "payments",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("enrollment_id", Integer, nullable=False),
    Column("cohort_id", Integer, nullable=False, index=True),
    Column("learner_id", Integer, nullable=False),
    Column("amount_cents", Integer, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("status", String(16), nullable=False),
    Column("due_date", Date, nullable=False),
    Column("paid_at", Timestamp, nullable=True),
)
refunds = Table(
    "refunds",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("payment_id", Integer, ForeignKey("payments.id"), nullable=False, index=True),
    Column("amount_cents", Integer, nullable=False),
    Column("refunded_at", Timestamp, nullable=False),
    Column("reason", Text, nullable=False),
)


# --- Batch functions (whole batches known up front: a refresh cycle's cohorts) ----------


async def payment_totals_by_cohort_id(
    upstream: Upstream, cohort_ids: Sequence[int], today: date
) -> list[list[Row[Any]]]:
    """Per cohort, its payments summed by currency, status and whether due before `today`:
    rows (cohort_id, currency, status, past_due, amount_cents, payments)."""
    p = payments.c

    def statement(keys: list[int]) -> Executable:
        flagged = (
            select(
                p.cohort_id,
                p.currency,
                p.status,
                (p.due_date < today).label("past_due"),
                p.amount_cents,
            )
            .where(p.cohort_id.in_(keys))
            .subquery()
        )
        f = flagged.c
        return select(
            f.cohort_id,
            f.currency,
            f.status,
            f.past_due,
            func.sum(f.amount_cents).label("amount_cents"),
            func.count().label("payments"),
        ).group_by(f.cohort_id, f.currency, f.status, f.past_due)

    return await fetch_by_key(upstream, "billing", statement, cohort_ids, "cohort_id")


async def refund_totals_by_cohort_id(
    upstream: Upstream, cohort_ids: Sequence[int]
) -> list[list[Row[Any]]]:
    """Per cohort, the refunds of its payments summed by the payment's currency:
    rows (cohort_id, currency, amount_cents, refunds)."""
    r, p = refunds.c, payments.c

    def statement(keys: list[int]) -> Executable:
        return (
            select(
                p.cohort_id,
                p.currency,
                func.sum(r.amount_cents).label("amount_cents"),
                func.count().label("refunds"),
            )
            .join_from(refunds, payments, r.payment_id == p.id)
            .where(p.cohort_id.in_(keys))
            .group_by(p.cohort_id, p.currency)
        )

    return await fetch_by_key(upstream, "billing", statement, cohort_ids, "cohort_id")
