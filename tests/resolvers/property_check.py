"""The property of tests/resolvers/test_figures_property.py (and of its long run in
tests/reliability/test_figures_at_length.py): every figure served for upstream rows
Hypothesis draws (tests/resolvers/generated_world.py), written into a real database,
equals the reference of tests/resolvers/reference_figures.py. The clock is pinned at a UTC
day boundary; the process runs 14 hours ahead of UTC (SQLite) or 12 behind (PostgreSQL,
whose database is set 14 hours ahead)."""

import asyncio
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from sqlalchemy import text

from loaders import programs
from loaders.engines import make_engine
from tests.resolvers.generated_world import World, worlds, write
from tests.resolvers.reference_figures import Reference
from tests.support.gateway import settings_for
from tests.support.gateway_client import fixed_clock, gateway_client

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


def check(backend: str, url: str, examples: int) -> Callable[[], None]:
    """The property as a Hypothesis test of `examples` worlds on the database at `url`."""

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        # No shrinking: each example writes a database and serves it (about half a second),
        # and a failure lists its differences already.
        phases=(Phase.explicit, Phase.reuse, Phase.generate),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(world=worlds(backend))
    def run(world: World) -> None:
        async def example() -> list[str]:
            await write(url, world)
            return await served_and_expected(url, world)

        with process_timezone(PROCESS_TZ[backend]):
            differences = asyncio.run(example())
        assert differences == [], "\n".join(differences)

    return run


def postgres_off_utc(url: str) -> None:
    """New sessions of the database at `url` run 14 hours ahead of UTC."""
    database = url.rsplit("/", 1)[1]

    async def alter() -> None:
        engine = make_engine(url)
        try:
            async with engine.begin() as conn:
                statement = f"ALTER DATABASE \"{database}\" SET timezone TO '{DATABASE_TZ}'"
                await conn.execute(text(statement))
        finally:
            await engine.dispose()

    asyncio.run(alter())
