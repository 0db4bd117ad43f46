"""The response fast path: final answer bytes of persisted operations, per caller.

A hit is served with no GraphQL work at all: the token is checked, one Redis GET is
made, the stored bytes go out with their ETag and Cache-Control. Correctness rests on:
- the key holds the caller (role and user id), the document hash, the operation name
  and the canonical variables: no entry is ever read for another caller;
- an entry lives at most until its oldest subtree turns stale (refresh interval plus
  grace, as for the subtrees themselves), so `stale` and `computedAt` in the bytes stay
  true;
- every entry is tagged with the subtrees it was built from; writing any of them
  (a webhook, a recompute) deletes the entries tagged with it, and a full refresh cycle
  replaces them at its end (see gateway/refresh/answers.py);
- every entry carries the request it answers (caller, document hash, operation,
  variables), so that a refresh cycle can rebuild it for the same caller and key;
- an entry is compressed once, when it is stored: its gzip bytes sit beside the plain
  ones, so a hit never compresses (nor decompresses: gunzip would cost a client without
  gzip 5–80 µs per hit, while the extra kilobyte a GET reads costs about 1 µs).
"""

import contextlib
import gzip
import hashlib
import math
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import orjson

from gateway import metrics
from gateway.cache.keys import Keys
from gateway.cache.kv import KV, CacheUnavailable
from gateway.settings import Settings
from resolvers.caller import Caller


def canonical_variables(variables: Mapping[str, Any] | None) -> bytes:
    """Variables as canonical JSON (sorted keys; none = `{}`), for answer keys."""
    return orjson.dumps(variables or {}, option=orjson.OPT_SORT_KEYS)


def variables_digest(operation_name: str | None, variables: bytes) -> str:
    """The part of an answer's key naming the operation and its canonical variables."""
    return hashlib.sha256((operation_name or "").encode() + b"\0" + variables).hexdigest()[:16]


@dataclass(frozen=True)
class AnswerId:
    """What names a stored answer besides its caller: the document, the operation and the
    variables. Built only by `of`, from whatever the request was parsed from."""

    sha256: str
    operation_name: str | None
    variables_digest: str

    @classmethod
    def of(
        cls, sha256: str, operation_name: str | None, variables: Mapping[str, Any] | None
    ) -> "AnswerId":
        digest = variables_digest(operation_name, canonical_variables(variables))
        return cls(sha256, operation_name, digest)


@dataclass(frozen=True)
class AnswerRequest:
    """The request an answer is for: what a refresh cycle needs to rebuild it."""

    user_id: int
    role: str
    sha256: str
    operation_name: str | None
    variables: dict[str, Any]
    requested_at: float  # Unix seconds of the request that first executed it

    @property
    def caller(self) -> Caller:
        return Caller(self.user_id, self.role)

    @property
    def answer_id(self) -> AnswerId:
        return AnswerId.of(self.sha256, self.operation_name, self.variables)

    def encode(self) -> bytes:
        return orjson.dumps(
            [
                self.user_id,
                self.role,
                self.sha256,
                self.operation_name,
                self.variables,
                self.requested_at,
            ]
        )

    @classmethod
    def decode(cls, raw: bytes) -> "AnswerRequest | None":
        try:
            user_id, role, sha256, operation_name, variables, requested_at = orjson.loads(raw)
        except (orjson.JSONDecodeError, TypeError, ValueError):
            return None
        if not isinstance(variables, dict):
            return None
        return cls(user_id, role, sha256, operation_name, variables, requested_at)


@dataclass(frozen=True)
class StoredResponse:
    etag: str
    expires_at: float  # Unix seconds: the oldest computedAt + refresh interval (max-age)
    body: bytes
    request: bytes = b"[]"  # AnswerRequest.encode(); decoded only when rebuilding
    # The executed operation's name (a metric label: the request may not have named it).
    operation: str = ""
    # `body` gzip-compressed, when it is at least the store's `gzip_min_bytes` long.
    gzip: bytes | None = None

    def max_age_s(self, now_s: float) -> int:
        return max(0, math.floor(self.expires_at - now_s))


def operation_label(operation: Any) -> str:
    """The name of an executed operation (a graphql-core OperationDefinitionNode), or ""."""
    return operation.name.value if operation.name is not None else ""


GZIP_LEVEL = 6  # on answers of 2-70 KB as small as level 9, and faster


def gzip_answer(body: bytes) -> bytes:
    """An answer's gzip bytes (no timestamp: the same bytes in every process)."""
    return gzip.compress(body, GZIP_LEVEL, mtime=0)


def etag_for(body: bytes) -> str:
    """Strong ETag over the exact response bytes."""
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def encode_answer(data: Any) -> bytes:
    """The body of an answer without errors, exactly as the executed path writes it."""
    return orjson.dumps({"data": data})


_HIT = metrics.CACHE_REQUESTS.labels("response", "hit")
_MISS = metrics.CACHE_REQUESTS.labels("response", "miss")
_ERROR = metrics.CACHE_REQUESTS.labels("response", "error")
_EVICTED = metrics.ANSWERS_EVICTED


def answer_key(keys: Keys, caller: Caller, answer: AnswerId) -> str:
    """The one place an answer's key is made (fast path, endpoint, refresh cycle, bench)."""
    return keys.answer(caller, answer.sha256, answer.variables_digest)


class AnswerUsage:
    """When each stored answer was last asked for, per caller: each caller's index (a
    sorted set of their answer keys by last use) is what a refresh cycle ranks answers
    by. A hit is remembered in this process (a dict assignment, no Redis command on the
    fast path) and written with the others every few seconds (`flush`); at most
    MAX_PENDING hits wait, later ones are not counted until the next flush."""

    MAX_PENDING = 100_000

    def __init__(self, kv: KV, keys: Keys) -> None:
        self.kv = kv
        self.keys = keys
        self._pending: dict[Caller, dict[str, float]] = {}
        self._count = 0

    def touch(self, caller: Caller, key: str, now_s: float) -> None:
        members = self._pending.get(caller)
        if members is None or key not in members:
            if self._count >= self.MAX_PENDING:
                return
            self._count += 1
            if members is None:
                members = self._pending[caller] = {}
        members[key] = now_s

    async def flush(self) -> None:
        pending, self._pending, self._count = self._pending, {}, 0
        # Should Redis be down, these uses are lost: those answers rank lower, nothing more.
        with contextlib.suppress(CacheUnavailable):
            await self.kv.rank_touch(
                {self.keys.answer_index(caller): keys for caller, keys in pending.items()}
            )


class AnswerStore:
    """Stored answers, at most `max_per_caller` per caller: storing one more drops the
    caller's least recently used (so a flood of distinct variables evicts the flooder's
    own answers, and what a cycle rebuilds per caller stays bounded)."""

    def __init__(
        self,
        kv: KV,
        keys: Keys,
        *,
        max_per_caller: int,
        index_ttl_s: float,
        gzip_min_bytes: int | None = None,
    ) -> None:
        self.kv = kv
        self.keys = keys
        self.max_per_caller = max_per_caller
        self.index_ttl_s = index_ttl_s
        self.gzip_min_bytes = gzip_min_bytes  # None: answers are stored plain only
        self.usage = AnswerUsage(kv, keys)

    def key(self, caller: Caller, answer: AnswerId) -> str:
        return answer_key(self.keys, caller, answer)

    async def get(self, key: str) -> StoredResponse | None:
        try:
            raw = await self.kv.get(key)
        except CacheUnavailable:
            _ERROR.inc()
            return None
        if raw is None:
            _MISS.inc()
            return None
        stored = decode_stored(raw)
        (_MISS if stored is None else _HIT).inc()
        return stored

    async def get_stored(self, keys: list[str]) -> list[StoredResponse | None]:
        """Entries as they are, for a refresh cycle (not counted as look-ups)."""
        found = await self.kv.get_many(keys)
        return [None if raw is None else decode_stored(raw) for raw in found]

    async def last_used(self, keys: Sequence[str]) -> dict[str, float]:
        """When each of these answers was last asked for (stored, served or rebuilt);
        answers no longer in their caller's index are left out."""
        owned = [(k, owner) for k in keys if (owner := self.keys.answer_owner(k)) is not None]
        scores = await self.kv.rank_scores([(self.keys.answer_index(o), k) for k, o in owned])
        return {k: s for (k, _), s in zip(owned, scores, strict=True) if s is not None}

    async def forget(self, keys: Collection[str]) -> None:
        """Takes dropped answers out of their callers' indexes."""
        removals: dict[str, set[str]] = defaultdict(set)
        for key in keys:
            owner = self.keys.answer_owner(key)
            if owner is not None:
                removals[self.keys.answer_index(owner)].add(key)
        await self.kv.rank_remove(removals)

    async def put(
        self,
        key: str,
        response: StoredResponse,
        dependencies: Mapping[str, str],
        fresh_s: float,
        now: datetime,
        versions: Mapping[str, str | None] | None = None,
        used_at: float | None = None,
    ) -> bool:
        """Stores until the oldest dependency turns stale (older than `fresh_s`); returns
        False when not stored. `used_at`: when it was last asked for (default: now)."""
        owner = self.keys.answer_owner(key)
        if not dependencies or owner is None:
            return False
        oldest = min(datetime.fromisoformat(stamp) for stamp in dependencies.values())
        ttl_s = (oldest - now).total_seconds() + fresh_s
        if ttl_s < 1:
            return False
        raw = encode_stored(self.compressed(response))
        try:
            await self.kv.set_many({key: raw}, ttl_s)
            await self.kv.tag([self.keys.tag(d) for d in dependencies], key, ttl_s)
            # A refresh writes its entries before it drops the answers tagged with them:
            # so either it saw our tags (and dropped this answer), or its new entries are
            # visible now and we drop the answer ourselves.
            if versions is not None:
                current = await self.kv.get_many(list(dependencies))
                if any(
                    entry is None or orjson.loads(entry).get("version") != versions.get(k)
                    for k, entry in zip(dependencies, current, strict=True)
                ):
                    await self.kv.delete(key)
                    return False
            evicted = await self.kv.rank_add(
                self.keys.answer_index(owner),
                key,
                now.timestamp() if used_at is None else used_at,
                self.index_ttl_s,
                self.max_per_caller,
            )
            if evicted:
                # Tags still name them: a cycle finds them gone and untags them.
                await self.kv.delete(*evicted)
                _EVICTED.inc(len(evicted))
        except CacheUnavailable:
            return False
        return True

    async def keep(
        self,
        key: str,
        request: AnswerRequest,
        data: Any,
        source: Any,
        settings: Settings,
        now: datetime,
        *,
        body: bytes | None = None,
        gzip: bytes | None = None,
        operation: str = "",
        used_at: float | None = None,
    ) -> bool:
        """Stores the executed answer `data` (no errors) to `request` under `key`, when the
        subtree source it was read through allows (the one path by which the endpoint and
        a refresh cycle store what they executed): for max-age, until the next refresh;
        kept until its inputs turn stale. `body` (and `gzip`): its bytes when already
        encoded (and compressed); `operation`: the executed operation's name. Returns False
        when not stored."""
        if not self.cacheable(source):
            return False
        until = expires_at(data, settings.refresh_interval_s)
        if until is None:
            return False
        raw = encode_answer(data) if body is None else body
        return await self.put(
            key,
            StoredResponse(etag_for(raw), until, raw, request.encode(), operation, gzip),
            source.dependencies,
            settings.fresh_s,
            now,
            getattr(source, "dependency_versions", None),
            used_at,
        )

    @staticmethod
    def cacheable(source: Any) -> bool:
        """Whether what was read through this subtree source may be stored as an answer."""
        return bool(getattr(source, "dependencies", None)) and bool(
            getattr(source, "answer_cacheable", False)
        )

    def compressed(self, response: StoredResponse) -> StoredResponse:
        """With its gzip bytes when it is long enough (compressed here unless the caller
        already did, for the response it sent)."""
        limit = self.gzip_min_bytes
        if limit is None or len(response.body) < limit:
            return replace(response, gzip=None)
        if response.gzip is not None:
            return response
        return replace(response, gzip=gzip_answer(response.body))


def encode_stored(response: StoredResponse) -> bytes:
    """ETag, expiry (ms), operation, length of the plain body, request; then the plain
    body and the gzip bytes, if any, back to back."""
    return b"%s\n%d\n%s\n%d\n%s\n%s%s" % (
        response.etag.encode(),
        int(response.expires_at * 1000),
        response.operation.encode(),
        len(response.body),
        response.request,
        response.body,
        response.gzip or b"",
    )


def decode_stored(raw: bytes) -> StoredResponse | None:
    """None for an entry this code cannot read (it is then a miss, executed again)."""
    try:
        etag, expires_ms, operation, body_len, request, payload = raw.split(b"\n", 5)
        length = int(body_len)
        expires_at = int(expires_ms) / 1000
    except ValueError:
        return None
    body, gz = (payload, None) if length == len(payload) else (payload[:length], payload[length:])
    return StoredResponse(etag.decode(), expires_at, body, request, operation.decode(), gz)


def expires_at(data: Any, refresh_interval_s: float) -> float | None:
    """Unix seconds when the oldest computedAt in the answer turns stale."""
    oldest = min(_computed_ats(data), default=None)
    return None if oldest is None else oldest.timestamp() + refresh_interval_s


def _computed_ats(value: Any) -> list[datetime]:
    found: list[datetime] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, inner in item.items():
                if key == "computedAt" and isinstance(inner, str):
                    found.append(datetime.fromisoformat(inner))
                else:
                    stack.append(inner)
        elif isinstance(item, list):
            stack.extend(item)
    return found
