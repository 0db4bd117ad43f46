"""Refreshing the cache: recompute subtrees from the upstream modules and write them whole.

The service code that the cycle (gateway/refresh/cycle.py), workers' jobs, the embedded
scheduler, the CLI, webhooks and the requestRefresh mutation all call. Every method
takes the instant it computes as of (`now`), read once by its caller.
"""

import logging
import time
from collections.abc import Callable, Sequence
from datetime import datetime

from gateway import metrics
from gateway.cache.subtrees import Subtree, SubtreeCache, summary_of
from loaders import programs
from loaders.base import as_dict
from loaders.engines import Upstream
from loaders.registry import Loaders
from resolvers.caller import ADMIN, DIRECTOR, Caller
from resolvers.figures import Thresholds, iso_instant
from resolvers.subtrees import LiveSource, cohort_director_ids

log = logging.getLogger("gateway.refresh")

# Cohorts computed per batch: bounds memory per statement and IN-list size.
COHORT_BATCH = 400
WRITE_BATCH = 500


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

    async def write(self, entries: dict[str, Subtree], rewritten: set[str] | None = None) -> None:
        """In batches. `rewritten`: see SubtreeCache.write."""
        items = list(entries.items())
        for start in range(0, len(items), WRITE_BATCH):
            await self.cache.write(dict(items[start : start + WRITE_BATCH]), rewritten)

    async def refresh_cohorts(
        self, cohort_ids: Sequence[int], now: datetime, rewritten: set[str] | None = None
    ) -> dict[int, Subtree]:
        """Recompute and store these cohorts; a cohort missing a module keeps its old entry."""
        out: dict[int, Subtree] = {}
        for start in range(0, len(cohort_ids), COHORT_BATCH):
            chunk = list(cohort_ids[start : start + COHORT_BATCH])
            built = await self.live(now).cohorts(chunk)
            await self.write(
                {self.keys.cohort(i): s for i, s in built.items() if "unavailable" not in s},
                rewritten,
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
        return entries

    async def refresh_director(self, caller: Caller, now: datetime) -> None:
        """Scope, profile and summary of one director (or of every admin)."""
        started = time.perf_counter()
        live = self.live(now)
        ids = await live.scope(caller)
        user = await live.user(caller.user_id)
        cohorts = await self._cohorts_for_summary(ids, now)
        profile = as_dict(user) if user is not None else None
        await self.write(self.director_entries(caller, profile, ids, cohorts, now))
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

    async def _cohorts_for_summary(self, ids: list[int], now: datetime) -> dict[int, Subtree]:
        """Cohort subtrees from the cache when fresh, else recomputed (and stored)."""
        keys = [self.keys.cohort(i) for i in ids]
        found = await self.cache.read(keys, "refresh")
        out: dict[int, Subtree] = {}
        missing = []
        for i, key in zip(ids, keys, strict=True):
            subtree = found.get(key)
            if subtree is not None and self.cache.classify(subtree, "refresh", now) == "fresh":
                out[i] = subtree
            else:
                missing.append(i)
        if missing:
            out.update(await self.refresh_cohorts(missing, now))
        return out

    async def refresh_cohort(self, cohort_id: int, now: datetime) -> list[int]:
        """One cohort, then the summaries of every director whose scope holds it (and admins').

        Returns the director ids refreshed."""
        started = time.perf_counter()
        await self.refresh_cohorts([cohort_id], now)
        directors = await cohort_director_ids(Loaders(self.upstream), [cohort_id])
        for director_id in directors:
            await self.refresh_director(Caller(director_id, DIRECTOR), now)
        admin = await programs.first_admin_id(self.upstream)
        if admin is not None:
            await self.refresh_director(Caller(admin, ADMIN), now)
        metrics.REFRESH_DURATION.labels("cohort").observe(time.perf_counter() - started)
        return directors
