"""Hand-built upstream rows for the figure tests, and the loaders' counts and sums of them.

Rows are `SimpleNamespace`s carrying the columns the loaders select; the clock is fixed.
Sessions, submissions, competency levels, portfolio items and payments are written one
row each, then counted or summed as their loaders count them (session_counts,
submission_counts, level_learners, portfolio_rows, payment_totals, refund_totals below;
tests/loaders/test_counts.py checks the loaders against these)."""

from collections import Counter
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace as Row
from typing import Any

from resolvers.figures import Thresholds

NOW = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)
TODAY = NOW.date()
DEFAULTS = Thresholds()


def enr(learner_id: int, status: str = "active", seat_type: str = "paid") -> Row:
    return Row(learner_id=learner_id, status=status, seat_type=seat_type)


def assign(mentor_id: int, learner_id: int) -> Row:
    return Row(mentor_id=mentor_id, learner_id=learner_id)


def session(mentor_id: int, scheduled_at: datetime, status: str) -> Row:
    return Row(mentor_id=mentor_id, scheduled_at=scheduled_at, status=status)


def score(learner_id: int, value: float) -> Row:
    return Row(learner_id=learner_id, score=value)


def level(learner_id: int, competency: str, value: int) -> Row:
    return Row(learner_id=learner_id, competency=competency, level=value)


def mission(mission_id: int, title: str = "", due: date = TODAY) -> Row:
    return Row(id=mission_id, title=title or f"Mission {mission_id}", due_date=due)


def sub(
    mission_id: int,
    status: str,
    submitted_at: datetime | None = None,
    reviewed_at: datetime | None = None,
) -> Row:
    return Row(
        mission_id=mission_id, status=status, submitted_at=submitted_at, reviewed_at=reviewed_at
    )


def reviewed(mission_id: int, status: str, hours: float) -> Row:
    """An approved or rejected submission reviewed `hours` after it was submitted."""
    submitted_at = NOW - timedelta(days=3)
    return sub(mission_id, status, submitted_at, submitted_at + timedelta(hours=hours))


def item(learner_id: int, status: str, quality: float | None = None) -> Row:
    return Row(learner_id=learner_id, status=status, quality_score=quality)


def portfolio_rows(items: list[Row]) -> list[Row]:
    """Published ones one by one, the others by status: portfolio_rows_by_cohort_id."""
    published = [Row(**vars(i), items=1) for i in items if i.status == "published"]
    others = Counter(i.status for i in items if i.status != "published")
    counted = [
        Row(learner_id=None, status=status, quality_score=None, items=n)
        for status, n in others.items()
    ]
    return published + counted


def pay(amount: int, currency: str, status: str, due: date = TODAY) -> Row:
    return Row(amount_cents=amount, currency=currency, status=status, due_date=due)


def refund(amount: int, currency: str) -> Row:
    return Row(amount_cents=amount, currency=currency)


def session_counts(sessions: list[Row], now: datetime) -> list[Row]:
    """By (mentor_id, status, past): loaders.mentorship.session_counts_by_cohort_id."""
    counts = Counter((s.mentor_id, s.status, s.scheduled_at <= now) for s in sessions)
    return [
        Row(mentor_id=mentor, status=status, past=past, sessions=n)
        for (mentor, status, past), n in counts.items()
    ]


def review_us(s: Row) -> int | None:
    if s.submitted_at is None or s.reviewed_at is None:
        return None
    return (s.reviewed_at - s.submitted_at) // timedelta(microseconds=1)


def submission_counts(submissions: list[Row]) -> list[Row]:
    """By (mission_id, status), with review times: submission_counts_by_cohort_id."""
    groups: dict[tuple[int, str], list[Row]] = {}
    for s in submissions:
        groups.setdefault((s.mission_id, s.status), []).append(s)
    return [
        Row(
            mission_id=mission,
            status=status,
            submissions=len(rows),
            review_us=[us for us in map(review_us, rows) if us is not None],
        )
        for (mission, status), rows in groups.items()
    ]


def level_learners(latest_levels: list[Row]) -> list[Row]:
    """By (competency, level), the learners: talentscope.level_learners_by_cohort_id."""
    groups: dict[tuple[str, int], list[int]] = {}
    for row in latest_levels:
        groups.setdefault((row.competency, row.level), []).append(row.learner_id)
    return [Row(competency=c, level=lv, learner_ids=ids) for (c, lv), ids in groups.items()]


def payment_totals(payments: list[Row], today: date) -> list[Row]:
    """By (currency, status, past_due): loaders.billing.payment_totals_by_cohort_id."""
    totals: dict[tuple[str, str, bool], list[int]] = {}
    for p in payments:
        acc = totals.setdefault((p.currency, p.status, p.due_date < today), [0, 0])
        acc[0] += p.amount_cents
        acc[1] += 1
    return [
        Row(currency=c, status=st, past_due=due, amount_cents=amount, payments=n)
        for (c, st, due), (amount, n) in totals.items()
    ]


def refund_totals(refunds: list[Row]) -> list[Row]:
    """By currency: loaders.billing.refund_totals_by_cohort_id."""
    totals: dict[str, list[int]] = {}
    for r in refunds:
        acc = totals.setdefault(r.currency, [0, 0])
        acc[0] += r.amount_cents
        acc[1] += 1
    return [Row(currency=c, amount_cents=a, refunds=n) for c, (a, n) in totals.items()]


def milestone(milestone_id: int, due: date, completed_at: datetime | None = None) -> Row:
    return Row(id=milestone_id, title=f"M{milestone_id}", due_date=due, completed_at=completed_at)


def mview(milestone_id: int, due: date) -> dict[str, Any]:
    return {"id": milestone_id, "title": f"M{milestone_id}", "due_date": due.isoformat()}


MENTORS = {
    10: Row(id=10, name="Ada", max_learners=5),
    20: Row(id=20, name="Grace", max_learners=3),
    30: Row(id=30, name="Linus", max_learners=2),
    99: Row(id=99, name="Unassigned", max_learners=9),
}
