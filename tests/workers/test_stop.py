"""A worker told to stop (workers/runner.py): it takes no new batch from the signal on, its
job loop ends even if arq's cancel of it is lost, and a stop that outlasts its bound logs
where each of its tasks waits."""

import asyncio
import logging
import re
import signal

import pytest
from arq.worker import func

from gateway.services import make_redis
from gateway.settings import Settings
from tests.harness.waiting import CEILING_S
from workers.runner import BESIDE_STOP_S, STOP_SLACK_S, ResilientWorker, _log_running_tasks
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


async def test_the_job_loop_ends_on_sigterm_even_if_arqs_cancel_of_it_is_lost(redis_url) -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def runner(ctx: dict, taking) -> None:  # a batch runner: runs until cancelled
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def job(ctx: dict) -> None:
        return None

    worker = ResilientWorker(
        functions=[func(job, name="job")],
        redis_pool=make_redis(redis_url),
        queue_name="stop-test",
        handle_signals=False,
        poll_delay=0.05,
        beside=[runner],
    )
    # No main_task: arq's handle_sig cancels nothing, as when that cancel is lost.
    main = asyncio.ensure_future(worker.main())
    try:
        async with asyncio.timeout(CEILING_S):
            await started.wait()  # connected, its runner beside it
        worker.handle_sig(signal.SIGTERM)
        async with asyncio.timeout(CEILING_S):
            assert await main is None  # the job loop ended by itself
        assert cancelled.is_set()  # and the tasks beside it were cancelled
    finally:
        main.cancel()
        await worker.close()
    assert worker._stop_watch is not None and worker._stop_watch.cancelled()
