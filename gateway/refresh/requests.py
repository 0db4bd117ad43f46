"""Refresh requests: asked for by stale reads, webhooks and the requestRefresh mutation,
run in the background, never awaited by the asker.

- QueueRefresher (with Redis): arq jobs with a job id per target, so a target is never
  queued twice; workers run them.
- LocalRefresher (embedded mode): tasks of this process, one per target at a time.
- RateLimitedRefresh: the mutation's per-caller budget in front of either.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from arq.connections import ArqRedis
from redis.exceptions import RedisError

from gateway import metrics
from gateway.cache.keys import (
    JOB_REFRESH_ALL,
    JOB_REFRESH_COHORT,
    JOB_REFRESH_DIRECTOR,
    QUEUE_NAME,
    Keys,
    cohort_job_id,
    director_job_id,
)
from gateway.cache.kv import KV, CacheUnavailable
from gateway.cache.subtrees import Refresher
from gateway.refresh import pending
from gateway.refresh.service import RefreshService
from resolvers.caller import DIRECTOR, Caller

log = logging.getLogger("gateway.refresh.requests")

# A director's job queued ahead of the others (gateway/refresh/pending.py) is dropped if it
# has not started within this.
PRIORITY_EXPIRES = timedelta(hours=1)


class QueueUnavailable(Exception):
    """The job queue (Redis) cannot be reached."""


class QueueRefresher:
    def __init__(
        self, redis: ArqRedis, trace_context: Callable[[], dict[str, str]] | None = None
    ) -> None:
        self.redis = redis
        # With tracing on: the current trace context (W3C headers), passed to the job.
        self.trace_context = trace_context

    async def _enqueue(self, function: str, *args: object, job_id: str) -> bool:
        carrier = self.trace_context() if self.trace_context is not None else None
        extra: dict[str, Any] = {"trace": carrier} if carrier else {}
        try:
            job = await self.redis.enqueue_job(
                function, *args, _job_id=job_id, _queue_name=QUEUE_NAME, **extra
            )
        except (RedisError, OSError) as exc:
            raise QueueUnavailable(str(exc)) from exc
        return job is not None  # None: that target is already queued or running

    async def refresh_cohorts(self, cohort_ids: Sequence[int]) -> None:
        for cohort_id in cohort_ids:
            await self._enqueue(JOB_REFRESH_COHORT, cohort_id, job_id=cohort_job_id(cohort_id))

    async def refresh_director(self, caller: Caller) -> None:
        await self._enqueue(
            JOB_REFRESH_DIRECTOR, caller.user_id, caller.role, job_id=director_job_id(caller)
        )

    async def refresh_all(self) -> bool:
        return await self._enqueue(JOB_REFRESH_ALL, job_id=JOB_REFRESH_ALL)

    async def refresh_event(
        self, event_id: str, module: str, cohort_ids: Sequence[int], director_ids: Sequence[int]
    ) -> None:
        """Directors first, ahead of every queued job; the cohorts as one job for the event,
        drained from pending sets (gateway/refresh/pending.py)."""
        carrier = self.trace_context() if self.trace_context is not None else None
        extra: dict[str, Any] = {"trace": carrier} if carrier else {}
        try:
            for director_id in director_ids:
                caller = Caller(director_id, DIRECTOR)
                await self.redis.enqueue_job(
                    JOB_REFRESH_DIRECTOR,
                    caller.user_id,
                    caller.role,
                    _job_id=director_job_id(caller),
                    _queue_name=QUEUE_NAME,
                    _defer_until=pending.FIRST,
                    _expires=PRIORITY_EXPIRES,
                    **extra,
                )
            await pending.queue_event(self.redis, event_id, module, cohort_ids, carrier)
        except (RedisError, OSError) as exc:
            raise QueueUnavailable(str(exc)) from exc


class LocalRefresher:
    """Embedded mode: refreshes run as tasks of this process, one per target at a time,
    at most `concurrency` at once, at most `max_pending` waiting. A stale read asks again
    the next time it finds its entry stale, so a request turned away is not lost work."""

    def __init__(self, service: RefreshService, *, concurrency: int, max_pending: int) -> None:
        self.service = service
        self.max_pending = max_pending
        self._slots = asyncio.Semaphore(concurrency)
        self._pending: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._running_tasks: set[asyncio.Task[Any]] = set()
        self._closed = False
        self.running = 0
        self.peak = 0  # most refreshes ever running at once

    def _start(self, name: str, run_at: Callable[[datetime], Awaitable[object]]) -> bool:
        if self._closed:
            return False
        if name in self._pending:
            metrics.REFRESH_REQUESTS.labels("duplicate").inc()
            return False
        if len(self._pending) >= self.max_pending:
            metrics.REFRESH_REQUESTS.labels("dropped").inc()
            return False
        metrics.REFRESH_REQUESTS.labels("started").inc()
        self._pending.add(name)

        async def run() -> None:
            try:
                async with self._slots:
                    task = asyncio.current_task()
                    assert task is not None
                    self._running_tasks.add(task)
                    self.running += 1
                    if self.running > self.peak:
                        self.peak = self.running
                        metrics.REFRESHES_RUNNING_PEAK.set(self.peak)
                    metrics.REFRESHES_RUNNING.inc()
                    try:
                        await run_at(self.service.clock())  # as of when it runs
                    finally:
                        self._running_tasks.discard(task)
                        self.running -= 1
                        metrics.REFRESHES_RUNNING.dec()
            except Exception:
                log.exception("refresh %s failed", name)
            finally:
                self._pending.discard(name)

        task = asyncio.ensure_future(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def refresh_cohorts(self, cohort_ids: Sequence[int]) -> None:
        for cohort_id in cohort_ids:
            self._start(cohort_job_id(cohort_id), partial(self._cohort, cohort_id))

    async def _cohort(self, cohort_id: int, now: datetime) -> None:
        done = await self.service.refresh_cohort(cohort_id, now)
        for caller in done.later:
            await self.refresh_director(caller)

    async def refresh_director(self, caller: Caller) -> None:
        self._start(director_job_id(caller), partial(self.service.refresh_director, caller))

    async def refresh_event(
        self, event_id: str, module: str, cohort_ids: Sequence[int], director_ids: Sequence[int]
    ) -> None:
        """Directors first: their tasks are started (and take the free slots) before the
        cohorts', at most GATEWAY_REFRESH_QUEUE_MAX of which wait."""
        for director_id in director_ids:
            await self.refresh_director(Caller(director_id, DIRECTOR))
        await self.refresh_cohorts(cohort_ids)

    async def wait(self) -> None:
        """Until every started refresh is done."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        """Shutdown: no new refresh starts, those waiting are cancelled (the next start's
        cycle covers them), those running finish (at most `concurrency`, each bounded by
        the statement timeout): none outlives the engines and stores it writes with."""
        self._closed = True
        for task in self._tasks - self._running_tasks:
            task.cancel()
        await self.wait()


class RateLimitedRefresh:
    """requestRefresh: a fixed one-minute window per caller, counted in the shared store."""

    def __init__(
        self,
        kv: KV,
        keys: Keys,
        refresher: Refresher,
        per_minute: int,
        clock: Callable[[], datetime],
    ) -> None:
        self.kv = kv
        self.keys = keys
        self.refresher = refresher
        self.per_minute = per_minute
        self.clock = clock

    async def allow(self, user_id: int) -> bool:
        window = int(self.clock().timestamp() // 60)
        try:
            count = await self.kv.incr(self.keys.rate(user_id, window), 60)
        except CacheUnavailable:
            return True  # fail open: a refresh is harmless, refusing one would be an outage
        return count <= self.per_minute

    async def cohort(self, cohort_id: int) -> None:
        await self.refresher.refresh_cohorts([cohort_id])

    async def director(self, caller: Caller) -> None:
        await self.refresher.refresh_director(caller)
