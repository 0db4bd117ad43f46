"""The alert rules and the director summary of docs/metrics.md on hand-built subtrees and rows,
with exact expected values."""

from datetime import timedelta
from typing import Any

import pytest

from resolvers import figures
from resolvers.figures import Thresholds
from tests.resolvers.figure_rows import (
    DEFAULTS,
    MENTORS,
    NOW,
    TODAY,
    Row,
    assign,
    enr,
    milestone,
    mview,
    pay,
    payment_totals,
    score,
    session,
    session_counts,
)

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
