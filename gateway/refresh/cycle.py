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
import logging
import time
from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from gateway import metrics
from gateway.cache.kv import CacheUnavailable
from gateway.cache.subtrees import Subtree
from gateway.refresh.answers import AnswerReport, prewarm_answers
from gateway.refresh.service import COHORT_BATCH, RefreshService
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
    service: RefreshService, now: datetime, progress: Any = None, rewritten: set[str] | None = None
) -> CycleReport:
    """Every cohort once, then every director's scope, profile and summary from them.

    With `rewritten`, the stored answers built from the old entries are not dropped as
    each batch is written: their tags are collected there, for the answer phase."""
    started = time.perf_counter()
    upstream = service.upstream
    cohort_ids = await programs.all_cohort_ids(upstream)
    cohorts: dict[int, Subtree] = {}
    for start in range(0, len(cohort_ids), COHORT_BATCH):
        chunk = cohort_ids[start : start + COHORT_BATCH]
        cohorts.update(await service.refresh_cohorts(chunk, now, rewritten))
        if progress is not None:
            progress.update(len(chunk))
    incomplete = sum(1 for s in cohorts.values() if "unavailable" in s)

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
    await service.write_directors(scopes, entries, rewritten)
    summaries = [entries[k]["computed_at"] for k in summary_keys if k in entries]
    seconds = time.perf_counter() - started
    directors = sum(1 for p in people if p.role == DIRECTOR)
    finished = now + timedelta(seconds=seconds)
    await service.cache.write(
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
    services: "Services", progress: Any = None
) -> tuple[CycleReport, AnswerReport]:
    """A full refresh, then its answers; then one rewrite notice (gateway/live) for all of
    it, once the answers built from what it rewrote are replaced (or dropped)."""
    assert services.refresh is not None
    now = services.clock()
    rewritten: set[str] = set()
    async with services.refresh.cache.unit():
        try:
            report = await refresh_subtrees(services.refresh, now, progress, rewritten)
            answers = await prewarm_answers(services, now, rewritten)
        except BaseException:
            # What was rewritten before the failure must not keep its old answers.
            await drop_answers(services, rewritten)
            raise
    return report, answers


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
