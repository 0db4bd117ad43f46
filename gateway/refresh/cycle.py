"""The refresh cycle: every subtree rewritten, then every stored answer built from them.

What the workers' cron, the embedded scheduler and `gateway refresh --all --sync` run,
every refresh interval:

1. subtrees: every cohort once (in batches), then every director's and admin's profile,
   scope and summary from those cohorts (scopes from one read of track_directors, no
   statement per director);
2. answers (gateway/refresh/answers.py): every director's dashboard pages are built and
   stored, and the other stored answers built from a rewritten subtree are rebuilt in
   place, so a dashboard stays a fast-path hit across cycles.

While the cycle runs, the answers it is about to replace keep being served (the previous
cycle's bytes, with their computedAt). Should the cycle fail, the answers built from
what it rewrote are dropped instead: none is left in place on a rewritten subtree.
"""

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson

from gateway import metrics
from gateway.cache.kv import CacheUnavailable
from gateway.cache.subtrees import Subtree
from gateway.refresh.answers import AnswerReport, prewarm_answers
from gateway.refresh.lease import Skipped, cycle_lease
from gateway.refresh.service import COHORT_BATCH, Guard, RefreshService
from loaders import programs
from loaders.base import as_dict
from resolvers.caller import DIRECTOR, Caller
from resolvers.figures import iso_instant

if TYPE_CHECKING:
    from gateway.services import Services

log = logging.getLogger("gateway.refresh.cycle")


@dataclass
class CycleReport:
    cohorts: int
    directors: int
    seconds: float
    incomplete_cohorts: int


async def refresh_subtrees(
    service: RefreshService,
    now: datetime,
    progress: Any = None,
    rewritten: set[str] | None = None,
    guard: Guard | None = None,
) -> CycleReport:
    """Every cohort once, then every director's scope, profile and summary from them.

    With `rewritten`, the stored answers built from the old entries are not dropped as
    each batch is written: their tags are collected there, for the answer phase. `guard`
    is awaited before each write (it raises to stop the cycle)."""
    started = time.perf_counter()
    upstream = service.upstream
    cohort_ids = await programs.all_cohort_ids(upstream)
    cohorts: dict[int, Subtree] = {}
    for start in range(0, len(cohort_ids), COHORT_BATCH):
        chunk = cohort_ids[start : start + COHORT_BATCH]
        with counted_batch("cohorts"):
            cohorts.update(await service.refresh_cohorts(chunk, now, rewritten, guard))
        if progress is not None:
            progress.update(len(chunk))
    incomplete = sum(1 for s in cohorts.values() if "unavailable" in s)
    directors_started = time.perf_counter()
    metrics.REFRESH_PHASE.labels("cohorts").observe(directors_started - started)

    tracks_by_director: dict[int, set[int]] = defaultdict(set)
    for row in await programs.director_track_pairs(upstream):
        tracks_by_director[row.director_id].add(row.track_id)
    cohorts_by_track: dict[int, list[int]] = defaultdict(list)
    for cid in sorted(cohorts):
        cohorts_by_track[cohorts[cid]["track"]["id"]].append(cid)
    people = await programs.dashboard_users(upstream)
    entries: dict[str, Subtree] = {}
    scopes: dict[Caller, list[int]] = {}
    summary_keys: set[str] = set()
    every_cohort = sorted(cohorts)
    for person in people:
        caller = Caller(person.id, person.role)
        if caller.is_admin:
            ids = every_cohort
        else:
            tracks = tracks_by_director.get(person.id, ())
            ids = sorted({c for t in tracks for c in cohorts_by_track[t]})
        # Admins share one scope and summary (one key): the same content each time.
        entries.update(service.director_entries(caller, as_dict(person), ids, cohorts, now))
        scopes[caller] = ids
        summary_keys.add(service.keys.summary(caller))
    with counted_batch("directors"):
        await service.write_directors(scopes, entries, rewritten, guard)
    metrics.REFRESH_PHASE.labels("directors").observe(time.perf_counter() - directors_started)
    summaries = [entries[k]["computed_at"] for k in summary_keys if k in entries]
    seconds = time.perf_counter() - started
    directors = sum(1 for p in people if p.role == DIRECTOR)
    finished = now + timedelta(seconds=seconds)
    await service.write(
        {
            service.keys.refresh_stamp(): {
                "computed_at": iso_instant(finished),
                "duration_s": seconds,
                "directors": directors,
                "cohorts": len(cohorts),
                "incomplete_cohorts": incomplete,
                "oldest_summary_at": min(summaries, default=None),
            }
        },
        rewritten,
        guard,
    )
    metrics.REFRESH_DURATION.labels("all").observe(seconds)
    if not incomplete:
        metrics.REFRESH_LAST_SUCCESS.set(finished.timestamp())
    log.info(
        "refresh cycle done",
        extra={
            "directors": directors,
            "cohorts": len(cohorts),
            "duration_s": round(seconds, 3),
            "incomplete_cohorts": incomplete,
        },
    )
    return CycleReport(len(cohorts), directors, seconds, incomplete)


@contextlib.contextmanager
def counted_batch(phase: str) -> Iterator[None]:
    """gateway_refresh_batches_total{phase, outcome}."""
    try:
        yield
    except BaseException:
        metrics.REFRESH_BATCHES.labels(phase, "failed").inc()
        raise
    metrics.REFRESH_BATCHES.labels(phase, "done").inc()


# A cycle waits for the running one at most this many refresh intervals.
LEASE_WAIT_INTERVALS = 2
DROP_ATTEMPTS = 3
DROP_RETRY_S = 1.1  # past the Redis circuit breaker's pause (RedisKV.retry_after_s)


async def drop_answers(services: "Services", tags: Collection[str]) -> None:
    """Drops the answers tagged `tags`, retrying past the circuit breaker a failure opens."""
    if not tags:
        return
    for attempt in range(DROP_ATTEMPTS):
        try:
            await services.kv.invalidate(sorted(tags))
            return
        except CacheUnavailable:
            if attempt + 1 < DROP_ATTEMPTS:
                await asyncio.sleep(DROP_RETRY_S)
    log.error(
        "could not drop the answers built from rewritten subtrees; they expire when their "
        "inputs turn stale",
        extra={"tags": len(tags)},
    )


async def refresh_cycle(
    services: "Services", progress: Any = None, *, only_when_cold: bool = False
) -> tuple[CycleReport, AnswerReport]:
    """A full refresh, then its answers, holding the cycle lease (gateway/refresh/lease.py);
    then one rewrite notice (gateway/live) for all of it, once the answers built from what
    it rewrote are replaced (or dropped).

    Raises Skipped when a cycle is running and another already waits to follow it, or,
    `only_when_cold`, when a completed cycle is recorded by the time the lease is held."""
    assert services.refresh is not None
    wait_s = LEASE_WAIT_INTERVALS * services.settings.refresh_interval_s
    async with cycle_lease(services.redis, wait_s) as lease, services.refresh.cache.unit():
        if only_when_cold and await last_cycle(services) is not None:
            raise Skipped("a completed cycle is recorded")
        now = services.clock()  # the cycle's instant: read once the lease is held
        rewritten: set[str] = set()
        try:
            report = await refresh_subtrees(
                services.refresh, now, progress, rewritten, lease.confirm
            )
            with counted_batch("answers"):
                answers = await prewarm_answers(services, now, rewritten, lease.confirm)
            metrics.REFRESH_PHASE.labels("answers").observe(answers.seconds)
        except BaseException:
            # What was rewritten before the failure must not keep its old answers; unless
            # the lease was lost: the cycle holding it now replaces them all (or Redis
            # came back empty), and a drop would delete that cycle's new answers.
            if lease.lost is None:
                await drop_answers(services, rewritten)
            raise
    return report, answers


async def last_cycle(services: "Services") -> dict[str, Any] | None:
    """The record of the last completed cycle; raises CacheUnavailable."""
    assert services.cache is not None
    [raw] = await services.kv.get_many([services.cache.keys.refresh_stamp()])
    return None if raw is None else dict(orjson.loads(raw))


async def embedded_scheduler(services: "Services") -> None:
    """Embedded mode: the workers' cycle, in this process, every refresh interval."""
    while True:
        try:
            await refresh_cycle(services)
        except Exception:
            log.exception("embedded refresh cycle failed")
        await asyncio.sleep(services.settings.refresh_interval_s)


def cron_fields(interval_s: float) -> dict[str, Any]:
    """arq cron fields for "every interval_s seconds", aligned on the clock."""
    seconds = int(interval_s)
    if seconds != interval_s or seconds <= 0:
        raise ValueError("the refresh interval must be a whole number of seconds")
    if seconds < 60 and 60 % seconds == 0:
        return {"second": set(range(0, 60, seconds))}
    if seconds % 60 == 0 and 3600 % seconds == 0:
        return {"minute": set(range(0, 60, seconds // 60)), "second": 0}
    raise ValueError("the refresh interval must divide a minute or an hour (e.g. 30, 60, 300)")
