"""Refresh cycles: a worker killed mid-cycle, two processes sharing one Redis, the
embedded scheduler."""

import asyncio
import signal

import orjson
import pytest
import redis.asyncio as aioredis
from sqlalchemy import event

from gateway.cache.keys import JOB_REFRESH_ALL, QUEUE_NAME
from gateway.settings import Settings
from tests.harness.processes import WorkerProcess, child_env
from tests.harness.waiting import async_wait_until
from tests.support import dataset
from tests.support.clock import MovableClock
from tests.support.cycles import refresh_all
from tests.support.dataset import DANA, DREW, NORA, NOW
from tests.support.gateway import StatementCounter, services_of, settings_for
from tests.support.gateway_client import gateway_client
from tests.support.queries import COHORT_DETAIL, SUMMARY
from workers.worker import cron_fields

SECTIONS = (
    "seats",
    "enrollment",
    "mentorship",
    "readiness",
    "competencies",
    "mission_funnel",
    "portfolio",
    "payments",
    "milestones",
    "alerts",
    "flags",
)


@pytest.fixture
async def many_cohorts_url(tmp_path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'many.sqlite3'}"
    await dataset.load(url, dataset.replicated(3000))
    return url


async def entries(redis_url: str) -> dict[str, dict]:
    client = aioredis.Redis.from_url(redis_url)
    try:
        # Cache entries only: not locks, nor the arq queue (which shares the prefix).
        keys = [
            k.decode()
            for k in await client.keys("ddg:*")
            if b":lock" not in k and not k.startswith(QUEUE_NAME.encode())
        ]
        values = await client.mget(keys) if keys else []
        return {k: orjson.loads(v) for k, v in zip(keys, values, strict=True) if v is not None}
    finally:
        await client.aclose()


async def test_worker_killed_mid_cycle_leaves_no_partial_entry(
    many_cohorts_url: str, redis_url: str, tmp_path
) -> None:
    # A real worker process, to kill.
    worker = WorkerProcess("worker", child_env(many_cohorts_url, redis_url=redis_url), tmp_path)
    await asyncio.to_thread(worker.start)
    try:
        client = aioredis.Redis.from_url(redis_url)
        try:
            from arq.connections import ArqRedis

            queue = ArqRedis(client.connection_pool, default_queue_name=QUEUE_NAME)
            await queue.enqueue_job(JOB_REFRESH_ALL, _job_id="cycle-1", _queue_name=QUEUE_NAME)

            async def first_cohorts() -> bool:
                return len(await client.keys("ddg:*:cohort:*")) >= 400

            await async_wait_until(first_cohorts, "the first cohorts to land", poll_s=0.1)
            written = len(await client.keys("ddg:*:cohort:*"))
            assert 400 <= written < 3004, written  # mid-cycle: some but not all cohorts
            assert await client.keys("ddg:*:refresh:last") == []
        finally:
            await client.aclose(close_connection_pool=True)
    finally:
        await asyncio.to_thread(worker.stop, signal.SIGKILL)

    # Every entry present is whole: a complete subtree, never a fragment.
    for key, value in (await entries(redis_url)).items():
        assert "computed_at" in value, key
        if ":cohort:" in key:
            assert all(value[s] is not None for s in SECTIONS), key
            assert "unavailable" not in value, key

    # The next cycle (what the cron job runs) completes and leaves no director unrefreshed.
    # The killed job itself stays claimed until its arq in-progress key expires.
    settings = settings_for(many_cohorts_url, redis_url)
    async with gateway_client(settings, None) as api:
        await refresh_all(services_of(api))
    after = await entries(redis_url)
    stamp = next(v for k, v in after.items() if k.endswith(":refresh:last"))
    assert (stamp["cohorts"], stamp["directors"], stamp["incomplete_cohorts"]) == (3004, 3, 0)
    assert sum(1 for k in after if ":cohort:" in k) == 3004
    for director in (DANA, DREW, NORA):
        assert any(k.endswith(f":summary:{director}") for k in after)


async def test_cold_key_through_two_processes_is_computed_once(tmp_path, redis_url: str) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'two.sqlite3'}"
    await dataset.load(url)
    settings = settings_for(url, redis_url)
    async with (
        gateway_client(settings, MovableClock(NOW)) as one,
        gateway_client(settings, MovableClock(NOW)) as two,
    ):
        # Two Services = two processes' worth of state; they share only Redis.
        with StatementCounter(one) as first, StatementCounter(two) as second:
            answers = await asyncio.gather(
                *[
                    (one if n % 2 else two).post(COHORT_DETAIL, {"id": 101}, user=DANA)
                    for n in range(40)
                ]
            )
        assert {r.status_code for r in answers} == {200}
        assert len({r.content for r in answers}) == 1
    # The caller's profile, scope and cohort once each: 18 statements in all, not per process.
    assert first.count + second.count == 18


async def test_embedded_scheduler_prewarms_without_redis(tmp_path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'embedded.sqlite3'}"
    await dataset.load(url)
    settings = Settings(database_url=url, refresh_interval_s=300, embedded_scheduler=True)
    app_clock = MovableClock(NOW)
    from gateway.app import create_app

    app = create_app(settings, clock=app_clock)
    async with app.router.lifespan_context(app):
        services = app.state.services

        async def first_cycle_done() -> bytes | None:
            return (await services.kv.get_many([services.cache.keys.refresh_stamp()]))[0]

        await async_wait_until(first_cycle_done, "the embedded scheduler's first cycle")
        import httpx

        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            from gateway.auth import mint_token

            headers = {"Authorization": f"Bearer {mint_token(settings, DANA, 'director', 60)}"}
            counted = 0

            def count(*args) -> None:
                nonlocal counted
                counted += 1

            [engine] = set(services.upstream.engines.values())
            event.listen(engine.sync_engine, "before_cursor_execute", count)
            try:
                response = await http.post("/graphql", json={"query": SUMMARY}, headers=headers)
            finally:
                event.remove(engine.sync_engine, "before_cursor_execute", count)
    assert response.json()["data"]["me"]["summary"]["averageReadiness"] == 61.0
    assert counted == 0


def test_cron_fields_follow_the_interval() -> None:
    assert cron_fields(300) == {
        "minute": {0, 5, 10, 15, 20, 25, 30, 35, 40, 45, 50, 55},
        "second": 0,
    }
    assert cron_fields(20) == {"second": {0, 20, 40}}
    with pytest.raises(ValueError, match="divide a minute or an hour"):
        cron_fields(420)
