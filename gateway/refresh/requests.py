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
from datetime import datetime
from functools import partial

from arq.connections import ArqRedis
from redis.exceptions import RedisError

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
from gateway.refresh.service import RefreshService
from resolvers.caller import Caller

log = logging.getLogger("gateway.refresh.requests")


class QueueUnavailable(Exception):
    """The job queue (Redis) cannot be reached."""


class QueueRefresher:
    def __init__(self, redis: ArqRedis) -> None:
        self.redis = redis

    async def _enqueue(self, function: str, *args: object, job_id: str) -> bool:
        try:
            job = await self.redis.enqueue_job(
                function, *args, _job_id=job_id, _queue_name=QUEUE_NAME
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


class LocalRefresher:
    """Embedded mode: refreshes run as tasks of this process, one per target at a time."""

    def __init__(self, service: RefreshService) -> None:
        self.service = service
        self._running: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def _start(self, name: str, run_at: Callable[[datetime], Awaitable[object]]) -> bool:
        if name in self._running:
            return False
        self._running.add(name)

        async def run() -> None:
            try:
                await run_at(self.service.clock())
            except Exception:
                log.exception("refresh %s failed", name)
            finally:
                self._running.discard(name)

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

    async def wait(self) -> None:
        """Tests and shutdown: until every started refresh is done."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


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
