"""Per request (or per answer a cycle rebuilds): reads subtrees through the cache.

Freshness, by age = now − computedAt:
- age ≤ fresh_s (the refresh interval plus its grace): served as is;
- fresh_s < age ≤ serve_stale_s: served, marked stale, a refresh is requested
  (stale-while-revalidate);
- older, or missing: computed now (single-flight), stored, served. If the upstream
  module needed is unavailable, the old entry (kept for retention_s) is served for the
  affected sections, marked stale, with an UPSTREAM_UNAVAILABLE error on their path.
"""

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any

from gateway import metrics
from gateway.cache.kv import CacheUnavailable
from gateway.cache.subtrees import Subtree, SubtreeCache, summary_of
from loaders.base import as_dict
from loaders.engines import UpstreamUnavailable
from resolvers.caller import Caller
from resolvers.figures import Thresholds, iso_instant
from resolvers.subtrees import LiveSource, finish_cohort

log = logging.getLogger("gateway.cache")


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
        self._identities: dict[int, Any] = {}
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
        if user_id in self._identities:  # the caller, confirmed by this request already
            return self._identities[user_id]
        key = self.keys.user(user_id)
        found = (await self.cache.read([key], "user")).get(key)
        if found is not None:
            state = self.cache.classify(found, "user", self.now)
            if state != "expired":
                self._used(key, found, state)
                return _Row(found["user"]) if found["user"] else None
        entry = await self._compute_user(key, user_id)
        self._used(key, entry)
        return _Row(entry["user"]) if entry["user"] else None

    async def identity(self, user_id: int) -> Any:
        """The users-table row of the caller: from a fresh profile entry only (a stale one
        is read again), so a change reaches requests within the freshness window even
        without a refresh; the last entry kept when the programs module is down. Answers
        built on it depend on it: a refresh of that user drops them."""
        if user_id in self._identities:
            return self._identities[user_id]
        key = self.keys.user(user_id)
        found = (await self.cache.read([key], "user")).get(key)
        state = "missing" if found is None else self.cache.classify(found, "user", self.now)
        if found is not None and state == "fresh":
            entry = found
        else:
            try:
                entry = await self._compute_user(key, user_id)
                state = "fresh"
            except UpstreamUnavailable:
                if found is None:
                    raise
                entry, state = found, "stale"
        self._used(key, entry, state)
        row = _Row(entry["user"]) if entry["user"] else None
        self._identities[user_id] = row
        return row

    async def _compute_user(self, key: str, user_id: int) -> Subtree:
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
        return entry

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
            try:
                # A scope is cached only once indexed: a cohort-only event must find it.
                await self.cache.index_viewers({caller: ids})
            except CacheUnavailable:
                self.answer_cacheable = False
                return {key: entry}
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

    async def list_index(self, caller: Caller) -> Subtree | None:
        """Written by the refresh only (never computed here): None when missing or expired."""
        found, servable = await self._director_entry(self.keys.rows(caller), "rows", caller)
        return found if servable else None

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


class _Row:
    """Attribute access over a cached row dict (what resolvers expect from loaders)."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.__dict__.update(data)


_background: set[asyncio.Future[None]] = set()
