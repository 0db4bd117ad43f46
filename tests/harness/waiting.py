"""Waiting on an event, from sync code (a fixture, a test outside the event loop) or from
a test's event loop; running a coroutine from sync code."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from tests.harness.processes import ChildProcess

# The longest any wait here lasts before the event is declared missing. Far above what
# the events take on a loaded 2-core machine: a wait ends as soon as its event happens,
# so only a failure ever costs this much.
CEILING_S = 180.0
POLL_S = 0.05
T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T | None],
    what: str,
    *,
    timeout_s: float = CEILING_S,
    poll_s: float = POLL_S,
    process: ChildProcess | None = None,
) -> T:
    """The first truthy value of `predicate()`; AssertionError after `timeout_s`, or as
    soon as `process` (when given) has exited, with the tail of its log."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if process is not None and not process.alive:
            raise AssertionError(f"{process.name} exited waiting for {what}:\n{process.tail()}")
        if time.monotonic() > deadline:
            tail = f"\n{process.tail()}" if process is not None else ""
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}{tail}")
        time.sleep(poll_s)


async def async_wait_until(
    predicate: Callable[[], Awaitable[T | None]],
    what: str,
    *,
    timeout_s: float = CEILING_S,
    poll_s: float = POLL_S,
) -> T:
    """`wait_until` for an async predicate, from a test's event loop."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        await asyncio.sleep(poll_s)


def run_sync(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from sync code, even when an event loop is running
    in this thread (a sync fixture of an async test): in a thread of its own."""
    out: list[T] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            out.append(asyncio.run(factory()))
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=target, name="tests.harness.run_sync")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return out[0]
