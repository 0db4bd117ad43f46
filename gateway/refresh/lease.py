"""One refresh cycle at a time, across every worker: a lease in the queue's Redis.

The lease is redis-py's Lock (a random token under one key with a TTL; extend and
release compare the token in Lua), kept alive while the cycle runs. A cycle writes
nothing without first confirming, in one round trip, that the lease is still its own:
so a cycle whose worker stalled, lost Redis, or saw Redis restart empty stops at its
next write instead of overlapping the cycle that took over.

A cycle that finds the lease held waits in the one `next` slot and runs when the lease is
free; with the slot taken too, it is skipped (the waiting cycle starts after it was asked
for, which covers it). So overlapping ticks never pile up.

A lease's token names the arq job holding it (`<job id>|<random>`). A worker that dies
holding it leaves its job "in progress" in arq for the job timeout (minutes), and the job
id blocks `gateway refresh --all` meanwhile: once the lease has expired, the job is
recognised as abandoned (in progress, holding neither the lease nor the `next` slot) and
its in-progress mark removed, so that a live worker runs it again at its next poll.
"""

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from arq.constants import in_progress_key_prefix
from redis.asyncio import Redis
from redis.asyncio.lock import Lock
from redis.exceptions import LockError, RedisError

from gateway.cache.keys import CYCLE_LEASE_KEY, CYCLE_NEXT_KEY

log = logging.getLogger("gateway.refresh.lease")

# Lease lifetime, seconds: how long a dead holder blocks the next cycle. Renewed every
# third of it, so a holder survives two missed renewals (a busy event loop).
LEASE_S = 15.0
WAIT_POLL_S = 0.25
REDIS_ERRORS = (RedisError, OSError, asyncio.TimeoutError)
OWNER_SEPARATOR = "|"
# KEYS: the job's in-progress mark, the lease, the next slot. ARGV: `<job id>|`. → 1 when
# the mark was removed: the job is in progress but holds neither the lease nor the slot.
FREE_ABANDONED = """
if redis.call('exists', KEYS[1]) == 0 then return 0 end
for i = 2, 3 do
  local token = redis.call('get', KEYS[i])
  if token and string.sub(token, 1, string.len(ARGV[1])) == ARGV[1] then return 0 end
end
redis.call('del', KEYS[1])
return 1
"""


def owner_of(token: str) -> str:
    """The arq job id a lease token names ('' when it names none)."""
    owner, separator, _ = token.rpartition(OWNER_SEPARATOR)
    return owner if separator else ""


async def free_abandoned_job(redis: Any, job_id: str) -> bool:
    """Removes arq's in-progress mark of the refresh job `job_id` when that job holds
    neither the cycle lease nor the next slot: its worker died (or it is between its start
    and its lease, milliseconds: a second run then waits for the lease like any other)."""
    freed = await redis.eval(
        FREE_ABANDONED,
        3,
        in_progress_key_prefix + job_id,
        CYCLE_LEASE_KEY,
        CYCLE_NEXT_KEY,
        job_id + OWNER_SEPARATOR,
    )
    return bool(freed)


class LeaseLost(Exception):
    """The cycle no longer holds the lease: it must stop writing."""


class Lease:
    """Held by one cycle; `confirm()` before each write."""

    def __init__(
        self,
        redis: Redis | None,
        key: str = CYCLE_LEASE_KEY,
        ttl_s: float = LEASE_S,
        owner: str = "",
    ):
        self.redis = redis
        self.key = key
        self.ttl_s = ttl_s
        self.owner = owner  # the arq job holding it, named in its token
        self.token: str | None = None
        self.lost: str | None = None
        self._lock = (
            Lock(redis, key, timeout=ttl_s, blocking=False, thread_local=False)
            if redis is not None
            else None
        )
        self._keeper: asyncio.Task[None] | None = None

    async def try_acquire(self) -> bool:
        if self._lock is None:
            return True
        token = f"{self.owner}{OWNER_SEPARATOR}{uuid.uuid4().hex}"
        if not await self._lock.acquire(blocking=False, token=token):
            return False
        token = self._lock.local.token
        self.token = token.decode() if isinstance(token, bytes) else str(token)
        self._keeper = asyncio.ensure_future(self._keep())
        return True

    async def _keep(self) -> None:
        assert self._lock is not None
        while self.lost is None:
            await asyncio.sleep(self.ttl_s / 3)
            try:
                await self._lock.reacquire()
            except (LockError, *REDIS_ERRORS) as exc:
                self.lost = f"{type(exc).__name__}: {exc}"

    async def confirm(self) -> None:
        """Raises LeaseLost unless the lease is still ours (and extends it)."""
        if self._lock is None:
            return
        if self.lost is None:
            try:
                await self._lock.reacquire()
            except (LockError, *REDIS_ERRORS) as exc:
                self.lost = f"{type(exc).__name__}: {exc}"
        if self.lost is not None:
            raise LeaseLost(self.lost)

    async def release(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
        if self._lock is not None and self.token is not None and self.lost is None:
            with contextlib.suppress(LockError, *REDIS_ERRORS):
                await self._lock.release()
        self.token = None


class Skipped(Exception):
    """This cycle is not needed: one is running and another already waits to follow it
    (or, for a cold start, a completed cycle is recorded)."""

    def __init__(self, reason: str = "a cycle is running and another waits to follow it"):
        super().__init__(reason)
        self.reason = reason


@contextlib.asynccontextmanager
async def cycle_lease(
    redis: Redis | None, max_wait_s: float, owner: str = ""
) -> AsyncIterator[Lease]:
    """The lease for one cycle (run by the arq job `owner`): at once, or after the running
    cycle (from the `next` slot).

    Raises Skipped when both are taken, TimeoutError after `max_wait_s` of waiting."""
    lease = Lease(redis, owner=owner)
    if not await lease.try_acquire():
        waiting = Lease(redis, CYCLE_NEXT_KEY, owner=owner)
        if not await waiting.try_acquire():
            raise Skipped()
        try:
            deadline = time.monotonic() + max_wait_s
            while not await lease.try_acquire():
                await waiting.confirm()
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the running refresh cycle outlasted {max_wait_s} s")
                await asyncio.sleep(WAIT_POLL_S)
        finally:
            await waiting.release()
    try:
        yield lease
    finally:
        await lease.release()
