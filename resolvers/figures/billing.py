"""Payments per currency."""

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from resolvers.figures.base import rate

CENTS_BY_STATUS = {status: f"{status}_cents" for status in ("paid", "pending", "failed")}


def payments(payment_totals: Sequence[Any], refund_totals: Sequence[Any]) -> list[dict[str, Any]]:
    """`payment_totals`: payments summed by (currency, status, past_due), past_due meaning
    due before today (rows with amount_cents, the sum, and payments, the count);
    `refund_totals`: refunds summed by the payment's currency (amount_cents, refunds)."""

    def empty() -> dict[str, Any]:
        return dict.fromkeys(
            (
                "billed_cents",
                "paid_cents",
                "pending_cents",
                "failed_cents",
                "refunded_cents",
                "overdue_cents",
                "refund_count",
                "failed_count",
            ),
            0,
        )

    by_currency: dict[str, dict[str, Any]] = defaultdict(empty)
    for p in payment_totals:
        acc = by_currency[p.currency]
        amount, status = p.amount_cents, p.status
        acc["billed_cents"] += amount
        if status in CENTS_BY_STATUS:
            acc[CENTS_BY_STATUS[status]] += amount
            if status == "failed":
                acc["failed_count"] += p.payments
            elif status == "pending" and p.past_due:
                acc["overdue_cents"] += amount
    for r in refund_totals:
        acc = by_currency[r.currency]
        acc["refunded_cents"] += r.amount_cents
        acc["refund_count"] += r.refunds
    return [
        {
            "currency": currency,
            **acc,
            "collection_rate": rate(acc["paid_cents"], acc["billed_cents"]),
        }
        for currency, acc in sorted(by_currency.items())
    ]
