"""What a change event asks for, queued as one unit of work per event, revocations first.

An event naming thousands of cohorts once queued a job per cohort, and a demotion sent
after it waited behind all of them. Now (with the worker queue):

- the directors an event names (a scope or role change: a track handed over, a demotion)
  are refreshed by jobs of their own, one per director (its job id), queued ahead of every
  other job: they never wait behind figures;
- the cohorts go into a pending set in the queue's Redis, so a cohort named by many events
  is refreshed once (coalesced per target), and one job is queued for the event. Cohorts of
  a `programs` event (which may have moved between tracks: a scope change) go into a set
  drained before the other modules' (figures only);
- whichever job runs first drains both sets, in batches, holding a lock so that one worker
  slot at most does bulk work: the other slots stay free for the directors' jobs. The
  other events' jobs find the lock held and end at once. Ids that name no cohort, and no
  cohort any director saw, are dropped with one statement and one read per batch.

A drain cut short (a worker killed) loses the batch it held: the next cycle recomputes
every cohort anyway.
"""

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from arq.connections import ArqRedis

from gateway.cache.keys import JOB_REFRESH_PENDING, QUEUE_NAME
from gateway.cache.subtrees import Refresher
from gateway.refresh.service import RefreshService
from loaders import programs

log = logging.getLogger("gateway.refresh.pending")

SCOPE_COHORTS_KEY = f"{QUEUE_NAME}:pending:scope-cohorts"
FIGURE_COHORTS_KEY = f"{QUEUE_NAME}:pending:figure-cohorts"
DRAIN_LOCK_KEY = f"{QUEUE_NAME}:pending:drain"
DRAIN_LOCK_S = 120.0  # extended at every batch; a killed drain's lock frees itself
BATCH = 20  # cohorts per batch: a moved cohort waits at most one batch of figures
# arq runs jobs in score order, their enqueue time: a score this far back puts a job ahead
# of any normally queued one.
FIRST = datetime(2000, 1, 1, tzinfo=UTC)
SCOPE_MODULE = "programs"


async def queue_event(
    redis: ArqRedis,
    event_id: str,
    module: str,
    cohort_ids: Sequence[int],
    trace: dict[str, str] | None,
) -> None:
    """The cohorts of one event: into their pending set, then one job for the event."""
    if not cohort_ids:
        return
    key = SCOPE_COHORTS_KEY if module == SCOPE_MODULE else FIGURE_COHORTS_KEY
    await redis.sadd(key, *cohort_ids)  # type: ignore[misc]
    extra: dict[str, Any] = {"trace": trace} if trace else {}
    await redis.enqueue_job(
        JOB_REFRESH_PENDING,
        _job_id=f"{JOB_REFRESH_PENDING}:{event_id}",
        _queue_name=QUEUE_NAME,
        **extra,
    )


async def drain(redis: ArqRedis, service: RefreshService, refresher: Refresher) -> int:
    """Refreshes every pending cohort (scope changes first); the number refreshed. Ends
    at once when another drain holds the lock: that one takes what was just added."""
    done = 0
    lock = redis.lock(DRAIN_LOCK_KEY, timeout=DRAIN_LOCK_S)
    while await lock.acquire(blocking=False):
        try:
            while batch := await _take(redis):
                done += await _refresh(service, refresher, batch)
                await lock.extend(DRAIN_LOCK_S, replace_ttl=True)
        finally:
            await lock.release()
        # Added after the last batch was taken but before the lock was released: the job
        # queued for it may have found the lock held and ended, so this drain goes on.
        left = await redis.scard(SCOPE_COHORTS_KEY) + await redis.scard(FIGURE_COHORTS_KEY)  # type: ignore[misc]
        if not left:
            break
    return done


async def _take(redis: ArqRedis) -> list[int]:
    members = await redis.spop(SCOPE_COHORTS_KEY, BATCH)  # type: ignore[misc]
    if members:
        # A cohort's refresh rewrites its figures too: no second one for them.
        await redis.srem(FIGURE_COHORTS_KEY, *members)  # type: ignore[misc]
    else:
        members = await redis.spop(FIGURE_COHORTS_KEY, BATCH)  # type: ignore[misc]
    return sorted(int(m) for m in members or ())


async def _refresh(service: RefreshService, refresher: Refresher, cohort_ids: list[int]) -> int:
    rows = await programs.CohortByIdLoader(service.upstream).load_many(cohort_ids)
    unknown = [i for i, row in zip(cohort_ids, rows, strict=True) if row is None]
    seen = await service.cache.kv.members([service.keys.viewers(i) for i in unknown])
    # A cohort gone upstream that some director's cached scope held is refreshed: that
    # takes it out of their scope. Any other unknown id names nothing.
    named = [i for i in cohort_ids if i not in unknown or seen.get(service.keys.viewers(i))]
    if len(named) < len(cohort_ids):
        log.info("dropped ids naming no cohort", extra={"ids": len(cohort_ids) - len(named)})
    for cohort_id in named:
        refreshed = await service.refresh_cohort(cohort_id, service.clock())
        for caller in refreshed.later:
            await refresher.refresh_director(caller)
    return len(named)
