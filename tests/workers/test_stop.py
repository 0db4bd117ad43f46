"""A worker told to stop (workers/runner.py): it takes no new batch from the signal on, and
a stop that outlasts its bound logs where each of its tasks waits."""

import asyncio
import logging
import re
import signal

import pytest

from gateway.settings import Settings
from workers.runner import BESIDE_STOP_S, STOP_SLACK_S, _log_running_tasks
from workers.worker import make_worker


@pytest.fixture
async def worker():
    settings = Settings(
        redis_url="redis://127.0.0.1:1/0", worker_stop_wait_s=0, _env_file=None
    )  # never connected
    # burst: no signal handlers on the test's loop; the handler is called directly.
    worker = make_worker(settings, burst=True)
    try:
        yield worker
    finally:
        if worker._stop_watch is not None:
            worker._stop_watch.cancel()
        await worker.pool.aclose(close_connection_pool=True)


async def test_sigterm_stops_the_batch_runner_taking_batches_at_once(worker) -> None:
    taking = lambda: worker.allow_pick_jobs  # noqa: E731 (as ResilientWorker hands it over)
    assert taking() is True
    worker.handle_sig(signal.SIGTERM)
    # Before arq's cancel reaches the job loop, and whether or not it does.
    assert taking() is False
    assert worker._stop_watch is not None
    loop = asyncio.get_running_loop()
    assert worker._stop_watch.when() - loop.time() == pytest.approx(
        BESIDE_STOP_S + STOP_SLACK_S, abs=5.0
    )
    first = worker._stop_watch
    worker.handle_sig(signal.SIGTERM)  # a second signal: still one watch
    assert worker._stop_watch is first


async def inner(event: asyncio.Event) -> None:
    await event.wait()


async def outer(event: asyncio.Event) -> None:
    await inner(event)


async def test_a_stop_past_its_bound_logs_where_each_task_waits(caplog) -> None:
    event = asyncio.Event()
    stuck = asyncio.ensure_future(outer(event))
    stuck.set_name("stuck")
    for _ in range(3):
        await asyncio.sleep(0)
    with caplog.at_level(logging.ERROR, "workers.runner"):
        _log_running_tasks(85.0)
    event.set()
    await stuck
    [record] = [r for r in caplog.records if r.name == "workers.runner"]
    assert record.getMessage() == "still stopping past the stop's bound; the tasks that run"
    assert record.bound_s == 85.0  # type: ignore[attr-defined]
    where = {line.split(": ", 1)[0]: line.split(": ", 1)[1] for line in record.where}  # type: ignore[attr-defined]
    assert record.tasks == len(record.where) >= 2  # type: ignore[attr-defined]  # this test's too
    # The chain of awaits, outermost first, each with its file and line.
    assert re.sub(r" \([^)]*\)", "", where["stuck"]) == "outer -> inner -> wait"
    assert re.fullmatch(
        r"outer \(test_stop\.py:\d+\) -> inner \(test_stop\.py:\d+\) -> wait \(locks\.py:\d+\)",
        where["stuck"],
    )
