"""Every served figure equals an independent computation from docs/metrics.md, on upstream
rows Hypothesis draws within docs/upstream.md (tests/resolvers/generated_world.py),
written into a real SQLite and PostgreSQL database and served through the real schema.

The reference (tests/resolvers/reference_figures.py) shares no code with
resolvers/figures/. The clock is pinned at a UTC day boundary; the process runs 14 hours
ahead of UTC (SQLite) or 12 behind (PostgreSQL, whose database is set 14 hours ahead).
Examples: GATEWAY_PROPERTY_EXAMPLES (25 by default; more for a reliability run, e.g. 500).
"""

import asyncio
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, find, given, settings
from sqlalchemy import text

from loaders import billing, mentorship, missions, programs, talentscope
from tests.gateway_client import fixed_clock, gateway_client
from tests.resolvers.generated_world import World, worlds, write
from tests.resolvers.reference_figures import Reference
from tests.test_cache import settings_for

EXAMPLES = int(os.environ.get("GATEWAY_PROPERTY_EXAMPLES", "25"))
PROCESS_TZ = {"sqlite": "Pacific/Kiritimati", "postgres": "Etc/GMT+12"}  # UTC+14, UTC−12
DATABASE_TZ = "Pacific/Kiritimati"

SEATS = "total used available paid scholarship sponsored utilization"
ALERT = "code severity cohortId value threshold"
FUNNEL = "started submitted approved rejected approvalRate medianReviewHours"
COHORT = f"""
query Cohort($id: Int!) {{
  cohort(id: $id) {{
    id status
    seats {{ {SEATS} }}
    enrollment {{
      enrolled active completed withdrawn deferred
      bySeatType {{ paid scholarship sponsored }} completionRate
    }}
    mentorship {{
      mentorCount activeLearners coveredLearners mentorCoverage learnersPerMentor
      pastSessions completedPastSessions sessionCompletionRate upcomingSessions
      mentors {{ id name maxLearners activeLearners completedSessions noShowSessions }}
    }}
    readiness {{ average scoredLearners ready distribution {{ lower upper count }} }}
    competencies {{ competency learners levels averageLevel }}
    missionFunnel {{ {FUNNEL} missions {{ missionId title dueDate {FUNNEL} }} }}
    portfolio {{ draft submitted published learnersWithPublished publishedRate averageQuality }}
    payments {{
      currency billedCents paidCents pendingCents failedCents overdueCents refundedCents
      refundCount failedCount collectionRate
    }}
    milestones {{ upcoming {{ id title dueDate }} overdue {{ id title dueDate }} }}
    alerts {{ {ALERT} }}
    flags
  }}
}}
"""
SUMMARY = f"""
query Summary {{
  me {{
    summary {{
      totalCohorts activeCohorts activePrograms seats {{ {SEATS} }}
      averageReadiness completionRate mentorCoverage sessionCompletionRate
      alertCounts {{ critical warning }} alertsByCode {{ code count }} alerts {{ {ALERT} }}
    }}
    cohorts(first: 100) {{ totalCount edges {{ node {{ id }} }} }}
  }}
}}
"""


def same(served: Any, expected: Any, where: str = "") -> list[str]:
    """Where `served` differs from `expected`: ints, strings and nulls exactly; floats to
    1e-9 relative (sums of the same floats in another order)."""
    if isinstance(expected, dict) and isinstance(served, dict):
        keys = sorted(set(served) | set(expected))
        return [d for k in keys for d in same(served.get(k), expected.get(k), f"{where}.{k}")]
    if isinstance(expected, list) and isinstance(served, list) and len(served) == len(expected):
        return [
            d
            for i, (a, b) in enumerate(zip(served, expected, strict=True))
            for d in same(a, b, f"{where}[{i}]")
        ]
    if (
        isinstance(expected, float)
        and isinstance(served, int | float)
        and not isinstance(served, bool)
    ):
        return (
            []
            if math.isclose(served, expected, rel_tol=1e-9, abs_tol=1e-12)
            else [f"{where}: {served!r} != {expected!r}"]
        )
    return (
        []
        if served == expected and type(served) is type(expected)
        else [f"{where}: {served!r} != {expected!r}"]
    )


@contextmanager
def process_timezone(name: str) -> Iterator[None]:
    before = os.environ.get("TZ")
    os.environ["TZ"] = name
    time.tzset()
    try:
        yield
    finally:
        if before is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = before
        time.tzset()


async def served_and_expected(url: str, world: World) -> list[str]:
    reference = Reference(world.rows, world.now)
    users = world.rows[programs.users]
    admin = next(u["id"] for u in users if u["role"] == "admin")
    differences: list[str] = []
    gateway_settings = settings_for(url, None, cache_enabled=False)
    async with gateway_client(gateway_settings, fixed_clock(world.now)) as api:
        for cohort in world.rows[programs.cohorts]:
            response = await api.post(COHORT, {"id": cohort["id"]}, user=admin, role="admin")
            body = response.json()
            assert "errors" not in body, body["errors"]
            differences += same(
                body["data"]["cohort"], reference.cohort(cohort["id"]), f"cohort {cohort['id']}"
            )
        for user in users:
            if user["role"] == "learner":
                continue
            response = await api.post(SUMMARY, user=user["id"], role=user["role"])
            body = response.json()
            assert "errors" not in body, body["errors"]
            me = body["data"]["me"]
            scope = reference.scope(user["id"])
            seen = [edge["node"]["id"] for edge in me["cohorts"]["edges"]]
            where = f"{user['role']} {user['id']}"
            differences += same(sorted(seen), scope, f"{where} scope")
            differences += same(me["cohorts"]["totalCount"], len(scope), f"{where} totalCount")
            differences += same(me["summary"], reference.summary(user["id"]), f"{where} summary")
    return differences


def check(backend: str, url: str) -> Callable[[World], None]:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(world=worlds(backend))
    def run(world: World) -> None:
        async def example() -> list[str]:
            await write(url, world)
            return await served_and_expected(url, world)

        with process_timezone(PROCESS_TZ[backend]):
            differences = asyncio.run(example())
        assert differences == []

    return run


def test_figures_match_the_reference_on_sqlite(tmp_path) -> None:
    check("sqlite", f"sqlite+aiosqlite:///{tmp_path / 'upstream.sqlite3'}")()


@pytest.mark.postgres
def test_figures_match_the_reference_on_postgresql(postgres_url: str) -> None:
    database = postgres_url.rsplit("/", 1)[1]

    async def off_utc() -> None:
        from loaders.engines import make_engine

        engine = make_engine(postgres_url)
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    text(f"ALTER DATABASE \"{database}\" SET timezone TO '{DATABASE_TZ}'")
                )
        finally:
            await engine.dispose()

    asyncio.run(off_utc())
    check("postgres", postgres_url)()


EDGES: dict[str, Callable[[World], bool]] = {
    "ids near 2^31-1": lambda w: any(u["id"] > 2**31 - 500 for u in w.rows[programs.users]),
    "seats pooled past 2^31-1": lambda w: (
        sum(c["seat_capacity"] for c in w.rows[programs.cohorts]) > 2**31
    ),
    "zero capacity": lambda w: any(c["seat_capacity"] == 0 for c in w.rows[programs.cohorts]),
    "an admin who directs a track": lambda w: any(
        u["role"] == "admin" and u["id"] == t["director_id"]
        for u in w.rows[programs.users]
        for t in w.rows.get(programs.track_directors, [])
    ),
    "a review before its submission": lambda w: any(
        s["reviewed_at"] is not None and s["reviewed_at"] < s["submitted_at"]
        for s in w.rows.get(missions.mission_submissions, [])
    ),
    "a score on a bucket edge": lambda w: any(
        r["score"] in (20.0, 40.0, 60.0, 80.0, 100.0)
        for r in w.rows.get(talentscope.readiness_scores, [])
    ),
    "a mentor without a row": lambda w: any(
        a["mentor_id"] not in {m["id"] for m in w.rows.get(mentorship.mentors, [])}
        for a in w.rows.get(mentorship.mentor_assignments, [])
    ),
    "a session a microsecond from now": lambda w: any(
        abs(s["scheduled_at"] - w.now).total_seconds() == 1e-6
        for s in w.rows.get(mentorship.mentorship_sessions, [])
    ),
    "refunds above the payment": lambda w: any(
        sum(
            r["amount_cents"] for r in w.rows.get(billing.refunds, []) if r["payment_id"] == p["id"]
        )
        > p["amount_cents"]
        for p in w.rows.get(billing.payments, [])
    ),
}


@pytest.mark.parametrize("edge", list(EDGES))
def test_the_generator_reaches_each_edge(edge: str) -> None:
    no_shrinking = settings(max_examples=2000, database=None, phases=[Phase.generate])
    found = find(worlds("sqlite"), EDGES[edge], settings=no_shrinking)
    assert EDGES[edge](found)
