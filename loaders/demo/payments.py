"""Rows of the billing module: payments, failures and refunds."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from itertools import count

from loaders import billing as bil
from loaders.demo.plan import (
    _between,
    _Cohort,
    _Enrollment,
    _later,
    _ts,
    _World,
)
from loaders.demo.scale import (
    BASE_PRICE_CENTS,
    MODE_PRICE_FACTOR,
    Rows,
)


@dataclass(slots=True)
class _Payment:
    enrollment: _Enrollment
    amount: int
    currency: str
    status: str
    due: date
    paid_at: datetime | None = None


def _rows_billing(w: _World) -> Rows:
    payment_ids = count(1)
    refund_ids = count(1)
    day0 = w.day0
    for c in w.cohorts:
        if not c.enrollments:
            continue
        rng = c.rng("billing")
        payments = _payments(c, rng, w)
        for p in payments:
            payment_id = next(payment_ids)
            yield (
                bil.payments,
                {
                    "id": payment_id,
                    "enrollment_id": p.enrollment.id,
                    "cohort_id": c.id,
                    "learner_id": p.enrollment.learner_id,
                    "amount_cents": p.amount,
                    "currency": p.currency,
                    "status": p.status,
                    "due_date": p.due,
                    "paid_at": p.paid_at,
                },
            )
            if p.status != "refunded" or p.paid_at is None:
                continue
            first_at = _later(rng, p.paid_at, timedelta(days=2), day0)
            shape = rng.random()
            if shape < 0.15:  # partial refund: half, rounded to whole units
                parts = [p.amount // 200 * 100]
            elif shape < 0.25:  # refunded in two instalments
                third = p.amount // 300 * 100
                parts = [third, p.amount - third]
            else:
                parts = [p.amount]
            for j, part in enumerate(parts):
                at = first_at if j == 0 else _later(rng, first_at, timedelta(days=1), day0)
                reason = "withdrawal" if p.enrollment.status == "withdrawn" else "goodwill"
                yield (
                    bil.refunds,
                    {
                        "id": next(refund_ids),
                        "payment_id": payment_id,
                        "amount_cents": part,
                        "refunded_at": at,
                        "reason": reason,
                    },
                )


def _payments(c: _Cohort, rng: random.Random, w: _World) -> list[_Payment]:
    today, day0 = w.today, w.day0
    factor = MODE_PRICE_FACTOR[c.mode] * rng.choice((0.9, 1.0, 1.1))
    out: list[_Payment] = []
    for e in c.enrollments:
        price = round(BASE_PRICE_CENTS[e.currency] * factor / 100) * 100
        first_due = c.start - timedelta(days=14)
        if e.seat_type == "paid" and rng.random() < 0.4:  # three instalments
            third = price // 300 * 100
            plan = [(third, first_due), (third, c.start + timedelta(days=30))]
            plan.append((price - 2 * third, c.start + timedelta(days=60)))
        elif e.seat_type in ("paid", "sponsored"):
            plan = [(price, first_due)]
        elif rng.random() < 0.3:  # scholarship deposit
            plan = [(rng.choice((2_500, 5_000, 10_000)), first_due)]
        else:
            plan = []
        for amount, due in plan:
            p = _Payment(e, amount, e.currency, "pending", due)
            if due >= today:
                if rng.random() < 0.2:
                    p.status = "paid"  # paid early
            else:
                weights = (88, 6, 3, 3)  # paid, pending (overdue), failed, refunded
                if e.status == "withdrawn":
                    weights = (30, 10, 10, 50)
                elif e.status == "deferred":
                    weights = (55, 10, 5, 30)
                p.status = rng.choices(("paid", "pending", "failed", "refunded"), weights)[0]
            if p.status in ("paid", "refunded"):
                hi = min(_ts(p.due + timedelta(days=5)), day0)
                lo = max(e.enrolled_at, _ts(p.due - timedelta(days=10)))
                if lo >= hi:  # paid early (or enrolled late): any time since enrolling
                    lo, hi = e.enrolled_at, day0
                p.paid_at = _between(rng, lo, hi)
            out.append(p)
    if c.status == "running" and c.archetype != "mixed":
        for p in out:
            if p.status == "failed":
                p.status = "pending"
        past_due = [p for p in out if p.due < today]
        if c.archetype == "pay_critical":
            _fail_until(rng, past_due, out, ratio=0.15)
        elif c.archetype == "pay_warning":
            _fail_one_small(past_due, out)
    return out


def _billed(payments: list[_Payment]) -> dict[str, int]:
    billed: dict[str, int] = {}
    for p in payments:
        billed[p.currency] = billed.get(p.currency, 0) + p.amount
    return billed


def _fail_until(
    rng: random.Random, past_due: list[_Payment], payments: list[_Payment], ratio: float
) -> None:
    """Fail past-due payments of the most-billed currency until failed/billed > `ratio`."""
    if not past_due:
        return
    billed = _billed(payments)  # the alert divides by everything billed, due or not
    currency = max(sorted({p.currency for p in past_due}), key=billed.__getitem__)
    candidates = [p for p in past_due if p.currency == currency]
    rng.shuffle(candidates)
    failed = 0
    for p in candidates:
        if failed > ratio * billed[currency]:
            break
        p.status, p.paid_at = "failed", None
        failed += p.amount


def _fail_one_small(past_due: list[_Payment], payments: list[_Payment]) -> None:
    """One failed payment, small enough to stay ≤ 10 % of its currency's billing."""
    billed = _billed(payments)
    if not past_due:
        return
    smallest = min(past_due, key=lambda p: (p.amount / billed[p.currency], p.enrollment.id))
    if smallest.amount <= 0.10 * billed[smallest.currency]:
        smallest.status, smallest.paid_at = "failed", None
