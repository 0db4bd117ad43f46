"""Upstream module `billing` (spec/UPSTREAM.md): its tables, batch functions and loaders."""

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


class PaymentsByCohortIdLoader(UpstreamLoader):
    module, key, many = "billing", "cohort_id", True

    def statement(self, keys: Sequence[Any]) -> Executable:
        p = payments.c
        return select(p.cohort_id, p.amount_cents, p.currency, p.status, p.due_date).where(
            p.cohort_id.in_(keys)
        )


class RefundsByCohortIdLoader(UpstreamLoader):
    """Refunds of the cohort's payments, with the payment's currency."""

    module, key, many = "billing", "cohort_id", True

    def statement(self, keys: Sequence[Any]) -> Executable:
        r = refunds.c
        return (
            select(payments.c.cohort_id, payments.c.currency, r.amount_cents)
            .join_from(refunds, payments, r.payment_id == payments.c.id)
            .where(payments.c.cohort_id.in_(keys))
        )
