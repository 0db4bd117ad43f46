"""The refresh cycle in batches any worker runs (gateway/refresh/dispatch.py).

With real `gateway worker` processes on PostgreSQL (2,004 cohorts, 32 cohort batches):
- two workers split a cycle, and every cohort, summary and record is written exactly once
  (every SET seen through MONITOR), every batch done once;
- a worker killed in the middle of its batches: another takes them over (attempt 2) and
  the cycle completes, still with every cohort written once.
In process (one coordinator, Redis): a batch that keeps failing is lost after three
attempts, the cycle is reported incomplete (no success record, its rewritten answers
dropped) and the next cycle covers it; two cycles asked for at once run one after the
other, a third is skipped; a cycle's records and entries carry its one instant.
"""

from __future__ import annotations

import asyncio
import functools
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
import redis
from arq.connections import ArqRedis
from sqlalchemy.engine import make_url

from gateway.cache.keys import (
    CYCLE_LEASE_KEY,
    CYCLE_OPENED_CHANNEL,
    JOB_REFRESH_ALL,
    QUEUE_NAME,
    Keys,
    cache_version,
)
from gateway.refresh import batches
from gateway.refresh.cycle import refresh_cycle
from gateway.refresh.dispatch import tapered
from gateway.refresh.lease import Skipped
from resolvers.caller import Caller
from resolvers.schema import build_schema
from tests.harness.processes import HOST, WorkerProcess, child_env, epoch, running
from tests.harness.redis_link import RedisMonitor
from tests.harness.waiting import async_wait_until, run_sync, wait_until
from tests.support import dataset
from tests.support.clock import MovableClock
from tests.support.dataset import ADMIN, DANA, DREW, NORA, NOW
from tests.support.gateway import services_of, settings_for
from tests.support.gateway_client import gateway_client

pytestmark = pytest.mark.postgres

CLONES = 2000
COHORTS = [101, 102, 103, 104] + [1000 + n for n in range(1, CLONES + 1)]
SUMMARIES = {DANA: "director", DREW: "director", NORA: "director", ADMIN: "admin"}
DB = 4  # of the session's Redis: this module's
COHORT_BATCHES = len(tapered(range(len(COHORTS)), 125))  # 2,004 cohorts: 32
DONE = "^refresh batch done$"


@functools.cache
def keys() -> Keys:
    return Keys(cache_version(build_schema().as_str()))


@pytest.fixture(scope="module")
def many_cohorts(postgres_url_factory) -> str:
    url = postgres_url_factory("partitioned")
    run_sync(lambda: dataset.load(url, dataset.replicated(CLONES)))
    return url


@pytest.fixture
def two_workers(
    many_cohorts: str, redis_server, tmp_path: Path
) -> Iterator[tuple[list[WorkerProcess], str]]:
    redis_server.start()
    url = f"redis://{HOST}:{redis_server.port}/{DB}"
    with redis.Redis(host=HOST, port=redis_server.port, db=DB) as client:
        client.flushdb()
    workers = [
        WorkerProcess(
            name,
            child_env(
                many_cohorts,
                redis_url=url,
                refresh_interval_s="3600",  # no tick during a test: cycles are asked for
                upstream_query_timeout_s="60",  # statements may wait on a lock held on purpose
                worker_heartbeat_file=str(tmp_path / f"{name}.heartbeat"),
            ),
            tmp_path,
        )
        for name in ("worker-a", "worker-b")
    ]
    with running(*workers):
        # A cold cache: one cycle at once; the tests start after it.
        wait_until(lambda: cycles_done(workers), "the cold-start cycle", poll_s=0.2)
        with redis.Redis(host=HOST, port=redis_server.port, db=DB) as client:
            wait_until(lambda: not client.exists(CYCLE_LEASE_KEY), "the cycle to end")
        yield workers, url


def cycles_done(workers: list[WorkerProcess]) -> list[dict[str, Any]]:
    """Every worker's, in the order they ended."""
    return sorted((r for w in workers for r in w.messages("^refresh cycle done$")), key=epoch)


def enqueue(url: str, job_id: str) -> None:
    async def put() -> None:
        client = ArqRedis.from_url(url)
        try:
            assert await client.enqueue_job(JOB_REFRESH_ALL, _job_id=job_id, _queue_name=QUEUE_NAME)
        finally:
            await client.aclose()

    run_sync(put)


def batches_of(workers: list[WorkerProcess], cycle: str) -> Counter[tuple[str, int]]:
    return Counter(
        (r["phase"], r["batch"]) for w in workers for r in w.messages(DONE) if r["cycle"] == cycle
    )


def cohort_and_summary_sets(monitor: RedisMonitor) -> tuple[Counter[str], Counter[str]]:
    k = keys()
    sets = Counter(c.key for c in list(monitor.commands) if c.name == "SET")
    cohorts = Counter({k.cohort(i): sets[k.cohort(i)] for i in COHORTS})
    summaries = Counter(
        {k.summary(Caller(u, r)): sets[k.summary(Caller(u, r))] for u, r in SUMMARIES.items()}
    )
    return cohorts, summaries


def test_two_workers_split_a_cycle_each_target_once(
    two_workers: tuple[list[WorkerProcess], str], redis_server
) -> None:
    workers, url = two_workers
    before = len(cycles_done(workers))
    with RedisMonitor(redis_server.port, DB) as monitor:
        enqueue(url, "split-cycle")
        wait_until(lambda: len(cycles_done(workers)) > before, "the cycle", poll_s=0.2)
        time.sleep(1.0)  # a second write of any target would show by now
    [done] = cycles_done(workers)[before:]
    assert (done["cohorts"], done["directors"], done["lost_batches"]) == (len(COHORTS), 3, 0)
    ran = batches_of(workers, done["cycle"])
    assert {b: n for b, n in ran.items() if b[0] == "cohorts"} == {
        ("cohorts", i): 1 for i in range(COHORT_BATCHES)
    }
    assert ran[("directors", 0)] == ran[("dashboards", 0)] == 1
    by_worker = Counter(
        w.name
        for w in workers
        for r in w.messages(DONE)
        if r["cycle"] == done["cycle"] and r["phase"] == "cohorts"
    )
    assert set(by_worker) == {"worker-a", "worker-b"}, by_worker  # both took batches
    cohorts, summaries = cohort_and_summary_sets(monitor)
    assert set(cohorts.values()) == {1} and set(summaries.values()) == {1}
    assert (
        monitor.writes(keys().refresh_stamp()) and len(monitor.writes(keys().refresh_stamp())) == 1
    )
    with redis.Redis(host=HOST, port=redis_server.port, db=DB) as client:
        record = orjson.loads(client.get(keys().refresh_success()))
    assert (record["cycle"], record["complete"]) == (done["cycle"], True)
    print(f"\ncohort batches per worker: {dict(by_worker)}; cycle {done['duration_s']:.2f} s")


async def test_a_killed_workers_batches_are_taken_over(
    two_workers: tuple[list[WorkerProcess], str], redis_server, many_cohorts: str
) -> None:
    workers, url = two_workers
    before = len(cycles_done(workers))
    dsn = make_url(many_cohorts).set(drivername="postgresql").render_as_string(False)
    lock = await asyncpg.connect(dsn)
    client = redis.Redis(host=HOST, port=redis_server.port, db=DB)
    try:
        # Every cohort batch waits on the sessions table: the batches are claimed, and
        # nothing of them written, when one worker is killed.
        transaction = lock.transaction()
        await transaction.start()
        await lock.execute("LOCK TABLE mentorship_sessions IN ACCESS EXCLUSIVE MODE")
        with RedisMonitor(redis_server.port, DB) as monitor:
            enqueue(url, "kill-cycle")
            coordinator = wait_until(
                lambda: next(
                    (w for w in workers if w.job_starts(f"kill-cycle:{JOB_REFRESH_ALL}")), None
                ),
                "the cycle to start",
            )
            victim = next(w for w in workers if w is not coordinator)

            def victims_claims() -> list[str]:
                found = []
                for key in client.scan_iter("ddg:queue:cycle:*:claim:cohorts:*"):
                    owner = client.get(key)
                    if owner is not None and owner.decode().startswith(f"{victim.pid}:"):
                        found.append(
                            key.decode().rsplit(":", 2)[-2] + ":" + key.decode().rsplit(":", 1)[-1]
                        )
                return found

            taken = await asyncio.to_thread(
                wait_until, victims_claims, "the victim to claim batches"
            )
            victim.send_signal(signal.SIGKILL)
            assert victim.wait() == -signal.SIGKILL
            killed = time.time()
            await transaction.rollback()
            await asyncio.to_thread(
                wait_until,
                lambda: len(cycles_done(workers)) > before,
                "the cycle to complete without the victim",
            )
            await asyncio.sleep(1.0)
    finally:
        await lock.close()
        client.close()
    [done] = cycles_done(workers)[before:]
    assert (done["cohorts"], done["lost_batches"], done["incomplete_cohorts"]) == (
        len(COHORTS),
        0,
        0,
    )
    ran = [r for r in coordinator.messages(DONE) if r["cycle"] == done["cycle"]]
    retried = {f"{r['phase']}:{r['batch']}" for r in ran if r["attempt"] == 2}
    assert set(taken) <= retried, (taken, retried)
    assert all(epoch(r) > killed for r in ran if f"{r['phase']}:{r['batch']}" in taken)
    assert not [r for r in victim.messages(DONE) if r["cycle"] == done["cycle"]]
    counts = batches_of(workers, done["cycle"])
    assert {b: n for b, n in counts.items() if b[0] == "cohorts"} == {
        ("cohorts", i): 1 for i in range(COHORT_BATCHES)
    }
    cohorts, summaries = cohort_and_summary_sets(monitor)
    assert set(cohorts.values()) == {1} and set(summaries.values()) == {1}
    print(f"\nkilled {victim.name} holding {sorted(taken)}; taken over by {coordinator.name}")


# --- in process: one coordinator, Redis -------------------------------------------------


@pytest.fixture
async def api(tmp_path, redis_url: str):
    url = f"sqlite+aiosqlite:///{tmp_path / 'upstream.sqlite3'}"
    await dataset.load(url, dataset.replicated(600))  # 604 cohorts: 5 batches of 125
    clock = MovableClock(NOW)
    async with gateway_client(settings_for(url, redis_url), clock) as client:
        client.clock = clock  # type: ignore[attr-defined]
        yield client


async def test_a_batch_failing_three_times_is_lost_and_the_next_cycle_covers_it(
    api, monkeypatch
) -> None:
    services = services_of(api)
    k = services.cache.keys
    first, _ = await refresh_cycle(services)
    assert first.complete and first.cohorts == 604
    cohort_work = batches.WORK["cohorts"]
    attempts: list[int] = []

    async def failing(services: Any, run: Any, ids: list[int], guard: Any) -> dict[str, Any]:
        if 1500 in ids:  # in one of the batches
            attempts.append(1)
            raise RuntimeError("upstream bug in one batch")
        return await cohort_work(services, run, ids, guard)

    monkeypatch.setitem(batches.WORK, "cohorts", failing)
    api.clock.advance(300)
    report, answers = await refresh_cycle(services)
    assert (report.lost_batches, report.complete, report.directors) == (1, False, 0)
    assert len(attempts) == 3
    last, success = await services.kv.get_many([k.refresh_stamp(), k.refresh_success()])
    assert orjson.loads(last)["cycle"] == report.cycle
    assert orjson.loads(last)["complete"] is False
    assert orjson.loads(success)["cycle"] == first.cycle  # the last complete one stays
    # The batches that ran rewrote their cohorts as of the cycle's instant; the lost one not.
    [ok, lost] = await services.kv.get_many([k.cohort(1001), k.cohort(1500)])
    assert orjson.loads(ok)["computed_at"] == "2026-11-24T12:05:00.000000Z"
    assert orjson.loads(lost)["computed_at"] == "2026-11-24T12:00:00.000000Z"
    monkeypatch.setitem(batches.WORK, "cohorts", cohort_work)
    api.clock.advance(60)
    covered, _ = await refresh_cycle(services)
    assert covered.complete and covered.cohorts == 604 and covered.directors == 3
    [success] = await services.kv.get_many([k.refresh_success()])
    assert orjson.loads(success)["cycle"] == covered.cycle


async def test_cycles_never_overlap_and_speak_of_one_instant(api, monkeypatch) -> None:
    services = services_of(api)
    cohort_work = batches.WORK["cohorts"]
    windows: dict[str, list[float]] = {}

    async def timed(services: Any, run: Any, ids: list[int], guard: Any) -> dict[str, Any]:
        windows.setdefault(run.id, []).append(time.monotonic())
        try:
            return await cohort_work(services, run, ids, guard)
        finally:
            windows[run.id].append(time.monotonic())

    monkeypatch.setitem(batches.WORK, "cohorts", timed)
    results = await asyncio.gather(
        refresh_cycle(services), refresh_cycle(services), refresh_cycle(services),
        return_exceptions=True,
    )  # fmt: skip
    skipped = [r for r in results if isinstance(r, Skipped)]
    ran = [r[0] for r in results if isinstance(r, tuple)]
    assert len(skipped) == 1 and len(ran) == 2, results
    # The second cycle's batches all ran after the first's.
    (a, first), (b, second) = sorted(windows.items(), key=lambda item: min(item[1]))
    assert {a, b} == {r.cycle for r in ran}
    assert max(first) < min(second)
    k = services.cache.keys
    [record] = await services.kv.get_many([k.refresh_stamp()])
    stamp = orjson.loads(record)
    assert stamp["cycle"] == b and stamp["started_at"] == "2026-11-24T12:00:00.000000Z"
    assert set(stamp["phases_s"]) == {"cohorts", "directors", "dashboards", "answers"}
    entries = await services.kv.get_many(
        [k.cohort(101), k.cohort(1600), k.summary(Caller(DANA, "director"))]
    )
    assert {orjson.loads(e)["computed_at"] for e in entries} == {stamp["started_at"]}


async def test_an_opened_phase_wakes_the_batch_runners_without_waiting_for_their_poll(
    api, monkeypatch
) -> None:
    """A batch runner that would not poll for an hour still takes batches the moment a
    phase opens (the announcement on `ddg:queue:cycle:opened`): with every cohort batch
    waiting until another has started, the cycle completes only if the runner ran
    alongside the coordinator."""
    from gateway.refresh import dispatch

    services = services_of(api)
    monkeypatch.setattr(dispatch, "RUNNER_POLL_S", 3600.0)
    cohort_work = batches.WORK["cohorts"]
    started: list[int] = []
    two_running = asyncio.Event()

    async def paired(services: Any, run: Any, ids: list[int], guard: Any) -> dict[str, Any]:
        started.append(ids[0])
        if len(started) >= 2:
            two_running.set()
        await asyncio.wait_for(two_running.wait(), 60)  # the first batch waits for a second
        return await cohort_work(services, run, ids, guard)

    monkeypatch.setitem(batches.WORK, "cohorts", paired)
    runner = asyncio.ensure_future(dispatch.serve_batches(services, lambda: True))
    try:

        async def subscribed() -> bool:
            [(_, count)] = await services.redis.pubsub_numsub(CYCLE_OPENED_CHANNEL)
            return bool(count)

        # The announcement is the runner's only way to learn of the phases.
        await async_wait_until(subscribed, "the runner to subscribe")
        report, _ = await refresh_cycle(services)
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
    assert report.complete and report.cohorts == 604
    assert len(started) == len(tapered(range(604), 125)) == 20
