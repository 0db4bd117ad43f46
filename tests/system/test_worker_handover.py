"""Workers that hand over (real `gateway worker` processes, PostgreSQL with 2,004 cohorts:
32 cohort batches).

- SIGTERM: the worker takes no new batch, finishes those it runs (it does not exit before),
  and the cycle completes with every batch run once;
- SIGTERM with batches that cannot finish within GATEWAY_WORKER_STOP_WAIT_S: their claims
  are released as the worker exits (none left to expire), the other worker runs them;
- SIGKILL of the coordinator: once its lease has expired the other worker logs the
  abandoned cycle by name and runs its job again; `gateway refresh --all` frees the job of a
  worker that died when no worker is left to notice;
- `gateway worker --check` fails at once for a killed worker.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
import redis
from arq.connections import ArqRedis
from sqlalchemy.engine import make_url

from gateway.cache.keys import CYCLE_LEASE_KEY, CYCLE_OPEN_KEY, JOB_REFRESH_ALL, QUEUE_NAME
from gateway.refresh.dispatch import BATCHES_PER_WORKER
from tests.harness.processes import HOST, WorkerProcess, child_env, epoch
from tests.harness.waiting import CEILING_S, run_sync, wait_until
from tests.support import dataset

pytestmark = pytest.mark.postgres

CLONES = 2000
DB = 6  # of the session's Redis: this module's
DONE = "^refresh batch done$"
CYCLE_DONE = "^refresh cycle done$"


@pytest.fixture(scope="module")
def many_cohorts(postgres_url_factory) -> str:
    url = postgres_url_factory("handover")
    run_sync(lambda: dataset.load(url, dataset.replicated(CLONES)))
    return url


def env_of(database_url: str, redis_url: str, tmp_path: Path, name: str, **settings: str):
    return child_env(
        database_url,
        redis_url=redis_url,
        refresh_interval_s="3600",  # no tick during a test: cycles are asked for
        upstream_query_timeout_s="60",  # statements may wait on a lock held on purpose
        worker_heartbeat_file=str(tmp_path / f"{name}.heartbeat"),
        **settings,
    )


@pytest.fixture
def start_workers(
    many_cohorts: str, redis_server, tmp_path: Path
) -> Iterator[Callable[..., tuple[list[WorkerProcess], str]]]:
    """`start(n, **settings)`: n workers, ready once their cold-start cycle is done."""
    redis_server.start()
    url = f"redis://{HOST}:{redis_server.port}/{DB}"
    with redis.Redis(host=HOST, port=redis_server.port, db=DB) as client:
        client.flushdb()
    started: list[WorkerProcess] = []

    def start(count: int = 2, **settings: str) -> tuple[list[WorkerProcess], str]:
        names = [f"worker-{chr(ord('a') + i)}" for i in range(count)]
        workers = [
            WorkerProcess(n, env_of(many_cohorts, url, tmp_path, n, **settings), tmp_path)
            for n in names
        ]
        started.extend(workers)
        for worker in workers:
            worker.spawn()
        for worker in workers:
            worker.wait_ready()
        wait_until(lambda: cycles_done(workers), "the cold-start cycle", poll_s=0.2)
        with redis.Redis(host=HOST, port=redis_server.port, db=DB) as client:
            wait_until(lambda: not client.exists(CYCLE_LEASE_KEY), "the cycle to end")
        return workers, url

    try:
        yield start
    finally:
        for worker in started:
            worker.stop(signal.SIGKILL)


def cycles_done(workers: list[WorkerProcess]) -> list[dict[str, Any]]:
    return sorted((r for w in workers for r in w.messages(CYCLE_DONE)), key=epoch)


def enqueue(url: str, job_id: str) -> None:
    async def put() -> None:
        client = ArqRedis.from_url(url)
        try:
            assert await client.enqueue_job(JOB_REFRESH_ALL, _job_id=job_id, _queue_name=QUEUE_NAME)
        finally:
            await client.aclose()

    run_sync(put)


def coordinator_of(workers: list[WorkerProcess], job_id: str) -> WorkerProcess:
    return wait_until(
        lambda: next((w for w in workers if w.job_starts(f"{job_id}:{JOB_REFRESH_ALL}")), None),
        "the cycle to start",
    )


def claims_of(client: redis.Redis, worker: WorkerProcess) -> list[str]:
    """The batches `worker` holds claims on (`phase:index`)."""
    found = []
    for key in client.scan_iter("ddg:queue:cycle:*:claim:*"):
        owner = client.get(key)
        if owner is not None and owner.decode().startswith(f"{worker.pid}:"):
            found.append(":".join(key.decode().rsplit(":", 2)[-2:]))
    return sorted(found)


def batches_done(workers: list[WorkerProcess], cycle: str) -> list[dict[str, Any]]:
    return [r | {"by": w.name} for w in workers for r in w.messages(DONE) if r["cycle"] == cycle]


@contextmanager
def sessions_locked(database_url: str) -> Iterator[None]:
    """Every cohort batch waits on mentorship_sessions until the block ends (one event loop
    of its own in a thread: the connection belongs to it)."""
    dsn = make_url(database_url).set(drivername="postgresql").render_as_string(False)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def run(coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(CEILING_S)

    async def lock() -> Any:
        connection = await asyncpg.connect(dsn)
        await connection.execute("BEGIN")
        await connection.execute("LOCK TABLE mentorship_sessions IN ACCESS EXCLUSIVE MODE")
        return connection

    connection = run(lock())
    try:
        yield
    finally:
        run(connection.close())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(CEILING_S)
        loop.close()


def test_a_stopped_worker_finishes_its_batches(
    start_workers: Callable[..., tuple[list[WorkerProcess], str]], redis_server
) -> None:
    workers, url = start_workers()
    [before] = cycles_done(workers)
    client = redis.Redis(host=HOST, port=redis_server.port, db=DB)
    enqueue(url, "stop-cycle")
    coordinator = coordinator_of(workers, "stop-cycle")
    victim = next(w for w in workers if w is not coordinator)
    held = wait_until(lambda: claims_of(client, victim), "the victim to claim batches")
    stopped = time.time()
    victim.send_signal(signal.SIGTERM)
    assert victim.wait() == 0, victim.tail()
    wait_until(lambda: len(cycles_done(workers)) == 2, "the cycle", poll_s=0.2)
    client.close()
    done = cycles_done(workers)[1]
    assert (done["cohorts"], done["lost_batches"], done["incomplete_cohorts"]) == (2004, 0, 0)
    ran = batches_done(workers, done["cycle"])
    assert Counter((r["phase"], r["batch"]) for r in ran if r["phase"] == "cohorts") == {
        ("cohorts", i): 1 for i in range(32)
    }
    assert all(r["attempt"] == 1 for r in ran)  # none taken over: none given up
    by_victim = {f"{r['phase']}:{r['batch']}" for r in ran if r["by"] == victim.name}
    assert set(held) <= by_victim  # what it held when told to stop, it finished
    assert not [r for r in ran if r["by"] == victim.name and epoch(r) > stopped + 60]
    print(
        f"\ncycle {before['duration_s']:.2f} s with two workers; {done['duration_s']:.2f} s "
        f"with {victim.name} stopped (SIGTERM) holding {held}"
    )


def test_batches_a_stopped_worker_gives_up_are_released(
    start_workers: Callable[..., tuple[list[WorkerProcess], str]], redis_server, many_cohorts: str
) -> None:
    workers, url = start_workers(worker_stop_wait_s="0")
    client = redis.Redis(host=HOST, port=redis_server.port, db=DB)
    with sessions_locked(many_cohorts):
        enqueue(url, "give-up-cycle")
        coordinator = coordinator_of(workers, "give-up-cycle")
        victim = next(w for w in workers if w is not coordinator)
        # Every batch waits on the lock: the victim claims as many as it runs at once.
        held = wait_until(
            lambda: len(c := claims_of(client, victim)) == BATCHES_PER_WORKER and c,
            "the victim to claim its batches",
        )
        victim.send_signal(signal.SIGTERM)
        assert victim.wait() == 0, victim.tail()
        # Released as it stopped: none of its claims is left to expire.
        assert claims_of(client, victim) == []
        released = sorted(
            f"{r['phase']}:{r['batch']}" for r in victim.messages("^refresh batch released$")
        )
        assert released == held
    wait_until(lambda: len(cycles_done(workers)) == 2, "the cycle", poll_s=0.2)
    client.close()
    done = cycles_done(workers)[1]
    assert (done["cohorts"], done["lost_batches"]) == (2004, 0)
    ran = batches_done(workers, done["cycle"])
    assert {f"{r['phase']}:{r['batch']}" for r in ran if r["attempt"] == 2} == set(held)
    assert all(r["by"] == coordinator.name for r in ran)
    print(f"\n{victim.name} released {held} as it stopped; cycle {done['duration_s']:.2f} s")


def test_a_dead_coordinator_is_noticed_and_its_cycle_asked_for_again(
    start_workers: Callable[..., tuple[list[WorkerProcess], str]], redis_server, many_cohorts: str
) -> None:
    workers, url = start_workers()
    client = redis.Redis(host=HOST, port=redis_server.port, db=DB)
    with sessions_locked(many_cohorts):
        enqueue(url, JOB_REFRESH_ALL)  # as `gateway refresh --all` does
        coordinator = coordinator_of(workers, JOB_REFRESH_ALL)
        survivor = next(w for w in workers if w is not coordinator)
        opened = wait_until(lambda: client.get(CYCLE_OPEN_KEY), "a phase to open")
        cycle = orjson.loads(opened)["cycle"]
        coordinator.send_signal(signal.SIGKILL)
        assert coordinator.wait() == -signal.SIGKILL
        killed = time.time()
    noticed = survivor.wait_for_message("^refresh cycle abandoned", 120)
    assert (noticed["cycle"], noticed["job"], noticed["requeued"]) == (cycle, JOB_REFRESH_ALL, True)
    # The job it ran is run again by the survivor, at once rather than when arq's
    # in-progress mark would have expired (the job timeout, 600 s).
    wait_until(lambda: survivor.job_starts(f"{JOB_REFRESH_ALL}:{JOB_REFRESH_ALL}"), "its rerun")
    again = wait_until(
        lambda: [r for r in survivor.messages(CYCLE_DONE) if epoch(r) > killed], "a new cycle"
    )
    assert (again[0]["cohorts"], again[0]["lost_batches"]) == (2004, 0)
    wait_until(lambda: survivor.job_ends(f"{JOB_REFRESH_ALL}:{JOB_REFRESH_ALL}"), "its end")
    client.close()
    refreshed = refresh_all(url, survivor.cwd)
    assert (refreshed.returncode, refreshed.stdout) == (0, "enqueued refresh_all\n")
    print(
        f"\ncoordinator killed; abandoned cycle noticed {epoch(noticed) - killed:.1f} s later, "
        f"a new cycle done {epoch(again[0]) - killed:.1f} s later"
    )


def test_refresh_all_frees_the_job_of_a_worker_that_died(
    start_workers: Callable[..., tuple[list[WorkerProcess], str]], redis_server, many_cohorts: str
) -> None:
    [only], url = start_workers(1)
    client = redis.Redis(host=HOST, port=redis_server.port, db=DB)
    with sessions_locked(many_cohorts):
        enqueue(url, JOB_REFRESH_ALL)
        coordinator_of([only], JOB_REFRESH_ALL)
        wait_until(lambda: client.get(CYCLE_OPEN_KEY), "a phase to open")
        only.send_signal(signal.SIGKILL)
        assert only.wait() == -signal.SIGKILL
    assert refresh_all(url, only.cwd).stdout == "refresh_all is already queued\n"  # leased
    wait_until(lambda: not client.exists(CYCLE_LEASE_KEY), "the lease to expire")
    client.close()
    freed = refresh_all(url, only.cwd)
    assert (freed.returncode, freed.stdout) == (
        0,
        "refresh_all was abandoned (its worker died): queued again\n",
    )
    [fresh], _ = start_workers(1)
    wait_until(lambda: fresh.job_ends(f"{JOB_REFRESH_ALL}:{JOB_REFRESH_ALL}"), "the job rerun")
    assert [r["cohorts"] for r in fresh.messages(CYCLE_DONE)][-1] == 2004


def test_check_fails_at_once_for_a_killed_worker(
    start_workers: Callable[..., tuple[list[WorkerProcess], str]],
) -> None:
    [one], _ = start_workers(1)
    assert check(one).returncode == 0
    one.send_signal(signal.SIGKILL)
    assert one.wait() == -signal.SIGKILL
    probe = check(one)
    assert probe.returncode == 1
    assert probe.stderr.startswith(f"the worker is gone (process {one.pid} ended): "), probe


def check(worker: WorkerProcess) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "worker", "--check"],
        env=worker.env,
        cwd=worker.cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def refresh_all(url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", "refresh", "--all"],
        env=child_env(redis_url=url),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
