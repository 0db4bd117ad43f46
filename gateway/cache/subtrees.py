"""The subtree cache: cohort subtrees, director summaries, scopes and user profiles.

Freshness, by age = now − computedAt:
- age ≤ fresh_s (the refresh interval): served as is;
- fresh_s < age ≤ serve_stale_s: served, marked stale, a refresh is enqueued
  (stale-while-revalidate);
- older, or missing: computed now (single-flight), stored, served. If the upstream
  module needed is unavailable, the old entry (kept for retention_s) is served for the
  affected sections, marked stale, with an UPSTREAM_UNAVAILABLE error on their path.
"""

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import orjson

from gateway import metrics
from gateway.cache.keys import Keys
from gateway.cache.kv import KV, CacheUnavailable
from loaders.base import as_dict
from loaders.engines import UpstreamUnavailable
from resolvers.caller import Caller
from resolvers.figures import Thresholds, iso_instant
from resolvers.subtrees import LiveSource, build_summary, finish_cohort

log = logging.getLogger("gateway.cache.subtrees")

Subtree = dict[str, Any]


@dataclass(frozen=True)
class CachePolicy:
    fresh_s: float = 300.0
    serve_stale_s: float = 900.0
    retention_s: float = 86_400.0
    lock_s: float = 30.0
    lock_poll_s: float = 0.02


class Refresher(Protocol):
    """Asks for a refresh in the background; never waits for it."""

    async def refresh_cohorts(self, cohort_ids: Sequence[int]) -> None: ...

    async def refresh_director(self, caller: Caller) -> None: ...


def encode(subtree: Subtree) -> bytes:
    return orjson.dumps(subtree)


def age_s(subtree: Subtree, now: datetime) -> float:
    return (now - datetime.fromisoformat(subtree["computed_at"])).total_seconds()


class SubtreeCache:
    """Process-wide: the store, the policy, and the in-process single-flight table."""

    def __init__(
        self,
        kv: KV,
        keys: Keys,
        policy: CachePolicy,
        *,
        distributed: bool,
    ) -> None:
        self.kv = kv
        self.keys = keys
        self.policy = policy
        self.distributed = distributed
        self.refresher: Refresher | None = None
        self._flights: dict[str, asyncio.Future[Subtree | None]] = {}

    async def read(self, keys: Sequence[str], kind: str) -> dict[str, Subtree]:
        try:
            raw = await self.kv.get_many(keys)
        except CacheUnavailable:
            metrics.CACHE_REQUESTS.labels(kind, "error").inc(len(keys))
            metrics.LIVE_FALLBACKS.labels(kind).inc(len(keys))
            return {}
        return {k: orjson.loads(v) for k, v in zip(keys, raw, strict=True) if v is not None}

    async def write(self, entries: dict[str, Subtree], defer_into: set[str] | None = None) -> bool:
        """Each entry is written whole, replacing the old one in place.

        The answers built from the old entries are dropped now; or, with `defer_into`, the
        tags naming them are added to it, for a refresh cycle to replace them at its end
        (gateway/prewarm.py) rather than drop them batch by batch."""
        if not entries:
            return True
        for entry in entries.values():
            # Which write this is: a stored answer checks its inputs are still these.
            entry["version"] = uuid.uuid4().hex[:16]
        try:
            await self.kv.set_many(
                {k: encode(v) for k, v in entries.items()}, self.policy.retention_s
            )
            tags = [self.keys.tag(k) for k in entries]
            if defer_into is not None:
                defer_into.update(tags)
            else:
                await self.kv.invalidate(tags)
            return True
        except CacheUnavailable:
            return False

    def classify(self, subtree: Subtree, kind: str, now: datetime) -> str:
        """fresh, stale or expired; counts the look-up."""
        age = age_s(subtree, now)
        if age > self.policy.serve_stale_s:
            metrics.CACHE_REQUESTS.labels(kind, "miss").inc()
            return "expired"
        metrics.SUBTREE_AGE.labels(kind).observe(max(age, 0.0))
        if age > self.policy.fresh_s:
            metrics.CACHE_REQUESTS.labels(kind, "stale").inc()
            return "stale"
        metrics.CACHE_REQUESTS.labels(kind, "hit").inc()
        return "fresh"

    async def shared(
        self,
        keys: Sequence[str],
        compute: Callable[[list[str]], Awaitable[dict[str, Subtree]]],
        now: datetime,
    ) -> dict[str, Subtree | None]:
        """Compute missing keys once, however many callers ask at the same time."""
        loop = asyncio.get_running_loop()
        mine: dict[str, asyncio.Future[Subtree | None]] = {}
        theirs: dict[str, asyncio.Future[Subtree | None]] = {}
        for key in keys:
            flight = self._flights.get(key)
            if flight is None:
                flight = loop.create_future()
                self._flights[key] = flight
                mine[key] = flight
            else:
                theirs[key] = flight
        results: dict[str, Subtree | None] = {}
        if mine:
            try:
                computed = await self._compute_locked(list(mine), compute, now)
            except BaseException as exc:
                for flight in mine.values():
                    if isinstance(exc, asyncio.CancelledError):
                        flight.cancel()  # waiters then compute the key themselves
                    else:
                        flight.set_exception(exc)
                        flight.exception()  # retrieved here; waiters re-raise it themselves
                raise
            finally:
                for key in mine:
                    self._flights.pop(key, None)
            for key, flight in mine.items():
                results[key] = computed.get(key)
                flight.set_result(results[key])
        for key, flight in theirs.items():
            try:
                # Shielded: a waiter cancelled with its request must not cancel the flight.
                results[key] = await asyncio.shield(flight)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise  # this waiter itself is being cancelled
                # The owner was cancelled with its own request: compute it here instead.
                results.update(await self.shared([key], compute, now))
        return results

    async def _compute_locked(
        self,
        keys: list[str],
        compute: Callable[[list[str]], Awaitable[dict[str, Subtree]]],
        now: datetime,
    ) -> dict[str, Subtree]:
        """Across processes: a Redis lock per key; keys locked elsewhere are awaited."""
        if not self.distributed:
            return await compute(keys)
        token = uuid.uuid4().hex.encode()
        lock_keys = [self.keys.lock(k) for k in keys]
        try:
            acquired = await self.kv.set_nx_many(lock_keys, token, self.policy.lock_s)
        except CacheUnavailable:
            acquired = [True] * len(keys)
        owned = [k for k, ok in zip(keys, acquired, strict=True) if ok]
        elsewhere = [k for k, ok in zip(keys, acquired, strict=True) if not ok]
        results: dict[str, Subtree] = {}
        try:
            if owned:
                # Another process may have written a key between our read and our lock.
                for key, value in (await self.read(owned, "lock")).items():
                    if age_s(value, now) <= self.policy.fresh_s:
                        results[key] = value
                todo = [k for k in owned if k not in results]
                if todo:
                    results.update(await compute(todo))
        finally:
            with contextlib.suppress(CacheUnavailable):
                await self.kv.delete(*[self.keys.lock(k) for k in owned])
        if elsewhere:
            results.update(await self._await_others(elsewhere, compute, now))
        return results

    async def _await_others(
        self,
        keys: list[str],
        compute: Callable[[list[str]], Awaitable[dict[str, Subtree]]],
        now: datetime,
    ) -> dict[str, Subtree]:
        deadline = asyncio.get_running_loop().time() + self.policy.lock_s
        pending = list(keys)
        results: dict[str, Subtree] = {}
        while pending and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(self.policy.lock_poll_s)
            # The lock first, then the value: a value written just before its lock was
            # released is then always seen, and a released key is a real give-up.
            try:
                locks = await self.kv.get_many([self.keys.lock(k) for k in pending])
            except CacheUnavailable:
                locks = [None] * len(pending)
            found = await self.read(pending, "lock")
            for key, value in found.items():
                if age_s(value, now) <= self.policy.fresh_s:
                    results[key] = value
            released = [
                k
                for k, lock in zip(pending, locks, strict=True)
                if lock is None and k not in results
            ]
            pending = [k for k in pending if k not in results and k not in released]
            if released:
                # The owner gave up without writing: take the lock and compute ourselves.
                results.update(await self._compute_locked(released, compute, now))
        if pending:
            results.update(await compute(pending))
        return results


class CachedSource:
    """Per request: reads through the cache, computing misses with a LiveSource."""

    def __init__(
        self,
        cache: SubtreeCache,
        live: LiveSource,
        thresholds: Thresholds,
        *,
        enqueue_refreshes: bool = True,
    ) -> None:
        """Reads as of `live.now`, the request's (or job's) one instant."""
        self.cache = cache
        # The prewarm reads what its own cycle just wrote: it never asks for more refreshes.
        self.refresher = cache.refresher if enqueue_refreshes else None
        self.live = live
        self.keys = cache.keys
        self.thresholds = thresholds
        self.now = live.now
        self._scopes: dict[Caller, asyncio.Task[list[int]]] = {}
        # What this request's answer was built from (key → computedAt), for the response
        # cache; an answer built from anything stale or partial is not stored.
        self.dependencies: dict[str, str] = {}
        self.dependency_versions: dict[str, str | None] = {}
        self.answer_cacheable = True

    def _used(self, key: str, entry: Subtree, state: str = "fresh") -> None:
        self.dependencies[key] = entry["computed_at"]
        self.dependency_versions[key] = entry.get("version")
        if state != "fresh" or entry.get("stale_forced") or entry.get("unavailable"):
            self.answer_cacheable = False

    def _refresh_later(self, coro: Awaitable[None]) -> None:
        async def guarded() -> None:
            try:
                await coro
            except Exception:  # a failed enqueue must not fail the answer
                log.warning("could not enqueue a refresh", exc_info=True)

        task = asyncio.ensure_future(guarded())
        _background.add(task)
        task.add_done_callback(_background.discard)

    async def user(self, user_id: int) -> Any:
        key = self.keys.user(user_id)
        found = (await self.cache.read([key], "user")).get(key)
        if found is not None:
            state = self.cache.classify(found, "user", self.now)
            if state != "expired":
                self._used(key, found, state)
                return _Row(found["user"]) if found["user"] else None

        async def compute(keys: list[str]) -> dict[str, Subtree]:
            row = await self.live.user(user_id)
            entry = {
                "user": as_dict(row) if row is not None else None,
                "computed_at": iso_instant(self.now),
            }
            await self.cache.write({key: entry})
            return {key: entry}

        entry = (await self.cache.shared([key], compute, self.now))[key]
        assert entry is not None
        self._used(key, entry)
        return _Row(entry["user"]) if entry["user"] else None

    async def director_ids(self, after: int, limit: int) -> list[int]:
        return await self.live.director_ids(after, limit)

    async def _director_entry(
        self, key: str, kind: str, caller: Caller
    ) -> tuple[Subtree | None, bool]:
        """A director's cached entry and whether it may be served as is (a stale one
        queues that director's refresh; an expired one is only a fallback)."""
        found = (await self.cache.read([key], kind)).get(key)
        if found is None:
            return None, False
        state = self.cache.classify(found, kind, self.now)
        if state == "expired":
            return found, False
        if state == "stale" and self.refresher is not None:
            self._refresh_later(self.refresher.refresh_director(caller))
        self._used(key, found, state)
        return found, True

    async def scope(self, caller: Caller) -> list[int]:
        if caller not in self._scopes:
            self._scopes[caller] = asyncio.ensure_future(self._scope(caller))
        # Shielded: sibling fields share it, and one cancelled must not cancel the others'.
        return await asyncio.shield(self._scopes[caller])

    async def _scope(self, caller: Caller) -> list[int]:
        key = self.keys.scope(caller)
        found, servable = await self._director_entry(key, "scope", caller)
        if found is not None and servable:
            return list(found["cohort_ids"])

        async def compute(keys: list[str]) -> dict[str, Subtree]:
            ids = await self.live.scope(caller)
            entry = {"cohort_ids": ids, "computed_at": iso_instant(self.now)}
            await self.cache.write({key: entry})
            return {key: entry}

        entry = (await self.cache.shared([key], compute, self.now))[key]
        assert entry is not None
        self._used(key, entry)
        return list(entry["cohort_ids"])

    async def cohorts(self, cohort_ids: list[int]) -> dict[int, Subtree]:
        keys = {i: self.keys.cohort(i) for i in cohort_ids}
        found = await self.cache.read(list(keys.values()), "cohort")
        out: dict[int, Subtree] = {}
        stale: list[int] = []
        need: list[int] = []
        for i in cohort_ids:
            subtree = found.get(keys[i])
            state = (
                "missing" if subtree is None else self.cache.classify(subtree, "cohort", self.now)
            )
            if state in ("fresh", "stale"):
                out[i] = subtree  # type: ignore[assignment]
                self._used(keys[i], subtree, state)  # type: ignore[arg-type]
                if state == "stale":
                    stale.append(i)
            else:
                if subtree is None:
                    metrics.CACHE_REQUESTS.labels("cohort", "miss").inc()
                need.append(i)
        if stale and self.refresher is not None:
            self._refresh_later(self.refresher.refresh_cohorts(stale))
        if need:
            by_key = {keys[i]: i for i in need}

            async def compute(missing: list[str]) -> dict[str, Subtree]:
                built = await self.live.cohorts([by_key[k] for k in missing])
                complete = {keys[i]: s for i, s in built.items() if "unavailable" not in s}
                await self.cache.write(complete)
                return {keys[i]: s for i, s in built.items()}

            computed = await self.cache.shared([keys[i] for i in need], compute, self.now)
            for i in need:
                subtree = computed.get(keys[i])
                if subtree is None:
                    continue  # no such cohort
                if "unavailable" in subtree:
                    subtree = self._fill_from_cache(subtree, found.get(keys[i]))
                self._used(keys[i], subtree)
                out[i] = subtree
        return {i: out[i] for i in cohort_ids if i in out}

    def _fill_from_cache(self, fresh: Subtree, old: Subtree | None) -> Subtree:
        """Sections whose module failed come from the last cached subtree, if any."""
        merged = dict(fresh)
        for section in fresh["unavailable"]:
            if old is not None and old.get(section) is not None:
                merged[section] = old[section]
                merged["stale_forced"] = True
        if all(merged[s] is not None for s in fresh["unavailable"]):
            finish_cohort(merged, self.thresholds)
        else:
            merged["alerts"], merged["flags"] = [], []
        return merged

    async def summary(self, caller: Caller) -> Subtree:
        key = self.keys.summary(caller)
        found, servable = await self._director_entry(key, "summary", caller)
        if found is not None and servable:
            return found

        async def compute(keys: list[str]) -> dict[str, Subtree]:
            cohorts = await self.cohorts(await self.scope(caller))
            summary = summary_of(list(cohorts.values()), self.now)
            if "unavailable" not in summary:
                await self.cache.write({key: summary})
            return {key: summary}

        summary = (await self.cache.shared([key], compute, self.now))[key]
        assert summary is not None
        self._used(key, summary)
        if "unavailable" in summary:
            if "seats" in summary:
                return summary  # pooled, from stale sections: served marked, not stored
            if found is not None:
                return {**found, "stale_forced": True, "unavailable": summary["unavailable"]}
            module = next(iter(summary["unavailable"].values()))
            raise UpstreamUnavailable(module)
        return summary


def summary_of(cohorts: list[Subtree], now: datetime) -> Subtree:
    """The summary, unless a cohort still lacks a section (then only what was missing)."""
    missing = {
        section: module
        for c in cohorts
        for section, module in c.get("unavailable", {}).items()
        if c.get(section) is None
    }
    if missing:
        return {"unavailable": missing, "computed_at": iso_instant(now)}
    summary = build_summary(cohorts, now)
    stamps = [c["computed_at"] for c in cohorts]
    if stamps:
        # As of its oldest input: a summary is never fresher than the cohorts it pools.
        summary["computed_at"] = min(stamps)
    filled = {
        section: module
        for c in cohorts
        if c.get("stale_forced")
        for section, module in c.get("unavailable", {}).items()
    }
    if filled:
        # Pooled from sections served from cache: say so, and never store it.
        summary["stale_forced"] = True
        summary["unavailable"] = filled
    return summary


class _Row:
    """Attribute access over a cached row dict (what resolvers expect from loaders)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.__dict__.update(data)


_background: set[asyncio.Future[None]] = set()
