"""Refreshing the cache: the service code that workers, the embedded scheduler, the CLI,
webhooks and the requestRefresh mutation all call. Entries are replaced in place."""

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from sqlalchemy import select

from gateway import metrics
from gateway.cache.subtrees import Refresher, Subtree, SubtreeCache, summary_of
from gateway.cache.keys import Keys
from gateway.cache.kv import KV, CacheUnavailable
from loaders.base import as_dict
from loaders.engines import Upstream
from loaders.programs import track_directors, users
from loaders.registry import Loaders
from resolvers.figures import Thresholds, iso_instant
from resolvers.subtrees import LiveSource, all_cohort_ids, cohort_director_ids

log = logging.getLogger("gateway.refresh.service")

# Cohorts computed per batch in a full cycle: bounds memory per statement and IN-list size.
COHORT_BATCH = 400
WRITE_BATCH = 500


@dataclass
class CycleReport:
    cohorts: int
    directors: int
    seconds: float
    incomplete_cohorts: int


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

    def _live(self, now: datetime) -> LiveSource:
        return LiveSource(Loaders(self.upstream), now, self.thresholds)

    async def _write(self, entries: dict[str, Subtree], rewritten: set[str] | None = None) -> None:
        items = list(entries.items())
        for start in range(0, len(items), WRITE_BATCH):
            await self.cache.write(dict(items[start : start + WRITE_BATCH]), rewritten)

    async def refresh_cohorts(
        self,
        cohort_ids: Sequence[int],
        now: datetime | None = None,
        rewritten: set[str] | None = None,
    ) -> dict[int, Subtree]:
        """Recompute and store these cohorts; a cohort missing a module keeps its old entry.

        `rewritten`: see `refresh_all`."""
        now = now or self.clock()
        out: dict[int, Subtree] = {}
        for start in range(0, len(cohort_ids), COHORT_BATCH):
            chunk = list(cohort_ids[start : start + COHORT_BATCH])
            built = await self._live(now).cohorts(chunk)
            await self._write(
                {self.keys.cohort(i): s for i, s in built.items() if "unavailable" not in s},
                rewritten,
            )
            out.update(built)
        return out

    async def refresh_director(self, user_id: int, role: str) -> None:
        """Scope, profile and summary of one director (or of every admin)."""
        started = time.perf_counter()
        now = self.clock()
        live = self._live(now)
        ids = await live.scope(user_id, role)
        user = await live.user(user_id)
        cohorts = await self._cohorts_for_summary(ids, now)
        entries: dict[str, Subtree] = {
            self.keys.scope(user_id, role): {"cohort_ids": ids, "computed_at": iso_instant(now)},
            self.keys.user(user_id): {
                "user": as_dict(user) if user is not None else None,
                "computed_at": iso_instant(now),
            },
        }
        summary = summary_of(list(cohorts.values()), now)
        if "unavailable" not in summary:
            entries[self.keys.summary(user_id, role)] = summary
        await self._write(entries)
        metrics.REFRESH_DURATION.labels("director").observe(time.perf_counter() - started)
        log.info(
            "refreshed director",
            extra={
                "director": user_id,
                "role": role,
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

    async def refresh_cohort(self, cohort_id: int) -> list[int]:
        """One cohort, then the summaries of every director whose scope holds it (and admins').

        Returns the director ids refreshed."""
        started = time.perf_counter()
        await self.refresh_cohorts([cohort_id])
        directors = await cohort_director_ids(Loaders(self.upstream), [cohort_id])
        for director_id in directors:
            await self.refresh_director(director_id, "director")
        admin = await self._any_admin()
        if admin is not None:
            await self.refresh_director(admin, "admin")
        metrics.REFRESH_DURATION.labels("cohort").observe(time.perf_counter() - started)
        return directors

    async def _any_admin(self) -> int | None:
        rows = await self.upstream.fetch(
            "programs",
            select(users.c.id).where(users.c.role == "admin").order_by(users.c.id).limit(1),
        )
        return rows[0].id if rows else None

    async def refresh_all(
        self, progress: Any = None, rewritten: set[str] | None = None
    ) -> CycleReport:
        """Every cohort once, then every director's scope, profile and summary from them.

        With `rewritten`, the stored answers built from the old entries are not dropped as
        each batch is written: their tags are collected there, and the caller replaces
        those answers once the cycle is done (`gateway.prewarm.refresh_cycle`)."""
        started = time.perf_counter()
        now = self.clock()
        cohort_ids = await all_cohort_ids(Loaders(self.upstream))
        cohorts: dict[int, Subtree] = {}
        for start in range(0, len(cohort_ids), COHORT_BATCH):
            chunk = cohort_ids[start : start + COHORT_BATCH]
            cohorts.update(await self.refresh_cohorts(chunk, now, rewritten))
            if progress is not None:
                progress.update(len(chunk))
        incomplete = sum(1 for s in cohorts.values() if "unavailable" in s)

        # Scopes in memory from one read of track_directors: no statement per director.
        rows = await self.upstream.fetch(
            "programs", select(track_directors.c.director_id, track_directors.c.track_id)
        )
        tracks_by_director: dict[int, set[int]] = defaultdict(set)
        for row in rows:
            tracks_by_director[row.director_id].add(row.track_id)
        cohorts_by_track: dict[int, list[int]] = defaultdict(list)
        for cid in sorted(cohorts):
            cohorts_by_track[cohorts[cid]["track"]["id"]].append(cid)
        people = await self.upstream.fetch(
            "programs",
            select(users.c.id, users.c.name, users.c.email, users.c.role).where(
                users.c.role.in_(("director", "admin"))
            ),
        )
        stamp = iso_instant(now)
        entries: dict[str, Subtree] = {}
        oldest: str | None = None
        admin_done = False
        for person in people:
            role = person.role
            entries[self.keys.user(person.id)] = {
                "user": as_dict(person),
                "computed_at": stamp,
            }
            if role == "admin" and admin_done:
                continue
            if role == "admin":
                ids = sorted(cohorts)
                admin_done = True
            else:
                ids = sorted(
                    {c for t in tracks_by_director.get(person.id, ()) for c in cohorts_by_track[t]}
                )
            entries[self.keys.scope(person.id, role)] = {"cohort_ids": ids, "computed_at": stamp}
            summary = summary_of([cohorts[i] for i in ids], now)
            if "unavailable" not in summary:
                entries[self.keys.summary(person.id, role)] = summary
                oldest = (
                    summary["computed_at"]
                    if oldest is None
                    else min(oldest, summary["computed_at"])
                )
        await self._write(entries, rewritten)
        seconds = time.perf_counter() - started
        directors = sum(1 for p in people if p.role == "director")
        await self.cache.write(
            {
                self.keys.refresh_stamp(): {
                    "computed_at": iso_instant(self.clock()),
                    "duration_s": seconds,
                    "directors": directors,
                    "cohorts": len(cohorts),
                    "incomplete_cohorts": incomplete,
                    "oldest_summary_at": oldest,
                }
            },
            rewritten,
        )
        metrics.REFRESH_DURATION.labels("all").observe(seconds)
        if not incomplete:
            metrics.REFRESH_LAST_SUCCESS.set(time.time())
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


class LocalRefresher:
    """Embedded mode: refreshes run as tasks of this process, one per target at a time."""

    def __init__(self, service: RefreshService) -> None:
        self.service = service
        self._running: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def _start(self, name: str, coro_factory: Callable[[], Any]) -> bool:
        if name in self._running:
            return False
        self._running.add(name)

        async def run() -> None:
            try:
                await coro_factory()
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
            self._start(f"cohort:{cohort_id}", partial(self.service.refresh_cohort, cohort_id))

    async def refresh_director(self, user_id: int, role: str) -> None:
        self._start(
            f"director:{role}:{user_id}",
            lambda: self.service.refresh_director(user_id, role),
        )

    async def wait(self) -> None:
        """Tests and shutdown: until every started refresh is done."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


class RateLimitedRefresh:
    """requestRefresh: a fixed one-minute window per caller, counted in the shared store."""

    def __init__(self, kv: KV, keys: Keys, refresher: Refresher, per_minute: int) -> None:
        self.kv = kv
        self.keys = keys
        self.refresher = refresher
        self.per_minute = per_minute

    async def allow(self, user_id: int) -> bool:
        window = int(time.time() // 60)
        try:
            count = await self.kv.incr(self.keys.rate(user_id, window), 60)
        except CacheUnavailable:
            return True  # fail open: a refresh is harmless, refusing one would be an outage
        return count <= self.per_minute

    async def cohort(self, cohort_id: int) -> None:
        await self.refresher.refresh_cohorts([cohort_id])

    async def director(self, user_id: int, role: str) -> None:
        await self.refresher.refresh_director(user_id, role)
