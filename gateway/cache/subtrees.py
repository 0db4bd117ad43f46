"""The subtree cache: cohort subtrees, director summaries, scopes and user profiles,
written whole, read in batches, computed once however many ask (single-flight within a
process and, with Redis, across processes). Requests read it through
gateway/cache/source.py; the refresh writes it (gateway/refresh/)."""

import asyncio
import contextlib
import functools
import logging
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import orjson

from gateway import metrics
from gateway.cache.keys import Keys
from gateway.cache.kv import KV, CacheUnavailable
from gateway.live.notices import Publisher, Rewrites, current_unit, unit
from resolvers.caller import Caller
from resolvers.figures import iso_instant
from resolvers.subtrees import build_summary

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

    async def refresh_event(
        self, event_id: str, module: str, cohort_ids: Sequence[int], director_ids: Sequence[int]
    ) -> None:
        """A change event's refreshes: its directors' first, its cohorts coalesced."""
        ...


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
        # Tells every gateway what was rewritten (gateway/live): set by Services.build.
        self.publisher: Publisher | None = None
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
        (gateway/refresh/cycle.py) rather than drop them batch by batch. Then the write is
        noted in the open rewrite unit (see `unit`), or published at once without one."""
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
        except CacheUnavailable:
            return False
        await self._notify(entries)
        return True

    async def _notify(self, entries: dict[str, Subtree]) -> None:
        open_unit = current_unit()
        if open_unit is not None:
            open_unit.note(self.keys, entries)
        elif self.publisher is not None:
            rewrites = Rewrites()
            rewrites.note(self.keys, entries)
            if rewrites:
                await self.publisher.publish(rewrites)

    def unit(self) -> contextlib.AbstractAsyncContextManager[Rewrites]:
        """A unit of refresh work: its writes are published as one notice when it ends."""
        return unit(self.publisher)

    async def drop(self, keys: Sequence[str]) -> None:
        """Deletes entries and the answers built from them (raises CacheUnavailable)."""
        if keys:
            await self.kv.invalidate([self.keys.tag(k) for k in keys])
            await self.kv.delete(*keys)

    async def index_viewers(self, scopes: Mapping[Caller, Sequence[int]]) -> None:
        """Records who may see each cohort, before their scopes are written: a change event
        naming only a cohort re-scopes everyone recorded for it (gateway/refresh/service.py)
        as well as whoever may see it now. Admins see every cohort and are not recorded.
        A director who lost a cohort stays recorded until the set expires: at worst an
        extra re-scope. Raises CacheUnavailable."""
        sets: dict[str, set[str]] = defaultdict(set)
        for caller, cohort_ids in scopes.items():
            if not caller.is_admin:
                for cohort_id in cohort_ids:
                    sets[self.keys.viewers(cohort_id)].add(str(caller.user_id))
        await self.kv.add_members(sets, self.policy.retention_s)

    async def viewers(self, cohort_id: int) -> list[int]:
        """Directors whose cached scope held this cohort (raises CacheUnavailable)."""
        key = self.keys.viewers(cohort_id)
        return sorted(int(m) for m in (await self.kv.members([key]))[key])

    def classify(self, subtree: Subtree, kind: str, now: datetime) -> str:
        """fresh, stale or expired; counts the look-up."""
        age = age_s(subtree, now)
        if age > self.policy.serve_stale_s:
            _requests(kind, "miss").inc()
            return "expired"
        _ages(kind).observe(max(age, 0.0))
        if age > self.policy.fresh_s:
            _requests(kind, "stale").inc()
            return "stale"
        _requests(kind, "hit").inc()
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


# The labelled series of every subtree read, looked up once (a look-up costs more than
# the increment).
@functools.cache
def _requests(kind: str, result: str) -> Any:
    return metrics.CACHE_REQUESTS.labels(kind, result)


@functools.cache
def _ages(kind: str) -> Any:
    return metrics.SUBTREE_AGE.labels(kind)


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
