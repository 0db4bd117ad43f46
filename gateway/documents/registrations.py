"""How many APQ documents one caller, and everyone together, may register.

A registration keeps a document for GATEWAY_APQ_TTL_S (a day by default), so a flood of
distinct documents would cost memory for that long. Two fixed windows bound it:

- per caller (user id), per GATEWAY_APQ_REGISTRATION_WINDOW_S: at most
  GATEWAY_APQ_MAX_REGISTRATIONS documents and GATEWAY_APQ_MAX_REGISTRATION_BYTES bytes;
- everyone together, per GATEWAY_APQ_TTL_S: at most GATEWAY_APQ_MAX_REGISTRATIONS_TOTAL
  documents and GATEWAY_APQ_MAX_REGISTRATION_BYTES_TOTAL bytes, so the store never holds
  more than twice that (two windows' worth live at once).

Counted in Redis across replicas (one hash per window: count and bytes, incremented then
compared, so concurrent registrations cannot all pass); in process memory in embedded
mode. A document already registered costs nothing. When Redis cannot be reached the count
is skipped: the registration itself would be skipped too (gateway/documents/persisted.py).
"""

import logging
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger("gateway.documents.registrations")

QUOTA_KEY_PREFIX = "gateway:apq-quota:"


@dataclass(frozen=True)
class Quota:
    documents: int
    bytes: int
    window_s: int


@dataclass(frozen=True)
class Exceeded:
    """A registration refused: which bound, and when its window ends (seconds)."""

    what: str
    retry_after_s: int


class Registrations:
    def __init__(
        self,
        redis: aioredis.Redis | aioredis.RedisCluster | None,
        *,
        per_caller: Quota,
        total: Quota,
    ) -> None:
        self.redis = redis
        self.per_caller = per_caller
        self.total = total
        # Embedded mode: per window length, the current window and its counts by key.
        self._memory: dict[str, tuple[str, dict[str, tuple[int, int]]]] = {}

    async def admit(self, user_id: int, size: int, now_s: float) -> Exceeded | None:
        """Counts one registration of `size` bytes by `user_id`; None when within bounds."""
        for who, quota in ((str(user_id), self.per_caller), ("all", self.total)):
            window = int(now_s // quota.window_s)
            key = f"{QUOTA_KEY_PREFIX}{who}:{quota.window_s}:{window}"
            counted = await self._count(key, size, quota.window_s)
            if counted is None:
                return None  # Redis unreachable: the document will not be kept either
            documents, total_bytes = counted
            if documents > quota.documents or total_bytes > quota.bytes:
                retry_after_s = max(int((window + 1) * quota.window_s - now_s), 1)
                scope = "this caller" if who != "all" else "this gateway"
                limit = f"{quota.documents} documents and {quota.bytes} bytes"
                return Exceeded(
                    f"{scope} may register {limit} per {quota.window_s} s", retry_after_s
                )
        return None

    async def _count(self, key: str, size: int, window_s: int) -> tuple[int, int] | None:
        if self.redis is None:
            return self._count_in_memory(key, size)
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.hincrby(key, "documents", 1)
                pipe.hincrby(key, "bytes", size)
                pipe.expire(key, window_s)
                documents, total_bytes, _ = await pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("APQ registration quota not counted: %s", exc)
            return None
        return int(documents), int(total_bytes)

    def _count_in_memory(self, key: str, size: int) -> tuple[int, int]:
        """Embedded mode: every count of a window length is dropped when its next window
        opens (so memory holds the callers of the current windows only)."""
        _, kind, window = key.rsplit(":", 2)
        counts = self._memory.get(kind)
        if counts is None or counts[0] != window:
            counts = self._memory[kind] = (window, {})
        documents, total_bytes = counts[1].get(key, (0, 0))
        counts[1][key] = (documents + 1, total_bytes + size)
        return counts[1][key]
