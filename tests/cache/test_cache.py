"""The subtree cache against a real redis-server, refreshed by a real arq worker (burst)."""

import asyncio
from collections import Counter
from unittest.mock import ANY

import orjson
import pytest
from prometheus_client import REGISTRY

from gateway.version import VERSION
from tests.harness.waiting import async_wait_until
from tests.support.clock import MovableClock
from tests.support.cycles import refresh_all
from tests.support.dataset import ADMIN, DANA, DREW, NOW
from tests.support.gateway import (
    EVENT,
    StatementCounter,
    queued_jobs,
    run_worker,
    services_of,
    settings_for,
    signed,
)
from tests.support.gateway_client import GatewayClient, background_done, gateway_client
from tests.support.queries import COHORT_DETAIL, SUMMARY

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

STALE = "query { me { summary { computedAt stale } } }"
COHORT_STALE = "query C($id: Int!) { cohort(id: $id) { id computedAt stale seats { used } } }"


@pytest.fixture
async def cached(dataset_url: str, redis_url: str):
    clock = MovableClock(NOW)
    settings = settings_for(dataset_url, redis_url)
    async with gateway_client(settings, clock) as api:
        api.clock = clock
        yield api


async def test_hit_after_prewarm_issues_no_upstream_statement(cached: GatewayClient) -> None:
    report = await refresh_all(services_of(cached))
    assert (report.cohorts, report.directors, report.incomplete_cohorts) == (4, 3, 0)
    with StatementCounter(cached) as counter:
        summary = await cached.data(SUMMARY, user=DANA)
        detail = await cached.data(COHORT_DETAIL, {"id": 101}, user=DANA)
        admin = await cached.data(SUMMARY, user=ADMIN, role="admin")
    assert counter.count == 0
    assert summary["me"]["summary"]["averageReadiness"] == 61.0
    assert detail["cohort"]["readiness"]["average"] == (80 + 55 + 100) / 3
    assert admin["me"]["summary"]["totalCohorts"] == 4


async def test_cached_answer_equals_live_answer(dataset_url: str, cached: GatewayClient) -> None:
    await refresh_all(services_of(cached))
    from_cache = await cached.data(COHORT_DETAIL, {"id": 101}, user=DANA)
    async with gateway_client(
        settings_for(dataset_url, None, cache_enabled=False), MovableClock(NOW)
    ) as live:
        assert await live.data(COHORT_DETAIL, {"id": 101}, user=DANA) == from_cache
        assert await live.data(SUMMARY, user=DANA) == await cached.data(SUMMARY, user=DANA)


async def test_stale_while_revalidate(cached: GatewayClient, redis_url: str) -> None:
    await refresh_all(services_of(cached))
    cached.clock.advance(301)  # past the refresh interval, within the 900 s TTL
    with StatementCounter(cached) as counter:
        body = await cached.data(STALE, user=DANA)
        cohort = await cached.data(COHORT_STALE, {"id": 102}, user=DANA)
    # Served from cache while stale, but for the caller's own profile: who is asking is
    # never taken from a stale entry (gateway/auth.py), so it is read again, once.
    assert counter.count == 1
    assert body["me"]["summary"] == {"computedAt": "2026-11-24T12:00:00.000000Z", "stale": True}
    assert cohort["cohort"]["stale"] is True
    await background_done(services_of(cached))  # the enqueue runs beside the answer
    assert await queued_jobs(redis_url) == [
        "refresh_cohort:102",
        "refresh_director:director:2",
    ]
    await run_worker(services_of(cached).settings.model_copy())
    # The worker's clock is the wall clock; what matters is that it rewrote the entries.
    body = await cached.data("query { me { summary { computedAt } } }", user=DANA)
    assert body["me"]["summary"]["computedAt"] != "2026-11-24T12:00:00.000000Z"
    assert await queued_jobs(redis_url) == []


async def test_expired_entry_is_recomputed(cached: GatewayClient) -> None:
    await refresh_all(services_of(cached))
    cached.clock.advance(901)
    with StatementCounter(cached) as counter:
        body = await cached.data(STALE, user=DANA)
    assert counter.count > 0
    assert body["me"]["summary"] == {"computedAt": "2026-11-24T12:15:01.000000Z", "stale": False}


async def test_single_flight_under_100_concurrent_misses(dataset_url: str, redis_url: str) -> None:
    async with gateway_client(settings_for(dataset_url, redis_url), MovableClock(NOW)) as api:
        with StatementCounter(api) as once:
            await api.data(COHORT_DETAIL, {"id": 101}, user=DANA)
    async with gateway_client(settings_for(dataset_url, redis_url), MovableClock(NOW)) as api:
        await services_of(api).kv.client.flushall()
        with StatementCounter(api) as many:
            answers = await asyncio.gather(
                *[api.post(COHORT_DETAIL, {"id": 101}, user=DANA) for _ in range(100)]
            )
        assert {r.status_code for r in answers} == {200}
        assert len({r.content for r in answers}) == 1
    assert once.count == 18  # the caller's profile, scope, cohort subtree
    assert many.count == once.count


async def test_scope_is_checked_before_a_cached_subtree_is_read(cached: GatewayClient) -> None:
    services = services_of(cached)
    await refresh_all(services)
    assert await services.kv.get_many([services.cache.keys.cohort(103)]) != [None]
    response = await cached.post(COHORT_STALE, {"id": 103}, user=DANA)
    assert [e["extensions"]["code"] for e in response.json()["errors"]] == ["NOT_FOUND"]
    assert (await cached.data(COHORT_STALE, {"id": 103}, user=DREW))["cohort"]["id"] == 103


def webhook_events() -> dict[str, float]:
    """This process's gateway_webhook_events_total, by result (the registry is global)."""
    return {
        result: REGISTRY.get_sample_value("gateway_webhook_events_total", {"result": result}) or 0.0
        for result in ("accepted", "duplicate")
    }


async def test_webhook_signature_replay_and_fan_out(cached: GatewayClient, redis_url: str) -> None:
    counted = webhook_events()
    services = services_of(cached)
    await refresh_all(services)
    http = cached.http
    for headers in ({"Content-Type": "application/json"}, signed(EVENT, "wrong-secret")):
        response = await http.post("/webhooks/upstream", content=EVENT, headers=headers)
        assert response.status_code == 401
        assert response.json() == {
            "error": {
                "code": "BAD_SIGNATURE",
                "message": "Missing or bad X-Signature.",
                "requestId": response.headers["x-request-id"],
            }
        }
    malformed = b'{"id": "evt_02", "module": "missions"'
    response = await http.post("/webhooks/upstream", content=malformed, headers=signed(malformed))
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "BAD_REQUEST"
    unknown = orjson.dumps({**orjson.loads(EVENT), "id": "evt_03", "module": "crm"})
    response = await http.post("/webhooks/upstream", content=unknown, headers=signed(unknown))
    assert (response.status_code, response.json()["error"]["message"]) == (
        400,
        "Unknown module 'crm'.",
    )
    assert await queued_jobs(redis_url) == []

    response = await http.post("/webhooks/upstream", content=EVENT, headers=signed(EVENT))
    assert response.status_code == 202
    assert response.json() == {
        "status": "accepted",
        "id": "evt_01",
        "cohorts": [102],
        "directors": [DREW],
    }
    assert await queued_jobs(redis_url) == ["refresh_director:director:3", "refresh_pending:evt_01"]
    response = await http.post("/webhooks/upstream", content=EVENT, headers=signed(EVENT))
    assert (response.status_code, response.json()["status"]) == (202, "duplicate")
    assert await queued_jobs(redis_url) == ["refresh_director:director:3", "refresh_pending:evt_01"]

    before = {
        user: (await cached.data("{ me { summary { computedAt } } }", user=user))
        for user in (DANA, DREW)
    }
    await run_worker(services.settings)
    # Cohort 102 is in both scopes: both summaries (and the admins') were rewritten.
    for user in (DANA, DREW):
        after = await cached.data("{ me { summary { computedAt } } }", user=user)
        assert after != before[user]
    assert webhook_events() == {
        "accepted": counted["accepted"] + 1,
        "duplicate": counted["duplicate"] + 1,
    }


async def test_redis_stopped_mid_test_answers_live_then_resumes(
    dataset_url: str, redis_server, redis_url: str
) -> None:
    settings = settings_for(dataset_url, redis_url)
    async with gateway_client(settings, MovableClock(NOW)) as api:
        services = services_of(api)
        await refresh_all(services)
        expected = await api.data(SUMMARY, user=DANA)
        redis_server.stop()
        try:
            for _ in range(3):
                with StatementCounter(api) as counter:
                    assert await api.data(SUMMARY, user=DANA) == expected
                assert counter.count > 0  # computed live
            ready = await api.http.get("/readyz")  # answers are still given: degraded
            assert (ready.status_code, ready.json()) == (
                200,
                {"status": "degraded", "down": ["redis"], "version": VERSION},
            )
        finally:
            redis_server.start()

        async def ready() -> bool:  # the breaker retries Redis after a second
            return (await api.http.get("/readyz")).json() == {
                "status": "ready",
                "down": [],
                "version": VERSION,
            }

        await async_wait_until(ready, "the gateway to use Redis again")
        assert (await api.http.get("/readyz")).json() == {
            "status": "ready",
            "down": [],
            "version": VERSION,
        }
        await api.data(SUMMARY, user=DANA)  # miss: computed and stored again
        with StatementCounter(api) as counter:
            assert await api.data(SUMMARY, user=DANA) == expected
        assert counter.count == 0


async def test_unreachable_upstream_module_serves_cached_sections(
    dataset_url: str, redis_url: str
) -> None:
    clock = MovableClock(NOW)
    async with gateway_client(settings_for(dataset_url, redis_url), clock) as api:
        await refresh_all(services_of(api))
    broken = settings_for(
        dataset_url,
        redis_url,
        upstream_billing_url="postgresql+asyncpg://nobody@127.0.0.1:9/nowhere",
    )
    clock.advance(1000)  # past the TTL: the gateway tries to recompute
    async with gateway_client(broken, clock) as api:
        response = await api.post(COHORT_DETAIL, {"id": 101}, user=DANA)
        body = response.json()
        assert response.status_code == 200
        assert [(e["path"], e["extensions"]) for e in body["errors"]] == [
            (
                ["cohort", "payments"],
                {"code": "UPSTREAM_UNAVAILABLE", "module": "billing", "requestId": ANY},
            )
        ]
        cohort = body["data"]["cohort"]
        assert cohort["stale"] is True
        assert [p["currency"] for p in cohort["payments"]] == ["EUR", "USD"]
        assert cohort["missionFunnel"]["approved"] == 3  # other modules answer normally
        assert cohort["flags"] == [
            "LOW_SESSION_COMPLETION",
            "OVERDUE_MILESTONE",
            "PAYMENT_FAILURES",
        ]

        # Nothing cached: the field is null with the same error; the rest still arrives.
        await services_of(api).kv.client.flushall()
        body = (await api.post(COHORT_DETAIL, {"id": 101}, user=DANA)).json()
        assert [(e["path"], e["extensions"]["code"]) for e in body["errors"]] == [
            (["cohort", "payments"], "UPSTREAM_UNAVAILABLE")
        ]
        assert body["data"]["cohort"]["payments"] is None
        assert body["data"]["cohort"]["seats"]["used"] == 3
        summary = (await api.post(SUMMARY, user=DANA)).json()
        assert summary["data"]["me"]["summary"] is None
        assert [(e["path"], e["extensions"]) for e in summary["errors"]] == [
            (
                ["me", "summary"],
                {"code": "UPSTREAM_UNAVAILABLE", "module": "billing", "requestId": ANY},
            )
        ]


async def test_request_refresh_is_scoped_and_rate_limited(
    cached: GatewayClient, redis_url: str
) -> None:
    mutation = """
    mutation R($c: Int, $d: Int) {
      requestRefresh(cohortId: $c, directorId: $d) { accepted target }
    }
    """
    response = await cached.post(mutation, {"c": 103}, user=DANA)
    assert [e["extensions"]["code"] for e in response.json()["errors"]] == ["NOT_FOUND"]
    response = await cached.post(mutation, {"d": DREW}, user=DANA)
    assert [e["extensions"]["code"] for e in response.json()["errors"]] == ["NOT_FOUND"]
    response = await cached.post(mutation, {}, user=DANA)
    assert [e["extensions"]["code"] for e in response.json()["errors"]] == ["BAD_USER_INPUT"]
    ok = await cached.data(mutation, {"c": 101}, user=DANA)
    assert ok == {"requestRefresh": {"accepted": True, "target": "cohort:101"}}
    assert await cached.data(mutation, {"d": DANA}, user=DANA) == {
        "requestRefresh": {"accepted": True, "target": "director:2"}
    }
    assert await queued_jobs(redis_url) == ["refresh_cohort:101", "refresh_director:director:2"]
    codes = Counter()
    for _ in range(6):
        body = (await cached.post(mutation, {"c": 101}, user=DANA)).json()
        codes[body["errors"][0]["extensions"]["code"] if "errors" in body else "ok"] += 1
    assert codes == Counter({"ok": 4, "RATE_LIMITED": 2})  # 6 per minute per caller
    # Another caller has their own budget.
    assert (await cached.data(mutation, {"c": 102}, user=DREW))["requestRefresh"]["accepted"]


async def test_stale_only_past_the_interval_plus_the_grace(
    dataset_url: str, redis_url: str
) -> None:
    clock = MovableClock(NOW)
    settings = settings_for(dataset_url, redis_url, refresh_grace_s=60)
    async with gateway_client(settings, clock) as api:
        await refresh_all(services_of(api))
        clock.advance(359)  # a cycle running late: not stale yet, no refresh queued
        assert (await api.data(STALE, user=DANA))["me"]["summary"]["stale"] is False
        await background_done(services_of(api))
        assert await queued_jobs(redis_url) == []
        clock.advance(2)
        assert (await api.data(STALE, user=DANA))["me"]["summary"]["stale"] is True
        await background_done(services_of(api))
        assert await queued_jobs(redis_url) == ["refresh_director:director:2"]
