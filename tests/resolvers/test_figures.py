"""Every figure of spec/METRICS.md on tiny hand-built row sets, with exact expected values.

Rows are `SimpleNamespace`s carrying the columns the loaders select; the clock is fixed.
Sessions, submissions, competency levels, portfolio items and payments are written one
row each, then counted or summed as their loaders count them (session_counts,
submission_counts, level_learners, portfolio_rows, payment_totals, refund_totals below;
tests/loaders/test_counts.py checks the loaders against these)."""

from collections import Counter
from datetime import UTC, date, datetime, timedelta, timezone
from types import SimpleNamespace as Row
from typing import Any

import pytest

from resolvers import figures
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


# --- conventions ----------------------------------------------------------------------


def test_rate_with_zero_denominator_is_null_not_zero() -> None:
    assert figures.rate(0, 0) is None
    assert figures.rate(5, 0) is None
    assert figures.rate(0, 4) == 0.0
    assert figures.rate(1, 3) == 1 / 3


def test_average_over_nothing_is_null() -> None:
    assert figures.mean([]) is None
    assert figures.mean([1, 2]) == 1.5


def test_iso_instant_is_utc_with_z_suffix() -> None:
    assert figures.iso_instant(NOW) == "2026-11-24T12:00:00.000000Z"
    assert figures.iso_instant(datetime(2026, 1, 2, 3, 4, 5, 6)) == "2026-01-02T03:04:05.000006Z"
    plus_two = datetime(2026, 1, 2, 7, 0, tzinfo=timezone(timedelta(hours=2)))
    assert figures.iso_instant(plus_two) == "2026-01-02T05:00:00.000000Z"


# --- seats ----------------------------------------------------------------------------


def test_seats_count_only_seated_enrollments_by_seat_type() -> None:
    rows = [
        enr(1, "active", "paid"),
        enr(2, "completed", "scholarship"),
        enr(3, "active", "sponsored"),
        enr(4, "active", "paid"),
        enr(5, "withdrawn", "paid"),
        enr(6, "deferred", "scholarship"),
    ]
    assert figures.seats(10, rows) == {
        "total": 10,
        "used": 4,
        "available": 6,
        "paid": 2,
        "scholarship": 1,
        "sponsored": 1,
        "utilization": 0.4,
    }


def test_seats_over_filled_cohort_has_no_available_seats_and_utilization_above_one() -> None:
    rows = [enr(1), enr(2, "completed"), enr(3, seat_type="sponsored")]
    out = figures.seats(2, rows)
    assert out["used"] == 3
    assert out["available"] == 0
    assert out["utilization"] == 1.5


def test_seats_zero_capacity_has_null_utilization() -> None:
    assert figures.seats(0, [enr(1)]) == {
        "total": 0,
        "used": 1,
        "available": 0,
        "paid": 1,
        "scholarship": 0,
        "sponsored": 0,
        "utilization": None,
    }
    assert figures.seats(0, [])["utilization"] is None


def test_seats_of_an_empty_cohort() -> None:
    out = figures.seats(5, [])
    assert (out["used"], out["available"], out["utilization"]) == (0, 5, 0.0)


# --- enrollment -----------------------------------------------------------------------


def test_enrollment_counts_and_completion_rate() -> None:
    rows = [
        enr(1, "active", "paid"),
        enr(2, "active", "scholarship"),
        enr(3, "completed", "sponsored"),
        enr(4, "withdrawn", "paid"),
        enr(5, "withdrawn", "scholarship"),
        enr(6, "deferred", "paid"),
    ]
    assert figures.enrollment(rows) == {
        "enrolled": 6,
        "active": 2,
        "completed": 1,
        "withdrawn": 2,
        "deferred": 1,
        # over all enrolled, withdrawn and deferred included
        "by_seat_type": {"paid": 3, "scholarship": 2, "sponsored": 1},
        # completed / (enrolled − withdrawn) = 1 / (6 − 2)
        "completion_rate": 0.25,
    }


def test_enrollment_completion_rate_counts_deferred_in_the_denominator() -> None:
    rows = [enr(1, "completed"), enr(2, "completed"), enr(3, "deferred")]
    assert figures.enrollment(rows)["completion_rate"] == 2 / 3


def test_enrollment_completion_rate_is_null_when_everyone_withdrew_or_nobody_enrolled() -> None:
    assert figures.enrollment([enr(1, "withdrawn"), enr(2, "withdrawn")])["completion_rate"] is None
    empty = figures.enrollment([])
    assert empty["enrolled"] == 0
    assert empty["by_seat_type"] == {"paid": 0, "scholarship": 0, "sponsored": 0}
    assert empty["completion_rate"] is None


# --- mentorship -----------------------------------------------------------------------

MENTORS = {
    10: Row(id=10, name="Ada", max_learners=5),
    20: Row(id=20, name="Grace", max_learners=3),
    30: Row(id=30, name="Linus", max_learners=2),
    99: Row(id=99, name="Unassigned", max_learners=9),
}


def mentorship_rows() -> tuple[list[Row], list[Row], list[Row]]:
    enrollments = [
        enr(1),
        enr(2),
        enr(3),
        enr(6),
        enr(4, "withdrawn"),
        enr(5, "completed"),
    ]
    # Active assignments only (the loader filters ended_at null), deliberately unordered.
    assignments = [
        assign(20, 1),
        assign(20, 4),  # withdrawn learner: mentor counts, coverage does not
        assign(10, 1),
        assign(10, 2),
        assign(10, 2),  # two active assignments of the same pair: one learner
        assign(30, 5),  # completed learner: not an active learner
    ]
    sessions = [
        session(10, NOW - timedelta(days=2), "completed"),  # past, completed
        session(10, NOW, "completed"),  # exactly now: past
        session(10, NOW - timedelta(hours=1), "no_show"),  # past
        session(20, NOW - timedelta(days=1), "cancelled"),  # never past
        session(20, NOW - timedelta(days=3), "scheduled"),  # stale: past, not completed
        session(20, NOW + timedelta(seconds=1), "scheduled"),  # upcoming
        session(10, NOW + timedelta(days=2), "scheduled"),  # upcoming
        session(20, NOW + timedelta(days=1), "cancelled"),  # neither
        session(20, NOW, "scheduled"),  # exactly now: past, not upcoming
        session(99, NOW - timedelta(days=4), "completed"),  # mentor without an assignment
        session(20, NOW - timedelta(days=10), "no_show"),  # past
        session(30, NOW + timedelta(days=7), "completed"),  # future but completed
    ]
    return enrollments, assignments, sessions


def test_mentorship_cohort_figures() -> None:
    enrollments, assignments, sessions = mentorship_rows()
    out = figures.mentorship(enrollments, assignments, session_counts(sessions, NOW), MENTORS)
    assert out["mentor_count"] == 3
    assert out["active_learners"] == 4  # learners 1, 2, 3, 6
    assert out["covered_learners"] == 2  # learners 1 and 2
    assert out["mentor_coverage"] == 0.5
    assert out["learners_per_mentor"] == 4 / 3
    # past: the two at exactly now, 2 days, 1 hour, 3 days, 4 days, 10 days ago
    assert out["past_sessions"] == 7
    assert out["completed_past_sessions"] == 3
    assert out["session_completion_rate"] == 3 / 7
    assert out["upcoming_sessions"] == 2


def test_mentorship_per_mentor_stats_ordered_by_mentor_id() -> None:
    enrollments, assignments, sessions = mentorship_rows()
    out = figures.mentorship(enrollments, assignments, session_counts(sessions, NOW), MENTORS)
    assert out["mentors"] == [
        {
            "id": 10,
            "name": "Ada",
            "max_learners": 5,
            "active_learners": 2,
            "completed_sessions": 2,
            "no_show_sessions": 1,
        },
        {
            "id": 20,
            "name": "Grace",
            "max_learners": 3,
            "active_learners": 2,  # learners 1 and 4: any learner with an active assignment
            "completed_sessions": 0,
            "no_show_sessions": 1,
        },
        {
            "id": 30,
            "name": "Linus",
            "max_learners": 2,
            "active_learners": 1,
            "completed_sessions": 1,  # over all the mentor's sessions, future ones too
            "no_show_sessions": 0,
        },
    ]


def test_mentorship_mentor_row_missing_gives_null_name_and_capacity() -> None:
    out = figures.mentorship([enr(1)], [assign(7, 1)], [], {})
    assert out["mentors"] == [
        {
            "id": 7,
            "name": None,
            "max_learners": None,
            "active_learners": 1,
            "completed_sessions": 0,
            "no_show_sessions": 0,
        }
    ]


def test_mentorship_session_exactly_now_is_past_and_counts_as_completed() -> None:
    out = figures.mentorship([], [], session_counts([session(1, NOW, "completed")], NOW), {})
    assert (out["past_sessions"], out["completed_past_sessions"]) == (1, 1)
    assert out["session_completion_rate"] == 1.0
    assert out["upcoming_sessions"] == 0


def test_mentorship_nulls_when_nothing_to_divide_by() -> None:
    out = figures.mentorship([], [], [], MENTORS)
    assert out == {
        "mentor_count": 0,
        "active_learners": 0,
        "covered_learners": 0,
        "mentor_coverage": None,
        "learners_per_mentor": None,
        "past_sessions": 0,
        "completed_past_sessions": 0,
        "session_completion_rate": None,
        "upcoming_sessions": 0,
        "mentors": [],
    }


def test_mentorship_active_learners_without_mentors() -> None:
    out = figures.mentorship(
        [enr(1), enr(2)], [], session_counts([session(1, NOW, "cancelled")], NOW), {}
    )
    assert out["mentor_coverage"] == 0.0
    assert out["learners_per_mentor"] is None
    assert out["past_sessions"] == 0
    assert out["session_completion_rate"] is None


# --- readiness ------------------------------------------------------------------------


def test_readiness_over_seated_learners_with_buckets_and_ready() -> None:
    enrollments = [
        enr(1),
        enr(2, "completed"),
        enr(3, "withdrawn"),
        enr(4),  # seated, no score: left out
        enr(5, "deferred"),
        *(enr(i) for i in range(6, 13)),
    ]
    scores = [
        score(1, 100.0),  # last bucket
        score(2, 70.0),  # ready (70 counts)
        score(3, 10.0),  # withdrawn: ignored
        score(5, 0.0),  # deferred: ignored
        score(6, 20.0),  # [20, 40)
        score(7, 69.5),  # not ready
        score(8, 80.0),  # [80, 100]
        score(9, 40.0),  # [40, 60)
        score(10, 60.0),  # [60, 80)
        score(11, 19.5),  # [0, 20)
        score(12, 0.0),  # [0, 20)
    ]
    out = figures.readiness(enrollments, scores, DEFAULTS.ready_score)
    assert out == {
        # 100 + 70 + 20 + 69.5 + 80 + 40 + 60 + 19.5 + 0 = 459 over 9 learners
        "average": 51.0,
        "scored_learners": 9,
        "score_sum": 459.0,
        "ready": 3,  # 100, 70, 80
        "distribution": [
            {"lower": 0.0, "upper": 20.0, "count": 2},
            {"lower": 20.0, "upper": 40.0, "count": 1},
            {"lower": 40.0, "upper": 60.0, "count": 1},
            {"lower": 60.0, "upper": 80.0, "count": 3},
            {"lower": 80.0, "upper": 100.0, "count": 2},
        ],
    }


@pytest.mark.parametrize(
    ("value", "bucket"),
    [
        (0.0, 0),
        (19.99, 0),
        (20.0, 1),
        (39.99, 1),
        (40.0, 2),
        (60.0, 3),
        (79.99, 3),
        (80.0, 4),
        (99.99, 4),
        (100.0, 4),
    ],
)
def test_readiness_bucket_boundaries(value: float, bucket: int) -> None:
    out = figures.readiness([enr(1)], [score(1, value)], DEFAULTS.ready_score)
    counts = [b["count"] for b in out["distribution"]]
    assert counts == [1 if i == bucket else 0 for i in range(5)]


@pytest.mark.parametrize(("value", "ready"), [(70.0, 1), (69.99, 0), (70.01, 1)])
def test_readiness_ready_at_seventy_inclusive(value: float, ready: int) -> None:
    assert figures.readiness([enr(1)], [score(1, value)], 70.0)["ready"] == ready


def test_readiness_ready_score_is_a_setting() -> None:
    out = figures.readiness([enr(1), enr(2)], [score(1, 75.0), score(2, 85.0)], 80.0)
    assert out["ready"] == 1
    assert out["average"] == 80.0


def test_readiness_with_no_scored_seated_learner_is_null() -> None:
    out = figures.readiness([enr(1), enr(2, "withdrawn")], [score(2, 90.0)], 70.0)
    assert out["average"] is None
    assert out["scored_learners"] == 0
    assert out["score_sum"] == 0
    assert out["ready"] == 0
    assert [b["count"] for b in out["distribution"]] == [0, 0, 0, 0, 0]


# --- competency heatmap ---------------------------------------------------------------


def test_competency_heatmap_rows_by_name_over_seated_learners() -> None:
    enrollments = [enr(1), enr(2, "completed"), enr(3, "withdrawn"), enr(4, "deferred"), enr(5)]
    levels = [
        level(1, "sql", 3),
        level(2, "sql", 5),
        level(3, "sql", 0),  # withdrawn: ignored
        level(1, "communication", 5),
        level(4, "ethics", 2),  # deferred only: no row at all
        level(3, "ethics", 1),  # withdrawn only
        level(2, "algorithms", 4),
        level(1, "algorithms", 0),
        level(5, "algorithms", 1),
    ]
    assert figures.competency_heatmap(enrollments, level_learners(levels)) == [
        {
            "competency": "algorithms",
            "learners": 3,
            "levels": [1, 1, 0, 0, 1, 0],
            "average_level": 5 / 3,
        },
        {
            "competency": "communication",
            "learners": 1,
            "levels": [0, 0, 0, 0, 0, 1],
            "average_level": 5.0,
        },
        {
            "competency": "sql",
            "learners": 2,
            "levels": [0, 0, 0, 1, 0, 1],
            "average_level": 4.0,
        },
    ]


def test_competency_heatmap_empty() -> None:
    assert figures.competency_heatmap([enr(1)], []) == []
    assert figures.competency_heatmap([], level_learners([level(1, "sql", 3)])) == []


# --- mission funnel -------------------------------------------------------------------


def funnel_rows() -> tuple[list[Row], list[Row]]:
    missions = [mission(2, "Second"), mission(3, "Untouched", TODAY + timedelta(days=7))]
    missions.insert(1, mission(1, "First", TODAY - timedelta(days=1)))
    submitted_at = NOW - timedelta(days=1)
    submissions = [
        # mission 1: review hours [2, 5] (even count → 3.5)
        sub(1, "started"),
        sub(1, "submitted", submitted_at),
        reviewed(1, "approved", 2),
        reviewed(1, "rejected", 5),
        sub(1, "approved", None, NOW),  # no submitted_at: out of the median
        sub(1, "approved", submitted_at, None),  # no reviewed_at: out of the median
        # mission 2: review hours [1, 4, 12] (odd count → 4)
        reviewed(2, "approved", 12),
        reviewed(2, "rejected", 1),
        reviewed(2, "approved", 4),
    ]
    return missions, submissions


def test_mission_funnel_totals() -> None:
    missions, submissions = funnel_rows()
    out = figures.mission_funnel(missions, submission_counts(submissions))
    assert {k: v for k, v in out.items() if k != "missions"} == {
        "started": 9,
        "submitted": 8,
        "approved": 5,
        "rejected": 2,
        "approval_rate": 5 / 7,
        # over [1, 2, 4, 5, 12]
        "median_review_hours": 4.0,
    }


def test_mission_funnel_per_mission_ordered_by_id_with_empty_mission() -> None:
    missions, submissions = funnel_rows()
    assert figures.mission_funnel(missions, submission_counts(submissions))["missions"] == [
        {
            "mission_id": 1,
            "title": "First",
            "due_date": (TODAY - timedelta(days=1)).isoformat(),
            "started": 6,
            "submitted": 5,
            "approved": 3,
            "rejected": 1,
            "approval_rate": 0.75,
            "median_review_hours": 3.5,  # mean of the two middle values 2 and 5
        },
        {
            "mission_id": 2,
            "title": "Second",
            "due_date": TODAY.isoformat(),
            "started": 3,
            "submitted": 3,
            "approved": 2,
            "rejected": 1,
            "approval_rate": 2 / 3,
            "median_review_hours": 4.0,
        },
        {
            "mission_id": 3,
            "title": "Untouched",
            "due_date": (TODAY + timedelta(days=7)).isoformat(),
            "started": 0,
            "submitted": 0,
            "approved": 0,
            "rejected": 0,
            "approval_rate": None,
            "median_review_hours": None,
        },
    ]


def test_funnel_median_even_count_is_mean_of_middle_values() -> None:
    rows = [
        reviewed(1, "approved", 1),
        reviewed(1, "rejected", 12),
        reviewed(1, "approved", 1.5),
        reviewed(1, "approved", 4),
    ]
    assert figures.funnel(submission_counts(rows))["median_review_hours"] == 2.75  # (1.5 + 4) / 2


def test_funnel_nothing_reviewed_has_null_rate_and_median() -> None:
    out = figures.funnel(submission_counts([sub(1, "started"), sub(1, "submitted", NOW)]))
    assert out == {
        "started": 2,
        "submitted": 1,
        "approved": 0,
        "rejected": 0,
        "approval_rate": None,
        "median_review_hours": None,
    }


def test_funnel_reviewed_without_timestamps_has_rate_but_null_median() -> None:
    out = figures.funnel(submission_counts([sub(1, "approved"), sub(1, "rejected", NOW)]))
    assert out["approval_rate"] == 0.5
    assert out["median_review_hours"] is None


# --- portfolio ------------------------------------------------------------------------


def test_portfolio_health() -> None:
    enrollments = [enr(1), enr(2, "completed"), enr(3, "withdrawn"), enr(4)]
    items = [
        item(1, "published", 80.0),
        item(1, "published", None),  # no score: out of the average
        item(1, "draft", 90.0),  # not published: out of the average
        item(2, "submitted", 50.0),
        item(3, "published", 20.0),  # withdrawn learner: not in learnersWithPublished
        item(4, "published", 65.0),
    ]
    assert figures.portfolio(enrollments, portfolio_rows(items)) == {
        "draft": 1,
        "submitted": 1,
        "published": 4,
        "learners_with_published": 2,  # learners 1 and 4
        "published_rate": 2 / 3,  # over seated learners 1, 2, 4
        # every published item of the cohort with a score: (80 + 20 + 65) / 3
        "average_quality": 55.0,
    }


def test_portfolio_empty_is_null() -> None:
    assert figures.portfolio([], []) == {
        "draft": 0,
        "submitted": 0,
        "published": 0,
        "learners_with_published": 0,
        "published_rate": None,
        "average_quality": None,
    }
    out = figures.portfolio([enr(1)], portfolio_rows([item(1, "published", None)]))
    assert out["published_rate"] == 1.0
    assert out["average_quality"] is None


# --- payments -------------------------------------------------------------------------


def test_payments_per_currency_ordered_by_code() -> None:
    rows = [
        pay(1000, "USD", "paid", TODAY - timedelta(days=10)),
        pay(500, "USD", "pending", TODAY - timedelta(days=1)),  # overdue
        pay(300, "USD", "pending", TODAY),  # due today: not overdue
        pay(200, "USD", "failed", TODAY - timedelta(days=3)),  # failed: never overdue
        pay(400, "USD", "refunded"),
        pay(700, "EUR", "paid"),
        pay(250, "EUR", "pending", TODAY - timedelta(days=5)),  # overdue
        pay(100, "CHF", "failed"),
    ]
    refunds = [refund(400, "USD"), refund(150, "USD"), refund(50, "EUR")]
    assert figures.payments(payment_totals(rows, TODAY), refund_totals(refunds)) == [
        {
            "currency": "CHF",
            "billed_cents": 100,
            "paid_cents": 0,
            "pending_cents": 0,
            "failed_cents": 100,
            "refunded_cents": 0,
            "overdue_cents": 0,
            "refund_count": 0,
            "failed_count": 1,
            "collection_rate": 0.0,
        },
        {
            "currency": "EUR",
            "billed_cents": 950,
            "paid_cents": 700,
            "pending_cents": 250,
            "failed_cents": 0,
            "refunded_cents": 50,
            "overdue_cents": 250,
            "refund_count": 1,
            "failed_count": 0,
            "collection_rate": 700 / 950,
        },
        {
            "currency": "USD",
            "billed_cents": 2400,  # refunded payment included
            "paid_cents": 1000,
            "pending_cents": 800,
            "failed_cents": 200,
            "refunded_cents": 550,
            "overdue_cents": 500,
            "refund_count": 2,
            "failed_count": 1,
            "collection_rate": 1000 / 2400,
        },
    ]


def test_payments_nothing_billed_has_null_collection_rate() -> None:
    out = figures.payments(payment_totals([pay(0, "JPY", "paid")], TODAY), [])
    assert out[0]["billed_cents"] == 0
    assert out[0]["collection_rate"] is None
    assert figures.payments([], []) == []


# --- milestones -----------------------------------------------------------------------


def test_milestones_upcoming_window_and_overdue_ordered_by_due_then_id() -> None:
    done = NOW - timedelta(days=1)
    rows = [
        milestone(9, TODAY + timedelta(days=30)),  # upcoming (last day of the window)
        milestone(5, TODAY),  # upcoming (today)
        milestone(4, TODAY + timedelta(days=31)),  # beyond the window
        milestone(2, TODAY - timedelta(days=1)),  # overdue
        milestone(3, TODAY + timedelta(days=30)),  # upcoming, same day as 9
        milestone(1, TODAY - timedelta(days=1)),  # overdue, same day as 2
        milestone(6, TODAY - timedelta(days=40)),  # overdue
        milestone(7, TODAY - timedelta(days=1), done),  # completed: excluded
        milestone(8, TODAY + timedelta(days=5), done),  # completed: excluded
        milestone(10, TODAY + timedelta(days=10)),  # upcoming
    ]
    assert figures.milestones(rows, TODAY, DEFAULTS.milestone_horizon_days) == {
        "upcoming": [
            mview(5, TODAY),
            mview(10, TODAY + timedelta(days=10)),
            mview(3, TODAY + timedelta(days=30)),
            mview(9, TODAY + timedelta(days=30)),
        ],
        "overdue": [
            mview(6, TODAY - timedelta(days=40)),
            mview(1, TODAY - timedelta(days=1)),
            mview(2, TODAY - timedelta(days=1)),
        ],
    }


def test_milestones_empty() -> None:
    assert figures.milestones([], TODAY, 30) == {"upcoming": [], "overdue": []}


# --- alerts ---------------------------------------------------------------------------


def quiet_cohort(cohort_id: int = 1, status: str = "running", **figs: Any) -> dict[str, Any]:
    """The keys `cohort_alerts` reads, with figures that raise nothing unless overridden."""
    return {
        "id": cohort_id,
        "status": status,
        "seats": {"utilization": figs.get("utilization", 1.0)},
        "mentorship": {
            "mentor_coverage": figs.get("coverage", 1.0),
            "session_completion_rate": figs.get("completion", 1.0),
        },
        "readiness": {"average": figs.get("readiness", 100.0)},
        "milestones": {"overdue": [mview(i, TODAY) for i in range(figs.get("overdue", 0))]},
        "payments": figs.get("payments", []),
    }


def currency(code: str, billed: int, failed: int, failed_count: int) -> dict[str, Any]:
    return {
        "currency": code,
        "billed_cents": billed,
        "failed_cents": failed,
        "failed_count": failed_count,
    }


def codes(alerts: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(a["code"], a["severity"]) for a in alerts]


def test_quiet_cohort_raises_nothing() -> None:
    assert figures.cohort_alerts(quiet_cohort(), DEFAULTS) == []


@pytest.mark.parametrize(
    ("utilization", "expected"),
    [
        (0.60, []),
        (3 / 5, []),
        (0.59, [("LOW_SEAT_UTILIZATION", "warning")]),
        (0.0, [("LOW_SEAT_UTILIZATION", "warning")]),
        (None, []),
    ],
)
def test_alert_low_seat_utilization(utilization: float | None, expected: list[Any]) -> None:
    assert codes(figures.cohort_alerts(quiet_cohort(utilization=utilization), DEFAULTS)) == expected


@pytest.mark.parametrize(
    ("coverage", "expected", "threshold"),
    [
        (0.80, [], None),
        (0.79, [("LOW_MENTOR_COVERAGE", "warning")], 0.80),
        (0.50, [("LOW_MENTOR_COVERAGE", "warning")], 0.80),
        (0.49, [("LOW_MENTOR_COVERAGE", "critical")], 0.50),
        (0.0, [("LOW_MENTOR_COVERAGE", "critical")], 0.50),
        (None, [], None),
    ],
)
def test_alert_low_mentor_coverage(
    coverage: float | None, expected: list[Any], threshold: float | None
) -> None:
    alerts = figures.cohort_alerts(quiet_cohort(coverage=coverage), DEFAULTS)
    assert codes(alerts) == expected
    if alerts:
        assert alerts[0]["value"] == coverage
        assert alerts[0]["threshold"] == threshold


@pytest.mark.parametrize(
    ("completion", "expected"),
    [(0.70, []), (7 / 10, []), (0.69, [("LOW_SESSION_COMPLETION", "warning")]), (None, [])],
)
def test_alert_low_session_completion(completion: float | None, expected: list[Any]) -> None:
    assert codes(figures.cohort_alerts(quiet_cohort(completion=completion), DEFAULTS)) == expected


@pytest.mark.parametrize(
    ("average", "expected"),
    [(60.0, []), (59.9, [("LOW_READINESS", "warning")]), (None, [])],
)
def test_alert_low_readiness(average: float | None, expected: list[Any]) -> None:
    assert codes(figures.cohort_alerts(quiet_cohort(readiness=average), DEFAULTS)) == expected


def test_alert_overdue_milestone() -> None:
    assert figures.cohort_alerts(quiet_cohort(overdue=0), DEFAULTS) == []
    [alert] = figures.cohort_alerts(quiet_cohort(7, overdue=2), DEFAULTS)
    assert (alert["code"], alert["severity"], alert["cohort_id"]) == (
        "OVERDUE_MILESTONE",
        "warning",
        7,
    )
    assert (alert["value"], alert["threshold"]) == (2.0, 1.0)


@pytest.mark.parametrize(
    ("payments", "expected"),
    [
        ([], []),
        ([currency("USD", 1000, 0, 0)], []),
        # exactly 10% of billed: warning
        ([currency("USD", 1000, 100, 1)], [("PAYMENT_FAILURES", "warning")]),
        # just above 10%: critical
        ([currency("USD", 1000, 101, 1)], [("PAYMENT_FAILURES", "critical")]),
        # low in one currency, high in another: critical
        (
            [currency("EUR", 1000, 10, 1), currency("USD", 100, 50, 1)],
            [("PAYMENT_FAILURES", "critical")],
        ),
        # low everywhere: warning
        (
            [currency("EUR", 1000, 10, 1), currency("USD", 1000, 100, 2)],
            [("PAYMENT_FAILURES", "warning")],
        ),
        # a failed payment of zero cents with nothing billed: warning
        ([currency("USD", 0, 0, 1)], [("PAYMENT_FAILURES", "warning")]),
    ],
)
def test_alert_payment_failures(payments: list[Any], expected: list[Any]) -> None:
    alerts = figures.cohort_alerts(quiet_cohort(payments=payments), DEFAULTS)
    assert codes(alerts) == expected
    if alerts:
        assert alerts[0]["value"] == float(sum(p["failed_count"] for p in payments))
        assert alerts[0]["threshold"] == 1.0


def test_alert_payment_failures_from_payment_rows() -> None:
    rows = [pay(900, "USD", "paid"), pay(100, "USD", "failed")]
    cohort = quiet_cohort(payments=figures.payments(payment_totals(rows, TODAY), []))
    assert codes(figures.cohort_alerts(cohort, DEFAULTS)) == [("PAYMENT_FAILURES", "warning")]
    rows.append(pay(1, "USD", "failed"))  # 101 / 1001 > 0.10
    cohort = quiet_cohort(payments=figures.payments(payment_totals(rows, TODAY), []))
    assert codes(figures.cohort_alerts(cohort, DEFAULTS)) == [("PAYMENT_FAILURES", "critical")]


def bad_figures() -> dict[str, Any]:
    return {
        "utilization": 0.1,
        "coverage": 0.1,
        "completion": 0.1,
        "readiness": 10.0,
        "overdue": 1,
        "payments": [currency("USD", 100, 100, 1)],
    }


def test_every_rule_in_metrics_order_with_full_alert_shape() -> None:
    alerts = figures.cohort_alerts(quiet_cohort(4, **bad_figures()), DEFAULTS)
    assert codes(alerts) == [
        ("LOW_SEAT_UTILIZATION", "warning"),
        ("LOW_MENTOR_COVERAGE", "critical"),
        ("LOW_SESSION_COMPLETION", "warning"),
        ("LOW_READINESS", "warning"),
        ("OVERDUE_MILESTONE", "warning"),
        ("PAYMENT_FAILURES", "critical"),
    ]
    assert [(a["value"], a["threshold"]) for a in alerts] == [
        (0.1, 0.60),
        (0.1, 0.50),
        (0.1, 0.70),
        (10.0, 60.0),
        (1.0, 1.0),
        (1.0, 1.0),
    ]
    for a in alerts:
        assert set(a) == {"code", "severity", "cohort_id", "value", "threshold", "message"}
        assert a["cohort_id"] == 4
        assert isinstance(a["message"], str)
        assert a["message"]
        assert "\n" not in a["message"]


@pytest.mark.parametrize("status", ["planned", "closed"])
def test_non_running_cohorts_raise_nothing(status: str) -> None:
    assert figures.cohort_alerts(quiet_cohort(status=status, **bad_figures()), DEFAULTS) == []


def test_thresholds_are_settings() -> None:
    strict = Thresholds(low_seat_utilization=0.9, low_readiness=95.0)
    cohort = quiet_cohort(utilization=0.85, readiness=90.0)
    assert codes(figures.cohort_alerts(cohort, DEFAULTS)) == []
    assert codes(figures.cohort_alerts(cohort, strict)) == [
        ("LOW_SEAT_UTILIZATION", "warning"),
        ("LOW_READINESS", "warning"),
    ]


def test_sort_alerts_critical_first_then_cohort_then_code() -> None:
    def a(severity: str, cohort_id: int, code: str) -> dict[str, Any]:
        return figures.alert(code, severity, cohort_id, 0.0, 0.0, "")

    alerts = [
        a("warning", 1, "OVERDUE_MILESTONE"),
        a("critical", 3, "LOW_MENTOR_COVERAGE"),
        a("warning", 1, "LOW_READINESS"),
        a("warning", 2, "LOW_SEAT_UTILIZATION"),
        a("critical", 3, "PAYMENT_FAILURES"),
        a("critical", 2, "PAYMENT_FAILURES"),
    ]
    assert [(x["severity"], x["cohort_id"], x["code"]) for x in figures.sort_alerts(alerts)] == [
        ("critical", 2, "PAYMENT_FAILURES"),
        ("critical", 3, "LOW_MENTOR_COVERAGE"),
        ("critical", 3, "PAYMENT_FAILURES"),
        ("warning", 1, "LOW_READINESS"),
        ("warning", 1, "OVERDUE_MILESTONE"),
        ("warning", 2, "LOW_SEAT_UTILIZATION"),
    ]


# --- director summary -----------------------------------------------------------------


def subtree(
    cohort_id: int,
    status: str,
    program: tuple[int, str],
    capacity: int,
    enrollments: list[Row],
    *,
    assignments: tuple[Row, ...] = (),
    sessions: tuple[Row, ...] = (),
    scores: tuple[Row, ...] = (),
    milestone_rows: tuple[Row, ...] = (),
    payment_rows: tuple[Row, ...] = (),
) -> dict[str, Any]:
    """A cohort subtree as `subtrees.build_cohorts` assembles it, from rows."""
    out: dict[str, Any] = {
        "id": cohort_id,
        "status": status,
        "program": {"id": program[0], "name": f"P{program[0]}", "status": program[1]},
        "seats": figures.seats(capacity, enrollments),
        "enrollment": figures.enrollment(enrollments),
        "mentorship": figures.mentorship(
            enrollments, list(assignments), session_counts(list(sessions), NOW), MENTORS
        ),
        "readiness": figures.readiness(enrollments, list(scores), DEFAULTS.ready_score),
        "milestones": figures.milestones(
            list(milestone_rows), TODAY, DEFAULTS.milestone_horizon_days
        ),
        "payments": figures.payments(payment_totals(list(payment_rows), TODAY), []),
    }
    out["alerts"] = figures.cohort_alerts(out, DEFAULTS)
    return out


def summary_cohorts() -> list[dict[str, Any]]:
    past = NOW - timedelta(days=1)
    c1 = subtree(
        1,
        "running",
        (1, "active"),
        4,
        [
            enr(101, "active", "paid"),
            enr(102, "active", "scholarship"),
            enr(103, "completed", "sponsored"),
            enr(104, "withdrawn", "paid"),
        ],
        assignments=(assign(10, 101), assign(10, 102)),
        sessions=(session(10, past, "completed"),),
        scores=(score(101, 90.0), score(102, 80.0)),
        milestone_rows=(milestone(1, TODAY - timedelta(days=2)),),
    )
    c2 = subtree(
        2,
        "running",
        (1, "active"),
        10,
        [enr(111)],
        sessions=(
            session(20, past, "no_show"),
            session(20, past, "no_show"),
            session(20, past, "scheduled"),
        ),
        scores=(score(111, 20.0),),
    )
    c3 = subtree(
        3,
        "closed",
        (2, "active"),
        10,
        [*(enr(i, "completed") for i in range(121, 130)), enr(130, "deferred")],
        scores=(score(121, 0.0),),  # closed: not in averageReadiness
    )
    c4 = subtree(
        4,
        "closed",
        (3, "archived"),
        4,
        [enr(131, "withdrawn"), enr(132, "withdrawn"), enr(133, "deferred"), enr(134, "deferred")],
    )
    c5 = subtree(
        5,
        "running",
        (3, "archived"),
        2,
        [enr(141), enr(142), enr(143, seat_type="sponsored")],
        assignments=(assign(30, 141),),
        payment_rows=(pay(100, "USD", "paid"), pay(100, "USD", "failed")),
    )
    c6 = subtree(6, "planned", (4, "active"), 5, [enr(151)])
    return [c1, c2, c3, c4, c5, c6]


def test_summary_cohort_subtrees_as_built() -> None:
    c1, c2, c3, c4, c5, _ = summary_cohorts()
    assert [c["seats"]["utilization"] for c in (c1, c2, c5)] == [0.75, 0.1, 1.5]
    assert [c["readiness"]["average"] for c in (c1, c2, c5)] == [85.0, 20.0, None]
    assert [c["mentorship"]["mentor_coverage"] for c in (c1, c2, c5)] == [1.0, 0.0, 1 / 3]
    assert [c["mentorship"]["session_completion_rate"] for c in (c1, c2, c5)] == [1.0, 0.0, None]
    assert [c["enrollment"]["completion_rate"] for c in (c3, c4)] == [0.9, 0.0]


def test_director_summary_pools_sums_not_averages() -> None:
    out = figures.director_summary(summary_cohorts(), "2026-11-24T12:00:00.000000Z")
    assert out["computed_at"] == "2026-11-24T12:00:00.000000Z"
    assert out["total_cohorts"] == 6
    assert out["active_cohorts"] == 3
    # running cohorts 1 and 2 are in active program 1; 5 is in archived program 3;
    # active program 2 has only a closed cohort and active program 4 only a planned one.
    assert out["active_programs"] == 1
    assert out["seats"] == {
        "total": 16,
        "used": 7,
        "available": 10,  # 1 + 9 + 0: each cohort's available, over-filled cohort 5 gives 0
        "paid": 4,
        "scholarship": 1,
        "sponsored": 2,
        "utilization": 7 / 16,  # not (0.75 + 0.1 + 1.5) / 3
    }
    assert out["average_readiness"] == 190 / 3  # (90 + 80 + 20) / 3, not (85 + 20) / 2
    assert out["completion_rate"] == 0.75  # (9 + 0) / (10 + 2), not (0.9 + 0.0) / 2
    assert out["mentor_coverage"] == 0.5  # (2 + 0 + 1) / (2 + 1 + 3), not mean 4/9
    assert out["session_completion_rate"] == 0.25  # (1 + 0) / (1 + 3), not (1 + 0) / 2


def test_director_summary_alerts_counts_and_order() -> None:
    out = figures.director_summary(summary_cohorts(), "t")
    assert [(a["severity"], a["cohort_id"], a["code"]) for a in out["alerts"]] == [
        ("critical", 2, "LOW_MENTOR_COVERAGE"),
        ("critical", 5, "LOW_MENTOR_COVERAGE"),
        ("critical", 5, "PAYMENT_FAILURES"),
        ("warning", 1, "OVERDUE_MILESTONE"),
        ("warning", 2, "LOW_READINESS"),
        ("warning", 2, "LOW_SEAT_UTILIZATION"),
        ("warning", 2, "LOW_SESSION_COMPLETION"),
    ]
    assert out["alert_counts"] == {"critical": 3, "warning": 4}
    assert out["alerts_by_code"] == [
        {"code": "LOW_MENTOR_COVERAGE", "count": 2},
        {"code": "LOW_READINESS", "count": 1},
        {"code": "LOW_SEAT_UTILIZATION", "count": 1},
        {"code": "LOW_SESSION_COMPLETION", "count": 1},
        {"code": "OVERDUE_MILESTONE", "count": 1},
        {"code": "PAYMENT_FAILURES", "count": 1},
    ]


def test_director_summary_ignores_alerts_of_non_running_cohorts() -> None:
    closed = subtree(9, "closed", (1, "active"), 1, [enr(1)])
    closed["alerts"] = [figures.alert("LOW_READINESS", "warning", 9, 1.0, 60.0, "stale")]
    out = figures.director_summary([closed], "t")
    assert out["alerts"] == []
    assert out["alert_counts"] == {"critical": 0, "warning": 0}
    assert out["alerts_by_code"] == []


def test_director_summary_of_nothing_is_null() -> None:
    assert figures.director_summary([], "t") == {
        "computed_at": "t",
        "total_cohorts": 0,
        "active_cohorts": 0,
        "active_programs": 0,
        "seats": {
            "total": 0,
            "used": 0,
            "available": 0,
            "paid": 0,
            "scholarship": 0,
            "sponsored": 0,
            "utilization": None,
        },
        "average_readiness": None,
        "completion_rate": None,
        "mentor_coverage": None,
        "session_completion_rate": None,
        "alert_counts": {"critical": 0, "warning": 0},
        "alerts_by_code": [],
        "alerts": [],
    }


def test_director_summary_completion_rate_only_over_closed_cohorts() -> None:
    running = subtree(1, "running", (1, "active"), 2, [enr(1, "completed"), enr(2, "completed")])
    planned = subtree(2, "planned", (1, "active"), 2, [enr(3, "completed")])
    assert figures.director_summary([running, planned], "t")["completion_rate"] is None
    closed = subtree(3, "closed", (1, "active"), 3, [enr(4, "completed"), enr(5), enr(6)])
    assert figures.director_summary([running, planned, closed], "t")["completion_rate"] == 1 / 3


def test_a_summary_pooled_from_summary_inputs_is_the_same() -> None:
    cohorts = summary_cohorts()
    inputs = [figures.summary_inputs(c) for c in cohorts]
    assert figures.director_summary(inputs, "t") == figures.director_summary(cohorts, "t")
    assert figures.director_summary(inputs, "t")["total_cohorts"] == len(cohorts)
