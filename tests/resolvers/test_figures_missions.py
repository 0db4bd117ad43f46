"""Cohort figures of docs/metrics.md on hand-built rows (tests/resolvers/figure_rows.py):
mission funnel, portfolio, payments, milestones. Exact expected values."""

from datetime import timedelta

from resolvers import figures
from tests.resolvers.figure_rows import (
    DEFAULTS,
    NOW,
    TODAY,
    Row,
    enr,
    item,
    milestone,
    mission,
    mview,
    pay,
    payment_totals,
    portfolio_rows,
    refund,
    refund_totals,
    reviewed,
    sub,
    submission_counts,
)

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
