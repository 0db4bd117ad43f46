"""Byte stores behind the cache: Redis, or process memory in embedded mode.

Both raise `CacheUnavailable` instead of driver errors so callers degrade uniformly.
Only single-key commands are used (GET/SET in pipelines, never a transaction), so every
key may live in a different Redis Cluster slot: `client` may be redis-py's cluster client.
"""

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger("gateway.cache.kv")


class CacheUnavailable(Exception):
    """The store cannot be reached; answer without it."""


class KV(Protocol):
    async def get(self, key: str) -> bytes | None: ...

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]: ...

    async def set_many(self, items: Mapping[str, bytes], ttl_s: float) -> None: ...

    async def set_nx(self, key: str, value: bytes, ttl_s: float) -> bool: ...

    async def delete(self, *keys: str) -> None: ...

    async def incr(self, key: str, ttl_s: float) -> int: ...

    async def set_nx_many(self, keys: Sequence[str], value: bytes, ttl_s: float) -> list[bool]: ...

    async def tag(self, tag_keys: Sequence[str], member: str, ttl_s: float) -> None: ...

    async def invalidate(self, tag_keys: Sequence[str]) -> int: ...

    async def members(self, tag_keys: Sequence[str]) -> dict[str, set[str]]: ...

    async def add_members(self, sets: Mapping[str, Collection[str]], ttl_s: float) -> None: ...

    async def untag(self, removals: Mapping[str, set[str]]) -> None: ...

    async def rank_add(
        self, key: str, member: str, score: float, ttl_s: float, keep: int
    ) -> list[str]: ...

    async def rank_touch(self, scores: Mapping[str, Mapping[str, float]]) -> None: ...

    async def rank_scores(self, pairs: Sequence[tuple[str, str]]) -> list[float | None]: ...

    async def rank_remove(self, removals: Mapping[str, Collection[str]]) -> None: ...

    async def ping(self) -> None: ...


class MemoryKV:
    """Embedded mode: a dict with expiry (monotonic seconds)."""

    def __init__(self) -> None:
        self._data: dict[str, tuple[bytes, float]] = {}
        self._tags: dict[str, set[str]] = {}
        self._ranks: dict[str, dict[str, float]] = {}

    def _get(self, key: str) -> bytes | None:
        item = self._data.get(key)
        if item is None:
            return None
        if item[1] <= time.monotonic():
            del self._data[key]
            return None
        return item[0]

    async def get(self, key: str) -> bytes | None:
        return self._get(key)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return [self._get(k) for k in keys]

    async def set_many(self, items: Mapping[str, bytes], ttl_s: float) -> None:
        expires = time.monotonic() + ttl_s
        for key, value in items.items():
            self._data[key] = (value, expires)

    async def set_nx(self, key: str, value: bytes, ttl_s: float) -> bool:
        if self._get(key) is not None:
            return False
        self._data[key] = (value, time.monotonic() + ttl_s)
        return True

    async def delete(self, *keys: str) -> None:
        for key in keys:
            self._data.pop(key, None)

    async def incr(self, key: str, ttl_s: float) -> int:
        current = self._get(key)
        value = int(current or b"0") + 1
        expires = self._data[key][1] if current is not None else time.monotonic() + ttl_s
        self._data[key] = (str(value).encode(), expires)
        return value

    async def set_nx_many(self, keys: Sequence[str], value: bytes, ttl_s: float) -> list[bool]:
        return [await self.set_nx(key, value, ttl_s) for key in keys]

    async def tag(self, tag_keys: Sequence[str], member: str, ttl_s: float) -> None:
        for tag in tag_keys:
            self._tags.setdefault(tag, set()).add(member)

    async def members(self, tag_keys: Sequence[str]) -> dict[str, set[str]]:
        return {tag: set(self._tags.get(tag, ())) for tag in tag_keys}

    async def add_members(self, sets: Mapping[str, Collection[str]], ttl_s: float) -> None:
        for key, members in sets.items():
            self._tags.setdefault(key, set()).update(members)

    async def untag(self, removals: Mapping[str, set[str]]) -> None:
        for tag, gone in removals.items():
            self._tags.get(tag, set()).difference_update(gone)

    async def rank_add(
        self, key: str, member: str, score: float, ttl_s: float, keep: int
    ) -> list[str]:
        ranks = self._ranks.setdefault(key, {})
        ranks[member] = score
        excess = sorted(ranks, key=lambda m: (ranks[m], m))[: max(len(ranks) - keep, 0)]
        for gone in excess:
            del ranks[gone]
        return excess

    async def rank_touch(self, scores: Mapping[str, Mapping[str, float]]) -> None:
        for key, members in scores.items():
            ranks = self._ranks.get(key, {})
            for member, score in members.items():
                if member in ranks:
                    ranks[member] = max(ranks[member], score)

    async def rank_scores(self, pairs: Sequence[tuple[str, str]]) -> list[float | None]:
        return [self._ranks.get(key, {}).get(member) for key, member in pairs]

    async def rank_remove(self, removals: Mapping[str, Collection[str]]) -> None:
        for key, gone in removals.items():
            for member in gone:
                self._ranks.get(key, {}).pop(member, None)

    async def invalidate(self, tag_keys: Sequence[str]) -> int:
        members = set().union(*(self._tags.pop(tag, set()) for tag in tag_keys))
        for member in members:
            self._data.pop(member, None)
        return len(members)

    async def ping(self) -> None:
        return None


class RedisKV:
    """Redis with a short circuit breaker: after a failure, skip Redis for `retry_after_s`
    instead of paying a connect timeout on every request while it is down."""

    def __init__(
        self, client: aioredis.Redis | aioredis.RedisCluster, retry_after_s: float = 1.0
    ) -> None:
        self.client = client
        self.retry_after_s = retry_after_s
        self._down_until = 0.0

    def _check(self) -> None:
        if time.monotonic() < self._down_until:
            raise CacheUnavailable("redis marked down")

    @contextlib.asynccontextmanager
    async def _guard(self) -> AsyncIterator[None]:
        """Driver errors become CacheUnavailable, and open the breaker."""
        self._check()
        try:
            yield
        except (RedisError, OSError, TimeoutError) as exc:
            raise self._failed(exc) from exc

    def _failed(self, exc: BaseException) -> CacheUnavailable:
        if self._down_until <= time.monotonic():
            log.warning("redis unavailable: %s", exc)
        self._down_until = time.monotonic() + self.retry_after_s
        return CacheUnavailable(str(exc))

    async def get(self, key: str) -> bytes | None:
        """One GET: the fast path's only command, so written without `_guard`'s overhead."""
        if time.monotonic() < self._down_until:
            raise CacheUnavailable("redis marked down")
        try:
            return await self.client.get(key)  # type: ignore[no-any-return]
        except (RedisError, OSError, TimeoutError) as exc:
            raise self._failed(exc) from exc

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        async with self._guard():
            if len(keys) == 1:
                return [await self.client.get(keys[0])]
            async with self.client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.get(key)
                return list(await pipe.execute())

    async def set_many(self, items: Mapping[str, bytes], ttl_s: float) -> None:
        if not items:
            return
        async with self._guard(), self.client.pipeline(transaction=False) as pipe:
            for key, value in items.items():
                pipe.set(key, value, px=int(ttl_s * 1000))
            await pipe.execute()

    async def set_nx(self, key: str, value: bytes, ttl_s: float) -> bool:
        async with self._guard():
            return bool(await self.client.set(key, value, nx=True, px=int(ttl_s * 1000)))

    async def set_nx_many(self, keys: Sequence[str], value: bytes, ttl_s: float) -> list[bool]:
        async with self._guard(), self.client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.set(key, value, nx=True, px=int(ttl_s * 1000))
            return [bool(r) for r in await pipe.execute()]

    async def delete(self, *keys: str) -> None:
        if not keys:
            return
        async with self._guard(), self.client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.delete(key)
            await pipe.execute()

    async def incr(self, key: str, ttl_s: float) -> int:
        # Pipelined, not a transaction (a Redis Cluster client has none): should the link
        # fail between the two, the counter of a past window outlives it, harmlessly.
        async with self._guard(), self.client.pipeline(transaction=False) as pipe:
            pipe.incr(key)
            pipe.expire(key, max(int(ttl_s), 1), nx=True)
            value, _ = await pipe.execute()
            return int(value)

    async def tag(self, tag_keys: Sequence[str], member: str, ttl_s: float) -> None:
        if not tag_keys:
            return
        ttl = max(int(ttl_s) + 1, 1)
        async with self._guard(), self.client.pipeline(transaction=False) as pipe:
            for tag in tag_keys:
                pipe.sadd(tag, member)
                # A tag lives as long as its longest-lived member: extend, never shorten.
                pipe.expire(tag, ttl, gt=True)
                pipe.expire(tag, ttl, nx=True)
            await pipe.execute()

    async def add_members(self, sets: Mapping[str, Collection[str]], ttl_s: float) -> None:
        """Adds members to sets (one SADD per set, pipelined); a set lives `ttl_s` after
        its last addition."""
        sets = {key: members for key, members in sets.items() if members}
        if not sets:
            return
        ttl = max(int(ttl_s), 1)
        async with self._guard(), self.client.pipeline(transaction=False) as pipe:
            for key, members in sets.items():
                pipe.sadd(key, *members)
                pipe.expire(key, ttl)
            await pipe.execute()

    async def members(self, tag_keys: Sequence[str]) -> dict[str, set[str]]:
        """Each tag's members (one SMEMBERS per tag, pipelined)."""
        if not tag_keys:
            return {}
        async with self._guard(), self.client.pipeline(transaction=False) as pipe:
            for tag in tag_keys:
                pipe.smembers(tag)
            found = await pipe.execute()
        return {
            tag: {m.decode() if isinstance(m, bytes) else m for m in members}
            for tag, members in zip(tag_keys, found, strict=True)
        }

    async def untag(self, removals: Mapping[str, set[str]]) -> None:
        """Removes members from tags (one SREM per tag, pipelined)."""
        removals = {tag: gone for tag, gone in removals.items() if gone}
        if not removals:
            return
        async with self._guard(), self.client.pipeline(transaction=False) as pipe:
            for tag, gone in removals.items():
                pipe.srem(tag, *gone)
            await pipe.execute()

    async def rank_add(
        self, key: str, member: str, score: float, ttl_s: float, keep: int
    ) -> list[str]:
        """Adds `member` to the sorted set `key` and keeps its `keep` highest scores:
        returns the members taken out (lowest scores first)."""
        async with self._guard():
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.zadd(key, {member: score})
                pipe.expire(key, max(int(ttl_s), 1))
                pipe.zcard(key)
                _, _, size = await pipe.execute()
            excess = int(size) - keep
            if excess <= 0:
                return []
            popped = await self.client.zpopmin(key, excess)
        return [m.decode() if isinstance(m, bytes) else m for m, _ in popped]

    async def rank_touch(self, scores: Mapping[str, Mapping[str, float]]) -> None:
        """Raises the scores of members still in their sets (never adds one back)."""
        scores = {key: members for key, members in scores.items() if members}
        if not scores:
            return
        async with self._guard(), self.client.pipeline(transaction=False) as pipe:
            for key, members in scores.items():
                pipe.zadd(key, dict(members), xx=True, gt=True)
            await pipe.execute()

    async def rank_scores(self, pairs: Sequence[tuple[str, str]]) -> list[float | None]:
        if not pairs:
            return []
        async with self._guard(), self.client.pipeline(transaction=False) as pipe:
            for key, member in pairs:
                pipe.zscore(key, member)
            found = await pipe.execute()
        return [None if score is None else float(score) for score in found]

    async def rank_remove(self, removals: Mapping[str, Collection[str]]) -> None:
        removals = {key: gone for key, gone in removals.items() if gone}
        if not removals:
            return
        async with self._guard(), self.client.pipeline(transaction=False) as pipe:
            for key, gone in removals.items():
                pipe.zrem(key, *gone)
            await pipe.execute()

    async def invalidate(self, tag_keys: Sequence[str]) -> int:
        """Deletes every member of these tags, then the tags (single-key commands only)."""
        if not tag_keys:
            return 0
        async with self._guard():
            async with self.client.pipeline(transaction=False) as pipe:
                for tag in tag_keys:
                    pipe.smembers(tag)
                member_sets = await pipe.execute()
            members = {m for found in member_sets for m in found}
            async with self.client.pipeline(transaction=False) as pipe:
                for member in members:
                    pipe.delete(member)
                for tag, found in zip(tag_keys, member_sets, strict=True):
                    if found:
                        pipe.delete(tag)
                await pipe.execute()
            return len(members)

    async def ping(self) -> None:
        """Always asks Redis (ignores the breaker), and closes the breaker on success."""
        self._down_until = 0.0
        async with self._guard():
            await self.client.ping()
