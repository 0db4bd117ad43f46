"""Cohort figures of docs/metrics.md on hand-built rows (tests/resolvers/figure_rows.py):
conventions, seats, enrollment, mentorship, readiness, competencies. Exact expected values."""

from datetime import datetime, timedelta, timezone

import pytest

from resolvers import figures
from tests.resolvers.figure_rows import (
    DEFAULTS,
    MENTORS,
    NOW,
    Row,
    assign,
    enr,
    level,
    level_learners,
    score,
    session,
    session_counts,
)

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
