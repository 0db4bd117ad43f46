"""The response fast path: final answer bytes of persisted operations, per caller.

A hit is served with no GraphQL work at all: the token is checked, one Redis GET is
made, the stored bytes go out with their ETag and Cache-Control. Correctness rests on:
- the key holds the caller (role and user id), the document hash, the operation name
  and the canonical variables: no entry is ever read for another caller;
- an entry lives at most until its oldest subtree turns stale, so `stale` and
  `computedAt` in the bytes stay true;
- every entry is tagged with the subtrees it was built from; writing any of them
  (a refresh, a webhook, a recompute) deletes the entries tagged with it.
"""

import hashlib
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from gateway import metrics
from gateway.keys import Keys
from gateway.kv import KV, CacheUnavailable
from resolvers.subtrees import Caller


@dataclass(frozen=True)
class StoredResponse:
    etag: str
    expires_at: float  # Unix seconds: the oldest computedAt in the answer + refresh interval
    body: bytes

    def max_age_s(self, now_s: float) -> int:
        return max(0, math.floor(self.expires_at - now_s))


def etag_for(body: bytes) -> str:
    """Strong ETag over the exact response bytes."""
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def encode_answer(data: Any) -> bytes:
    """The body of an answer without errors, exactly as the executed path writes it."""
    return orjson.dumps({"data": data})


class ResponseCache:
    def __init__(self, kv: KV, keys: Keys) -> None:
        self.kv = kv
        self.keys = keys

    def key(self, caller: Caller, sha256: str, operation_name: str | None, variables: bytes) -> str:
        digest = hashlib.sha256((operation_name or "").encode() + b"\0" + variables).hexdigest()
        return self.keys.response(caller.role, caller.user_id, sha256, digest[:16])

    async def get(self, key: str) -> StoredResponse | None:
        try:
            [raw] = await self.kv.get_many([key])
        except CacheUnavailable:
            metrics.CACHE_REQUESTS.labels("response", "error").inc()
            return None
        if raw is None:
            metrics.CACHE_REQUESTS.labels("response", "miss").inc()
            return None
        etag, expires_ms, body = raw.split(b"\n", 2)
        metrics.CACHE_REQUESTS.labels("response", "hit").inc()
        return StoredResponse(etag.decode(), int(expires_ms) / 1000, body)

    async def put(
        self,
        key: str,
        response: StoredResponse,
        dependencies: Mapping[str, str],
        refresh_interval_s: float,
        now: datetime,
        versions: Mapping[str, str | None] | None = None,
    ) -> bool:
        """Stores until the oldest dependency turns stale; returns False when not stored."""
        if not dependencies:
            return False
        oldest = min(datetime.fromisoformat(stamp) for stamp in dependencies.values())
        ttl_s = (oldest - now).total_seconds() + refresh_interval_s
        ttl_s = min(ttl_s, response.expires_at - now.timestamp())
        if ttl_s < 1:
            return False
        raw = b"%s\n%d\n%s" % (
            response.etag.encode(),
            int(response.expires_at * 1000),
            response.body,
        )
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
        except CacheUnavailable:
            return False
        return True


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


def now_s() -> float:
    return time.time()
