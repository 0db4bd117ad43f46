"""One execution per missing stored answer at a time, in this process.

When a stored answer is missing (or Redis cannot be read, which counts as a miss), every
request for it would execute the same operation: the same caller, document, operation and
variables, so the same answer. At bench scale an admin's cohort list costs 150 ms of CPU;
64 connections executing it at once starve the process. So the first request for a key
executes it (the leader) and every other request for that key arriving meanwhile awaits
the leader's outcome (an asyncio future keyed by the answer key) and is answered from it,
each under its own request id and headers (the endpoint writes each response).

- Bounded: one entry per key being executed; its waiters are requests, bounded by the
  connection limits. The entry is removed on every exit of the leader, errors and
  cancellation included, so a failure never wedges the key: the next request executes.
- The outcome is shared as it is: a result (with the GraphQL errors it carries, each
  formatted under the waiter's own request id) or the refusal the leader raised (the
  same error again, never a success). Only a leader cancelled before it finished (its
  client went away) leaves its waiters to execute for themselves, one of them leading.
"""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from gateway import metrics

T = TypeVar("T")

_EXECUTED = metrics.ANSWER_MISSES.labels("executed")
_SHARED = metrics.ANSWER_MISSES.labels("shared")


class _LeaderGone(Exception):
    """The leader was cancelled: its waiters execute for themselves."""


class Flights(Generic[T]):
    def __init__(self) -> None:
        self._running: dict[str, asyncio.Future[T]] = {}
        self.waiting = 0  # requests awaiting another's execution, all keys together

    def __len__(self) -> int:
        return len(self._running)

    async def run(self, key: str, execute: Callable[[], Awaitable[T]]) -> T:
        while (running := self._running.get(key)) is not None:
            self.waiting += 1
            try:
                # Shielded: a waiter cancelled must not cancel what the others await.
                result = await asyncio.shield(running)
            except _LeaderGone:
                continue
            finally:
                self.waiting -= 1
            _SHARED.inc()
            return result
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._running[key] = future
        _EXECUTED.inc()
        try:
            result = await execute()
        except asyncio.CancelledError:
            future.set_exception(_LeaderGone())
            raise
        except BaseException as exc:
            future.set_exception(exc)
            raise
        else:
            future.set_result(result)
        finally:
            del self._running[key]
            if future.done():
                future.exception()  # read: no "exception was never retrieved" if none waited
        return result
