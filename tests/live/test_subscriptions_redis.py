"""Subscriptions across gateway replicas on one Redis: a rewrite is published once and
every replica pushes to its own subscribers; no Redis command per subscriber; notices
resume after Redis restarts. Two gateways served by uvicorn in this process, one
database, one redis-server (tests/harness/servers.py)."""

import asyncio
from collections import Counter
from contextlib import AsyncExitStack

import pytest

from gateway.cache.keys import Keys, cache_version
from gateway.cache.kv import CacheUnavailable
from resolvers.caller import DIRECTOR, Caller
from tests.harness.redis_link import RedisMonitor
from tests.harness.servers import RedisServer
from tests.support.clock import MovableClock
from tests.support.cycles import refresh_all
from tests.support.dataset import DANA, DREW, NOW
from tests.support.gateway import settings_for
from tests.support.live_server import Served, serving
from tests.support.subscription_clients import ws_session
from tests.support.subscriptions import COHORT, DASHBOARD, refresh_cohort, stamp

SUBSCRIBERS = {DANA: 6, DREW: 4}


@pytest.fixture
async def replicas(db: str, redis_url: str):
    clock = MovableClock(NOW)
    settings = settings_for(db, redis_url, subscriptions_max_connections_per_caller=10)
    async with serving(settings, clock) as a, serving(settings, clock) as b:
        a.clock = b.clock = clock  # type: ignore[attr-defined]
        await refresh_all(a.services)
        yield a, b


async def test_a_refresh_through_one_replica_reaches_the_subscribers_of_both(replicas) -> None:
    a, b = replicas
    async with (
        ws_session(a.ws_url, a.token(DANA)) as on_a,
        ws_session(b.ws_url, b.token(DANA)) as on_b,
    ):
        for ws in (on_a, on_b):
            await ws.subscribe("d", DASHBOARD)
            assert (await ws.data("d"))["dashboard"]["changedCohortIds"] == []
        await refresh_cohort(a, 101)  # what a worker runs for a webhook sent to A
        for ws in (on_a, on_b):
            assert (await ws.data("d"))["dashboard"]["changedCohortIds"] == [101]


async def test_one_read_per_key_however_many_subscribers_and_none_at_rest(
    replicas, redis_server: RedisServer
) -> None:
    a, b = replicas
    keys = Keys(cache_version(b.services.schema.as_str()))
    async with AsyncExitStack() as stack:
        sockets = []
        for user, count in SUBSCRIBERS.items():
            for _ in range(count):
                ws = await stack.enter_async_context(ws_session(b.ws_url, b.token(user)))
                await ws.subscribe("d", DASHBOARD)
                await ws.data("d")
                sockets.append(ws)
        with RedisMonitor(redis_server.port, 0) as monitor:
            # At rest: ten subscribers, no notice: the hub issues nothing (MONITOR sees the
            # commands of every client; the only ones here are the listener's health checks).
            idle = await _quiet_for(monitor, seconds=2.0)
            assert [c.name for c in idle if c.name not in ("PING",)] == []
            await refresh_cohort(a, 102)  # in both directors' scopes
            for ws in sockets:
                assert (await ws.data("d"))["dashboard"]["changedCohortIds"] == [102]
            await b.services.hub.settled()
        reads = Counter(c.key for c in monitor.commands if c.name == "GET")
    for caller in (Caller(DANA, DIRECTOR), Caller(DREW, DIRECTOR)):
        # Once for B's hub, however many of its subscribers share the key (A's refresh
        # reads cohorts, never summaries or scopes).
        assert reads[keys.summary(caller)] == 1
        assert reads[keys.scope(caller)] == 1


async def _quiet_for(monitor: RedisMonitor, seconds: float) -> list:
    start = len(monitor.commands)
    await asyncio.sleep(seconds)  # a window to observe that nothing happens
    return monitor.commands[start:]


async def test_notices_resume_after_redis_restarts(replicas, redis_server: RedisServer) -> None:
    a, b = replicas
    async with (
        ws_session(b.ws_url, b.token(DANA)) as ws,
        ws_session(b.ws_url, b.token(DANA)) as cohort_ws,
    ):
        await ws.subscribe("d", DASHBOARD)
        await ws.data("d")
        await cohort_ws.subscribe("c", COHORT, {"id": 101})
        await cohort_ws.data("c")
        redis_server.stop()
        redis_server.start()  # empty: nothing persisted
        # Subscribed again, B cannot know what it missed: it re-reads what it watches; the
        # cache is empty, so the summary is computed again (a new write) and pushed, naming
        # every cohort of the scope as possibly changed.
        resync = (await ws.data("d"))["dashboard"]
        assert resync["changedCohortIds"] == [101, 102, 104]
        await _reconnected(a)
        await refresh_cohort(a, 101)
        # B hears of it: by its notice, or, should B's subscription have dropped again while
        # it was published, by the re-read when it is back. (Computing what the restart
        # wiped is itself a rewrite, announced like any other: skipped.)
        while (await cohort_ws.data("c"))["cohort"]["computedAt"] != stamp(60):
            pass


async def _reconnected(served: Served) -> None:
    """Until the replica's Redis client works again (its pooled connections died with the
    server: the first command on each fails, and opens the cache's circuit breaker)."""
    for _ in range(600):  # bounded: 60 s
        try:
            await served.services.kv.ping()
            await served.services.kv.get_many(["probe", "probe2"])
            return
        except CacheUnavailable:
            await asyncio.sleep(0.1)
    raise AssertionError("Redis did not come back")
