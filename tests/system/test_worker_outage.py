"""Workers stay up: two real `gateway worker` processes and a real redis-server that is
stopped in the middle of a refresh cycle, for 5 s and for 60 s.

Both workers log one line when Redis goes away and one when it is back, never exit, and
resume: the restarted Redis is empty (no completed cycle recorded), so a cycle runs at
once, and it writes every target exactly once (every SET seen through MONITOR). The
cycle that Redis interrupted stops at its next write (its lease is gone) and never
completes. Also: a cold start asks for one cycle between both workers, a worker started
while Redis is down waits for it, `gateway worker --check` follows the heartbeat, and
`--metrics-port` serves the worker's metrics.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from arq.connections import ArqRedis
from prometheus_client.parser import text_string_to_metric_families

from gateway.cache.keys import COLD_START_JOB_ID, JOB_REFRESH_ALL, QUEUE_NAME, Keys, cache_version
from resolvers.caller import Caller
from resolvers.schema import build_schema
from tests.harness.processes import HOST, ROOT, WorkerProcess, child_env, epoch, free_port, running
from tests.harness.redis_link import RedisMonitor
from tests.harness.servers import RedisServer
from tests.harness.waiting import run_sync, wait_until
from tests.support import dataset
from tests.support.dataset import ADMIN, DANA, DREW, NORA

CLONES = 2000
COHORTS = [101, 102, 103, 104] + [1000 + n for n in range(1, CLONES + 1)]
SUMMARIES = {DANA: "director", DREW: "director", NORA: "director", ADMIN: "admin"}
# Ticks on the hour: a test lasting a minute or two rarely meets one; cycles here are
# asked for.
INTERVAL_S = "3600"
WENT_AWAY, IS_BACK = "^redis went away", "^redis is back$"
CYCLE_DONE = "^refresh cycle done$"
BATCH_DONE = "^refresh batch done$"


@functools.cache
def keys() -> Keys:
    return Keys(cache_version(build_schema().as_str()))


@pytest.fixture(scope="module")
def many_cohorts_url(tmp_path_factory) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('outage') / 'upstream.sqlite3'}"
    run_sync(lambda: dataset.load(url, dataset.replicated(CLONES)))
    return url


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    """A Redis of this test alone: it is stopped and started again."""
    with RedisServer() as server:
        yield server


def worker(name: str, url: str, redis: RedisServer, log_dir: Path, *args: str) -> WorkerProcess:
    env = child_env(
        url,
        redis_url=redis.url,
        refresh_interval_s=INTERVAL_S,
        worker_heartbeat_file=str(log_dir / f"{name}.heartbeat"),
    )
    process = WorkerProcess(name, env, log_dir)
    process.argv += list(args)
    return process


def check(process: WorkerProcess) -> subprocess.CompletedProcess[str]:
    """`gateway worker --check` with that worker's settings."""
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "worker", "--check"],
        env=process.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def enqueue(redis: RedisServer, job_id: str) -> None:
    async def put() -> None:
        client = ArqRedis.from_url(redis.url)
        try:
            job = await client.enqueue_job(JOB_REFRESH_ALL, _job_id=job_id, _queue_name=QUEUE_NAME)
            assert job is not None, job_id
        finally:
            await client.aclose()

    run_sync(put)


def away_since(w: WorkerProcess, since: float) -> list[dict[str, Any]]:
    return [r for r in w.messages(WENT_AWAY) if epoch(r) >= since]


def back_since(w: WorkerProcess, since: float) -> list[dict[str, Any]]:
    return [r for r in w.messages(IS_BACK) if epoch(r) >= since]


def done_after(workers: list[WorkerProcess], since: float) -> list[tuple[str, dict[str, Any]]]:
    return [(w.name, r) for w in workers for r in w.messages(CYCLE_DONE) if epoch(r) >= since]


def metric_values(port: int) -> dict[str, float]:
    text = httpx.get(f"http://{HOST}:{port}/metrics", timeout=10.0).text
    return parse_metrics(text)


def metrics_when(port: int, wanted: dict[str, float], what: str) -> dict[str, float]:
    """The worker's metrics once they show `wanted`: each is the end of something the
    worker does on its own time (a reconnect after its backoff, a first attempt), waited
    for as an event. The port may not be listening yet."""

    def scraped() -> dict[str, float] | None:
        try:
            values = metric_values(port)
        except httpx.TransportError:
            return None
        return values if all(values.get(k) == v for k, v in wanted.items()) else None

    return wait_until(scraped, what)


def parse_metrics(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            label = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{label}}}" if label else sample.name] = sample.value
    return out


@pytest.mark.parametrize(
    "outage_s", [5, pytest.param(60, marks=pytest.mark.slow, id="60")], ids=["5", "60"]
)
def test_two_workers_ride_out_a_redis_outage_during_a_cycle(
    outage_s: int, many_cohorts_url: str, redis: RedisServer, tmp_path: Path
) -> None:
    port = free_port()
    workers = [
        worker("worker-1", many_cohorts_url, redis, tmp_path, "--metrics-port", str(port)),
        worker("worker-2", many_cohorts_url, redis, tmp_path),
    ]
    with running(*workers):
        # A cold cache: one cycle at once, between the two of them.
        cold = f"{COLD_START_JOB_ID}:{JOB_REFRESH_ALL}"
        wait_until(lambda: [r for w in workers for r in w.job_ends(cold)], "the cold-start cycle")
        assert len([r for w in workers for r in w.job_starts(cold)]) == 1, workers

        # Another cycle; Redis stops once it is under way.
        enqueue(redis, "outage-cycle")
        ref = f"outage-cycle:{JOB_REFRESH_ALL}"

        def started() -> float | None:
            hits = [epoch(r) for w in workers for r in w.job_starts(ref)]
            return hits[0] if hits else None

        began = wait_until(started, "the cycle to start")
        # Under way: its first batch is written (and thousands of cohorts are left).
        wait_until(
            lambda: [r for w in workers for r in w.messages(BATCH_DONE) if epoch(r) >= began],
            "the cycle's first batch",
        )
        assert not [r for w in workers for r in w.job_ends(ref)], "it ended before the outage"
        stopped = time.time()
        redis.stop()
        # Liveness holds while Redis is away, and the heartbeat of a worker that saw the
        # outage says so: it is rewritten every few seconds, so that is waited for.
        wait_until(
            lambda: any('"redis":"down"' in check(w).stdout for w in workers),
            "a heartbeat saying Redis is down",
        )
        time.sleep(max(0.0, stopped + outage_s - time.time()))  # the outage's length
        assert all(w.alive for w in workers), [w.tail() for w in workers]
        probe = check(workers[0])
        assert probe.returncode == 0, probe.stderr
        redis.start()
        restarted = time.time()

        # The next cycle: asked for at once (the restarted Redis is empty), each target
        # written once.
        with RedisMonitor(redis.port, 0) as monitor:
            wait_until(
                lambda: done_after(workers, restarted), "a cycle after the outage", poll_s=0.2
            )
            time.sleep(1.0)  # a second writer of any target would show by now
        writes = Counter(c.key for c in list(monitor.commands) if c.name == "SET")
        # A worker that saw the outage may still be in its reconnect backoff (up to
        # BACKOFF_CAP_S) after the cycle completed on the other one: its return is an event.
        wait_until(
            lambda: all(
                len(back_since(w, stopped)) == len(away_since(w, stopped)) for w in workers
            ),
            "every worker that saw the outage to be back",
        )
        values = metrics_when(port, {"gateway_worker_redis_up": 1}, "worker-1's gauge at 1")
        assert values["gateway_worker_redis_outages_total"] == len(workers[0].messages(WENT_AWAY))

    # One line when Redis goes away, one when it is back. A worker busy computing through
    # a short outage may not see it at all (no Redis call in between); one that is idle
    # polls every 0.5 s and does, and a minute-long outage is seen by both.
    noticed = 0
    for w in workers:
        assert w.process is not None and w.process.returncode in (0, -signal.SIGTERM), w.tail()
        away, back = away_since(w, stopped), back_since(w, stopped)
        assert len(away) == len(back) <= 1, (w.name, w.tail())
        noticed += len(away)
        for gone, returned in zip(away, back, strict=True):
            assert gone["level"] == "warning" and returned["level"] == "info"
            assert 0 < returned["down_s"] <= outage_s + 15, returned
        # Nothing printed outside the JSON log lines (no traceback, no exit).
        assert all(line.startswith("{") for line in w.log().splitlines()), w.tail()
    assert noticed >= 1
    if outage_s >= 60:
        assert noticed == len(workers)
    runs = done_after(workers, restarted)
    assert len(runs) == 1, runs
    assert (runs[0][1]["cohorts"], runs[0][1]["directors"]) == (len(COHORTS), 3)
    # The interrupted cycle never completed, and wrote nothing after Redis came back.
    assert not [r for w in workers for r in w.job_ends(ref)]
    k = keys()
    assert {i: writes[k.cohort(i)] for i in COHORTS} == dict.fromkeys(COHORTS, 1)
    summary_writes = {u: writes[k.summary(Caller(u, role))] for u, role in SUMMARIES.items()}
    assert summary_writes == dict.fromkeys(SUMMARIES, 1)
    assert writes[k.refresh_stamp()] == 1

    print(
        f"\noutage {outage_s} s; cycle after it: {runs[0][1]['duration_s']:.2f} s on "
        f"{runs[0][0]}; cohort SETs {sum(writes[k.cohort(i)] for i in COHORTS)}"
    )


def test_worker_waits_for_redis_at_start_check_and_metrics(
    many_cohorts_url: str, tmp_path: Path
) -> None:
    redis = RedisServer()  # not started: the worker comes up first
    port = free_port()
    first = worker("worker-early", many_cohorts_url, redis, tmp_path, "--metrics-port", str(port))
    try:
        assert check(first).returncode == 1  # no heartbeat yet
        first.spawn()
        wait_until(lambda: check(first).returncode == 0, "a heartbeat without Redis")
        assert '"redis":"down"' in check(first).stdout
        # Its first attempt failed: the gauge and the count say so once it has.
        metrics_when(
            port,
            {"gateway_worker_redis_up": 0, "gateway_worker_redis_outages_total": 1},
            "the first failed attempt in the worker's metrics",
        )
        first.wait_for_message(WENT_AWAY, 30)
        redis.start()
        first.wait_for_message(IS_BACK, 60)
        first.wait_for_message("^redis_version=", 30)
        # The cache is cold: a cycle at once, not at the next tick.
        cold = f"{COLD_START_JOB_ID}:{JOB_REFRESH_ALL}"
        wait_until(lambda: first.job_ends(cold), "the cold-start cycle")
        wait_until(lambda: '"redis":"up"' in check(first).stdout, "a heartbeat with Redis")
        values = metrics_when(port, {"gateway_worker_redis_up": 1}, "the gauge at 1")
        assert values["gateway_worker_redis_outages_total"] == 1
        # 2,004 cohorts in batches of 125 then shrinking ones (32); 4 people (3 directors,
        # the admin) in one batch, fewer than the last batches' floor.
        assert values["gateway_refresh_batches_total{outcome=done,phase=cohorts}"] == 32
        assert values["gateway_refresh_batches_total{outcome=done,phase=directors}"] == 1
        assert values["gateway_refresh_batches_total{outcome=done,phase=dashboards}"] == 1
        assert "gateway_refresh_batches_total{outcome=failed,phase=cohorts}" not in values
        for phase in ("cohorts", "directors", "dashboards", "answers"):
            assert values[f"gateway_refresh_phase_seconds_count{{phase={phase}}}"] == 1
        assert values["gateway_upstream_statements_total{module=programs,outcome=ok}"] > 0
        assert first.messages("^no completed refresh cycle recorded")[0]["queued"] is True
        assert len(first.messages(WENT_AWAY)) == len(first.messages(IS_BACK)) == 1
        assert first.stop() in (0, -signal.SIGTERM)
        # A stopped worker fails its probe at once (its heartbeat file is removed).
        probe = check(first)
        assert probe.returncode == 1 and "no heartbeat" in probe.stderr, probe
    finally:
        first.stop()
        redis.stop()


def test_check_fails_when_the_heartbeat_is_stale(
    many_cohorts_url: str, redis: RedisServer, tmp_path: Path
) -> None:
    one = worker("worker-stale", many_cohorts_url, redis, tmp_path)
    one.env["GATEWAY_WORKER_HEARTBEAT_MAX_AGE_S"] = "3"
    with running(one):
        wait_until(lambda: check(one).returncode == 0, "a fresh heartbeat")
        os.kill(one.pid, signal.SIGSTOP)  # a wedged process: alive, but no longer beating
        try:
            probe = wait_until(lambda: (p := check(one)).returncode == 1 and p, "the probe to fail")
            assert "stale heartbeat" in probe.stderr, probe.stderr
        finally:
            os.kill(one.pid, signal.SIGCONT)
        wait_until(lambda: check(one).returncode == 0, "the heartbeat again")
