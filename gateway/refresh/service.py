"""Refreshing the cache: recompute subtrees from the upstream modules and write them whole.

The service code that the cycle (gateway/refresh/cycle.py), workers' jobs, the embedded
scheduler, the CLI, webhooks and the requestRefresh mutation all call. Every method
takes the instant it computes as of (`now`), read once by its caller.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from gateway import metrics
from gateway.cache.kv import CacheUnavailable
from gateway.cache.subtrees import Subtree, SubtreeCache, summary_of
from loaders import programs
from loaders.base import as_dict
from loaders.engines import Upstream
from loaders.registry import Loaders
from resolvers.caller import ADMIN, DIRECTOR, Caller
from resolvers.figures import Thresholds, iso_instant
from resolvers.rows import build_index, list_row
from resolvers.subtrees import LiveSource, cohort_director_ids

log = logging.getLogger("gateway.refresh")

# Cohorts computed per batch: bounds memory per statement and IN-list size.
COHORT_BATCH = 400
WRITE_BATCH = 500

# Awaited before each write of a refresh cycle; raises when the cycle must stop
# (gateway/refresh/lease.py: the cycle's lease is lost).
Guard = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class CohortRefresh:
    directors: list[int]  # re-scoped: who may see the cohort now, and who could before
    later: list[Caller]  # dashboards to refresh after it (the admins' summaries)


def list_index(cohorts: list[Subtree | None], stamp: str) -> Subtree | None:
    """A scope's list index from its cohorts (subtrees or a cycle's summary inputs), or
    None when one is missing or lacks a section: its lists then read every subtree."""
    rows = []
    for cohort in cohorts:
        row = None if cohort is None else list_row(cohort)
        if row is None:
            return None
        rows.append(row)
    return build_index(rows, stamp)


class RefreshService:
    def __init__(
        self,
        upstream: Upstream,
        cache: SubtreeCache,
        thresholds: Thresholds,
        clock: Callable[[], datetime],
    ) -> None:
        self.upstream = upstream
        self.cache = cache
        self.keys = cache.keys
        self.thresholds = thresholds
        self.clock = clock

    def live(self, now: datetime) -> LiveSource:
        return LiveSource(Loaders(self.upstream), now, self.thresholds)

    async def write(
        self,
        entries: dict[str, Subtree],
        rewritten: set[str] | None = None,
        guard: Guard | None = None,
    ) -> None:
        """In batches. `rewritten`: see SubtreeCache.write. A refresh that cannot write
        fails (raises CacheUnavailable) rather than report done. `guard` is awaited before
        each batch (a cycle's lease)."""
        items = list(entries.items())
        for start in range(0, len(items), WRITE_BATCH):
            if guard is not None:
                await guard()
            if not await self.cache.write(dict(items[start : start + WRITE_BATCH]), rewritten):
                raise CacheUnavailable("the cache refused a refresh's write")

    async def refresh_cohorts(
        self,
        cohort_ids: Sequence[int],
        now: datetime,
        rewritten: set[str] | None = None,
        guard: Guard | None = None,
    ) -> dict[int, Subtree]:
        """Recompute and store these cohorts; a cohort missing a module keeps its old entry."""
        out: dict[int, Subtree] = {}
        for start in range(0, len(cohort_ids), COHORT_BATCH):
            chunk = list(cohort_ids[start : start + COHORT_BATCH])
            built = await self.live(now).cohorts(chunk)
            await self.write(
                {self.keys.cohort(i): s for i, s in built.items() if "unavailable" not in s},
                rewritten,
                guard,
            )
            out.update(built)
        return out

    def director_entries(
        self,
        person: Caller,
        profile: dict[str, object] | None,
        ids: list[int],
        cohorts: dict[int, Subtree],
        now: datetime,
    ) -> dict[str, Subtree]:
        """A director's (or admin's) profile, scope and, when complete, summary entries."""
        stamp = iso_instant(now)
        entries: dict[str, Subtree] = {
            self.keys.user(person.user_id): {"user": profile, "computed_at": stamp},
            self.keys.scope(person): {"cohort_ids": ids, "computed_at": stamp},
        }
        summary = summary_of([cohorts[i] for i in ids if i in cohorts], now)
        if "unavailable" not in summary:
            entries[self.keys.summary(person)] = summary
        index = list_index([cohorts.get(i) for i in ids], stamp)
        if index is not None:
            entries[self.keys.rows(person)] = index
        return entries

    async def write_directors(
        self,
        scopes: dict[Caller, list[int]],
        entries: dict[str, Subtree],
        rewritten: set[str] | None = None,
        guard: Guard | None = None,
    ) -> None:
        """Scopes are indexed (who may see each cohort) before they are written."""
        if guard is not None:
            await guard()
        await self.cache.index_viewers(scopes)
        await self.write(entries, rewritten, guard)

    async def refresh_director(self, caller: Caller, now: datetime) -> None:
        """Scope, profile and summary of one director (or of every admin).

        A director's stale cohorts are recomputed first (a handful); an admin's summary
        pools the cached cohorts as they are (recomputing only missing or expired ones):
        every cohort is the cycle's work, never one refresh's. One rewrite notice
        (gateway/live), or part of the caller's."""
        async with self.cache.unit():
            await self._refresh_director(caller, now)

    async def _refresh_director(self, caller: Caller, now: datetime) -> None:
        started = time.perf_counter()
        live = self.live(now)
        ids = await live.scope(caller)
        user = await live.user(caller.user_id)
        cohorts = await self.cached_cohorts(ids, now, recompute_stale=not caller.is_admin)
        profile = as_dict(user) if user is not None else None
        entries = self.director_entries(caller, profile, ids, cohorts, now)
        await self.write_directors({caller: ids}, entries)
        metrics.REFRESH_DURATION.labels("director").observe(time.perf_counter() - started)
        log.info(
            "refreshed director",
            extra={
                "director": caller.user_id,
                "role": caller.role,
                "cohorts": len(ids),
                "duration_s": round(time.perf_counter() - started, 4),
            },
        )

    async def cached_cohorts(
        self, ids: Collection[int], now: datetime, *, recompute_stale: bool
    ) -> dict[int, Subtree]:
        """Cohort subtrees from the cache; missing and expired ones (and, with
        `recompute_stale`, stale ones) are recomputed and stored."""
        keys = {i: self.keys.cohort(i) for i in ids}
        found = await self.cache.read(list(keys.values()), "refresh")
        out: dict[int, Subtree] = {}
        missing = []
        for i, key in keys.items():
            subtree = found.get(key)
            if subtree is None:
                missing.append(i)
                continue
            state = self.cache.classify(subtree, "refresh", now)
            if state == "expired" or (recompute_stale and state == "stale"):
                missing.append(i)
            else:
                out[i] = subtree
        if missing:
            out.update(await self.refresh_cohorts(missing, now))
        return out

    async def refresh_cohort(self, cohort_id: int, now: datetime) -> "CohortRefresh":
        """One cohort, and the scope and summary of every director who may see it now or
        whose cached scope held it: a cohort that moved to another track, or whose track
        changed hands, is revoked from its former directors in the same refresh, before
        its new figures are written. Other cohorts are not recomputed here (summaries pool
        the cached ones, recomputing only missing or expired ones).

        Leaves the admins' summaries (they pool every cohort) to be refreshed later; their
        scope is rewritten here."""
        started = time.perf_counter()
        async with self.cache.unit():  # one rewrite notice for all of it (gateway/live)
            directors, admins = await self._refresh_cohort(cohort_id, now)
        metrics.REFRESH_DURATION.labels("cohort").observe(time.perf_counter() - started)
        log.info(
            "refreshed cohort",
            extra={
                "cohort": cohort_id,
                "directors": [d.user_id for d in directors],
                "duration_s": round(time.perf_counter() - started, 4),
            },
        )
        return CohortRefresh([d.user_id for d in directors], admins)

    async def _refresh_cohort(
        self, cohort_id: int, now: datetime
    ) -> tuple[list[Caller], list[Caller]]:
        live = self.live(now)
        built = await live.cohorts([cohort_id])
        had = await self.cache.viewers(cohort_id)
        has = await cohort_director_ids(live.loaders, [cohort_id])
        directors = [Caller(d, DIRECTOR) for d in sorted({*had, *has})]
        scopes = dict(
            zip(directors, await asyncio.gather(*(live.scope(d) for d in directors)), strict=True)
        )
        pooled = await self.cached_cohorts(
            {c for ids in scopes.values() for c in ids} - set(built), now, recompute_stale=False
        )
        pooled.update(built)
        entries: dict[str, Subtree] = {}
        unpooled: list[str] = []
        stamp = iso_instant(now)
        for director, ids in scopes.items():
            entries[self.keys.scope(director)] = {"cohort_ids": ids, "computed_at": stamp}
            summary = summary_of([pooled[i] for i in ids if i in pooled], now)
            if "unavailable" in summary:
                # Its old summary may name a cohort it lost: dropped rather than kept.
                unpooled.append(self.keys.summary(director))
            else:
                entries[self.keys.summary(director)] = summary
            index = list_index([pooled.get(i) for i in ids], stamp)
            if index is None:
                unpooled.append(self.keys.rows(director))  # its lists read every subtree
            else:
                entries[self.keys.rows(director)] = index
        admin = await programs.first_admin_id(self.upstream)
        admins = [Caller(admin, ADMIN)] if admin is not None else []
        for caller in admins:
            every = await live.scope(caller)
            entries[self.keys.scope(caller)] = {"cohort_ids": every, "computed_at": stamp}
        await self.write_directors(scopes, entries)
        await self.cache.drop(unpooled)
        complete = {self.keys.cohort(i): s for i, s in built.items() if "unavailable" not in s}
        await self.write(complete)
        return directors, admins
