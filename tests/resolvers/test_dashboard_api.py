"""The dashboard over HTTP on the hand-built dataset, on SQLite and PostgreSQL.

Every expected number is worked out from tests/support/dataset.py by hand (see comments).
"""

import pytest

from gateway.settings import Settings
from tests.support.dataset import ADMIN, DANA, DREW, NORA, NOW
from tests.support.gateway_client import GatewayClient, fixed_clock, gateway_client
from tests.support.queries import COHORT_DETAIL, SUMMARY

COHORT_IDS = """
query Ids($first: Int, $after: String, $filter: CohortFilter, $orderBy: CohortOrder) {
  me {
    cohorts(first: $first, after: $after, filter: $filter, orderBy: $orderBy) {
      totalCount
      edges { cursor node { id } }
      pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    }
  }
}
"""

COMPUTED_AT = "2026-11-24T12:00:00.000000Z"


@pytest.fixture(scope="module")
async def api(dataset_url: str):
    async with gateway_client(Settings(database_url=dataset_url), fixed_clock(NOW)) as client:
        yield client


async def test_cohort_detail_figures(api: GatewayClient) -> None:
    cohort = (await api.data(COHORT_DETAIL, {"id": 101}, user=DANA))["cohort"]
    assert cohort["id"] == 101
    assert cohort["name"] == "Analytics Nov"
    assert (cohort["mode"], cohort["status"]) == ("ONLINE", "RUNNING")
    assert (cohort["startDate"], cohort["endDate"]) == ("2026-10-01", "2027-01-31")
    assert cohort["computedAt"] == COMPUTED_AT
    assert cohort["stale"] is False
    assert cohort["track"] == {"id": 1, "name": "Analytics"}
    assert cohort["program"] == {"id": 1, "name": "Data", "status": "active"}
    # Seated: learners 10, 11 (active) and 12 (completed) of capacity 4.
    assert cohort["seats"] == {
        "total": 4,
        "used": 3,
        "available": 1,
        "paid": 1,
        "scholarship": 1,
        "sponsored": 1,
        "utilization": 0.75,
    }
    # completionRate = 1 completed / (5 enrolled − 1 withdrawn).
    assert cohort["enrollment"] == {
        "enrolled": 5,
        "active": 2,
        "completed": 1,
        "withdrawn": 1,
        "deferred": 1,
        "completionRate": 0.25,
        "bySeatType": {"paid": 3, "scholarship": 1, "sponsored": 1},
    }
    # Active assignments: mentor 1 → 10; mentor 2 → 11 and 13 (13 withdrew, still assigned).
    # Past sessions: 1 (completed), 2 (no_show), 4 (completed, exactly now), 6 (scheduled);
    # 3 is cancelled, 5 is upcoming.
    assert cohort["mentorship"] == {
        "mentorCount": 2,
        "activeLearners": 2,
        "coveredLearners": 2,
        "mentorCoverage": 1.0,
        "learnersPerMentor": 1.0,
        "pastSessions": 4,
        "completedPastSessions": 2,
        "sessionCompletionRate": 0.5,
        "upcomingSessions": 1,
        "mentors": [
            {
                "id": 1,
                "name": "Mia Mentor",
                "maxLearners": 5,
                "activeLearners": 1,
                "completedSessions": 1,
                "noShowSessions": 1,
            },
            {
                "id": 2,
                "name": "Max Mentor",
                "maxLearners": 3,
                "activeLearners": 2,
                "completedSessions": 1,
                "noShowSessions": 0,
            },
        ],
    }
    # Latest scores of seated learners: 10 → 80, 11 → 55 (tie on time, greatest id 4), 12 → 100.
    assert cohort["readiness"] == {
        "average": (80 + 55 + 100) / 3,
        "scoredLearners": 3,
        "ready": 2,
        "distribution": [
            {"lower": 0.0, "upper": 20.0, "count": 0},
            {"lower": 20.0, "upper": 40.0, "count": 0},
            {"lower": 40.0, "upper": 60.0, "count": 1},
            {"lower": 60.0, "upper": 80.0, "count": 0},
            {"lower": 80.0, "upper": 100.0, "count": 2},
        ],
    }
    assert cohort["competencies"] == [
        {"competency": "python", "learners": 2, "levels": [0, 0, 0, 0, 2, 0], "averageLevel": 4.0},
        {"competency": "sql", "learners": 1, "levels": [0, 0, 1, 0, 0, 0], "averageLevel": 2.0},
    ]
    # Review hours 10, 24, 2, 6 → median (6 + 10) / 2.
    assert cohort["missionFunnel"] == {
        "started": 6,
        "submitted": 5,
        "approved": 3,
        "rejected": 1,
        "approvalRate": 0.75,
        "medianReviewHours": 8.0,
        "missions": [
            {
                "missionId": 1,
                "title": "Intro",
                "dueDate": "2026-10-15",
                "started": 4,
                "submitted": 4,
                "approved": 2,
                "rejected": 1,
                "approvalRate": 2 / 3,
                "medianReviewHours": 10.0,
            },
            {
                "missionId": 2,
                "title": "Capstone",
                "dueDate": "2026-12-15",
                "started": 2,
                "submitted": 1,
                "approved": 1,
                "rejected": 0,
                "approvalRate": 1.0,
                "medianReviewHours": 6.0,
            },
            {
                "missionId": 3,
                "title": "Empty",
                "dueDate": "2027-01-10",
                "started": 0,
                "submitted": 0,
                "approved": 0,
                "rejected": 0,
                "approvalRate": None,
                "medianReviewHours": None,
            },
        ],
    }
    assert cohort["portfolio"] == {
        "draft": 1,
        "submitted": 1,
        "published": 3,
        "learnersWithPublished": 2,
        "publishedRate": 2 / 3,
        "averageQuality": 80.0,
    }
    assert cohort["payments"] == [
        {
            "currency": "EUR",
            "billedCents": 20000,
            "paidCents": 10000,
            "pendingCents": 8000,
            "failedCents": 2000,
            "overdueCents": 5000,
            "refundedCents": 1000,
            "refundCount": 1,
            "failedCount": 1,
            "collectionRate": 0.5,
        },
        {
            "currency": "USD",
            "billedCents": 35000,
            "paidCents": 0,
            "pendingCents": 0,
            "failedCents": 20000,
            "overdueCents": 0,
            "refundedCents": 15000,
            "refundCount": 2,
            "failedCount": 1,
            "collectionRate": 0.0,
        },
    ]
    assert cohort["milestones"] == {
        "upcoming": [
            {"id": 3, "title": "Demo", "dueDate": "2026-11-24"},
            {"id": 6, "title": "Review", "dueDate": "2026-11-24"},
            {"id": 4, "title": "Final", "dueDate": "2026-12-24"},
        ],
        "overdue": [{"id": 2, "title": "Midterm", "dueDate": "2026-11-20"}],
    }
    assert [
        (a["code"], a["severity"], a["cohortId"], a["value"], a["threshold"])
        for a in cohort["alerts"]
    ] == [
        ("LOW_SESSION_COMPLETION", "WARNING", 101, 0.5, 0.7),
        ("OVERDUE_MILESTONE", "WARNING", 101, 1.0, 1.0),
        ("PAYMENT_FAILURES", "CRITICAL", 101, 2.0, 1.0),
    ]
    assert cohort["flags"] == ["LOW_SESSION_COMPLETION", "OVERDUE_MILESTONE", "PAYMENT_FAILURES"]


async def test_director_summary_is_pooled(api: GatewayClient) -> None:
    me = (await api.data(SUMMARY, user=DANA))["me"]
    assert (me["id"], me["name"], me["email"]) == (DANA, "Dana Director", "dana@example.test")
    summary = me["summary"]
    assert summary["totalCohorts"] == 3
    assert summary["activeCohorts"] == 2
    assert summary["activePrograms"] == 1
    assert summary["seats"] == {
        "total": 14,
        "used": 6,
        "available": 8,
        "paid": 4,
        "scholarship": 1,
        "sponsored": 1,
        "utilization": 6 / 14,
    }
    # (80 + 55 + 100 + 40 + 30) / 5, not the mean of the cohort means (78.3 and 35).
    assert summary["averageReadiness"] == 61.0
    assert summary["completionRate"] is None  # no closed cohort in Dana's scope
    assert summary["mentorCoverage"] == 3 / 5
    assert summary["sessionCompletionRate"] == 3 / 5
    assert summary["alertCounts"] == {"critical": 2, "warning": 4}
    assert summary["alertsByCode"] == [
        {"code": "LOW_MENTOR_COVERAGE", "count": 1},
        {"code": "LOW_READINESS", "count": 1},
        {"code": "LOW_SEAT_UTILIZATION", "count": 1},
        {"code": "LOW_SESSION_COMPLETION", "count": 1},
        {"code": "OVERDUE_MILESTONE", "count": 1},
        {"code": "PAYMENT_FAILURES", "count": 1},
    ]
    assert [(a["severity"], a["cohortId"], a["code"]) for a in summary["alerts"]] == [
        ("CRITICAL", 101, "PAYMENT_FAILURES"),
        ("CRITICAL", 102, "LOW_MENTOR_COVERAGE"),
        ("WARNING", 101, "LOW_SESSION_COMPLETION"),
        ("WARNING", 101, "OVERDUE_MILESTONE"),
        ("WARNING", 102, "LOW_READINESS"),
        ("WARNING", 102, "LOW_SEAT_UTILIZATION"),
    ]
    assert (summary["computedAt"], summary["stale"]) == (COMPUTED_AT, False)


SUMMARY_ALERTS = """
query Alerts($first: Int!) {
  me { summary { alertCounts { critical warning } alerts(first: $first) { cohortId code } } }
}
"""


async def test_summary_alerts_are_bounded_by_first_and_counted_in_full(api: GatewayClient) -> None:
    summary = (await api.data(SUMMARY_ALERTS, {"first": 2}, user=DANA))["me"]["summary"]
    assert summary["alertCounts"] == {"critical": 2, "warning": 4}
    assert summary["alerts"] == [
        {"cohortId": 101, "code": "PAYMENT_FAILURES"},
        {"cohortId": 102, "code": "LOW_MENTOR_COVERAGE"},
    ]
    for first in (0, 101):
        response = await api.post(SUMMARY_ALERTS, {"first": first}, user=DANA)
        [error] = response.json()["errors"]
        assert error["extensions"]["code"] == "BAD_USER_INPUT"
        assert error["message"] == f"`first` must be between 1 and 100, got {first}."


async def test_closed_cohort_completion_pooled_for_drew(api: GatewayClient) -> None:
    summary = (await api.data(SUMMARY, user=DREW))["me"]["summary"]
    assert (summary["totalCohorts"], summary["activeCohorts"]) == (2, 1)
    assert summary["completionRate"] == 1.0  # cohort 103: 2 / (3 − 1)
    assert summary["averageReadiness"] == 35.0


async def test_director_without_tracks_sees_nothing(api: GatewayClient) -> None:
    me = (
        await api.data(SUMMARY + COHORT_IDS, user=NORA)
        if False
        else await api.data(SUMMARY, user=NORA)
    )["me"]
    assert me["summary"]["totalCohorts"] == 0
    assert me["summary"]["averageReadiness"] is None
    assert me["summary"]["seats"]["utilization"] is None
    page = (await api.data(COHORT_IDS, user=NORA))["me"]["cohorts"]
    assert page == {
        "totalCount": 0,
        "edges": [],
        "pageInfo": {
            "hasNextPage": False,
            "hasPreviousPage": False,
            "startCursor": None,
            "endCursor": None,
        },
    }


def ids(page: dict) -> list[int]:
    return [edge["node"]["id"] for edge in page["edges"]]


async def test_cohort_list_order_filter_and_cursor(api: GatewayClient) -> None:
    page = (await api.data(COHORT_IDS, user=DANA))["me"]["cohorts"]
    assert ids(page) == [102, 101, 104]  # by start date
    assert page["totalCount"] == 3
    by_util = {"field": "SEAT_UTILIZATION", "direction": "DESC"}
    page = (await api.data(COHORT_IDS, {"orderBy": by_util, "first": 2}, user=DANA))["me"][
        "cohorts"
    ]
    assert ids(page) == [101, 102]  # 0.75, 0.3, then 104 with 0.0
    assert page["pageInfo"]["hasNextPage"] is True
    after = page["pageInfo"]["endCursor"]
    page = (
        await api.data(COHORT_IDS, {"orderBy": by_util, "first": 2, "after": after}, user=DANA)
    )["me"]["cohorts"]
    assert ids(page) == [104]
    assert (page["pageInfo"]["hasNextPage"], page["pageInfo"]["hasPreviousPage"]) == (False, True)
    # Readiness ascending: 102 (35), 101 (78.3), then 104 with no score last.
    page = (await api.data(COHORT_IDS, {"orderBy": {"field": "READINESS"}}, user=DANA))["me"][
        "cohorts"
    ]
    assert ids(page) == [102, 101, 104]
    page = (await api.data(COHORT_IDS, {"orderBy": {"field": "NAME"}}, user=DANA))["me"]["cohorts"]
    assert ids(page) == [104, 101, 102]
    flt = {"status": ["RUNNING"], "search": "analytics"}
    page = (await api.data(COHORT_IDS, {"filter": flt}, user=DANA))["me"]["cohorts"]
    assert (ids(page), page["totalCount"]) == ([101], 1)
    page = await api.data(COHORT_IDS, {"filter": {"trackId": 2, "mode": ["HYBRID"]}}, user=DANA)
    assert ids(page["me"]["cohorts"]) == [102]


async def test_admin_sees_every_cohort(api: GatewayClient) -> None:
    page = await api.data(COHORT_IDS, {"orderBy": {"field": "NAME"}}, user=ADMIN, role="admin")
    assert ids(page["me"]["cohorts"]) == [104, 101, 102, 103]
    summary = (await api.data(SUMMARY, user=ADMIN, role="admin"))["me"]["summary"]
    assert summary["totalCohorts"] == 4
    assert summary["activePrograms"] == 1
    cohort = await api.data("query { cohort(id: 103) { id status } }", user=ADMIN, role="admin")
    assert cohort == {"cohort": {"id": 103, "status": "CLOSED"}}
