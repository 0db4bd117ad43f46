"""A batch runner told to stop (cancelled) stops, whatever else happens at that moment
(gateway/refresh/dispatch.py `until_set`, the runner's wait between looks)."""

import asyncio

import pytest

from gateway.refresh.dispatch import until_set


async def started(waiting: "asyncio.Task[None]") -> None:
    for _ in range(5):  # the task, and anything it starts, reach their first wait
        await asyncio.sleep(0)
    assert not waiting.done()


async def test_a_cancel_that_arrives_as_the_event_is_set_is_not_lost() -> None:
    # A batch ends (the event is set) in the same turn as the worker's SIGTERM cancels
    # the runner: asyncio.wait_for on Python 3.11 returned normally here, and the runner
    # went on taking batches in a worker that never exited.
    freed = asyncio.Event()
    waiting = asyncio.ensure_future(until_set(freed, 3600))
    await started(waiting)
    freed.set()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting


async def test_it_returns_when_the_event_is_set_or_the_time_has_passed() -> None:
    freed = asyncio.Event()
    waiting = asyncio.ensure_future(until_set(freed, 3600))
    await started(waiting)
    freed.set()
    assert await waiting is None
    assert await until_set(asyncio.Event(), 0.01) is None  # timed out: no error
