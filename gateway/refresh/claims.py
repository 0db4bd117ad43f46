"""A batch's claim: taken, held, recorded and released in one round trip each, so that a
batch of a cycle is run exactly once by whichever runner holds it (gateway/refresh/
dispatch.py says who runs batches).
"""

import asyncio
import contextlib
import logging
import os
import time
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

import orjson
from redis.exceptions import RedisError

from gateway import metrics
from gateway.cache.keys import CYCLE_LEASE_KEY, CycleKeys
from gateway.live.notices import unit
from gateway.refresh.batches import WORK, CycleRun, RedisInputs
from gateway.refresh.lease import LEASE_S, LeaseLost

if TYPE_CHECKING:
    from gateway.services import Services

log = logging.getLogger("gateway.refresh.claims")

BATCH_ATTEMPTS = 3  # claims of one batch before it is lost
CYCLE_KEYS_TTL_S = 3600  # a cycle's keys outlive any cycle; deleted at its end anyway

# KEYS: cycle lease, claim, done, attempts. ARGV: lease token, claim token, field,
# claim ttl ms, most attempts. → attempt number, or -1 cycle over, -2 done, -3 out of
# attempts, -4 claimed by another runner.
CLAIM = """
if redis.call('get', KEYS[1]) ~= ARGV[1] then return -1 end
if redis.call('hexists', KEYS[3], ARGV[3]) == 1 then return -2 end
if tonumber(redis.call('hget', KEYS[4], ARGV[3]) or '0') >= tonumber(ARGV[5]) then
  return -3
end
if not redis.call('set', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[4]) then return -4 end
redis.call('expire', KEYS[4], ARGV[6])
return redis.call('hincrby', KEYS[4], ARGV[3], 1)
"""
# KEYS: cycle lease, claim. ARGV: lease token, claim token, claim ttl ms. → 1 if both
# are still ours (the claim extended), else 0.
HOLDS = """
if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end
if redis.call('get', KEYS[2]) ~= ARGV[2] then return 0 end
redis.call('pexpire', KEYS[2], ARGV[3])
return 1
"""
# KEYS: cycle lease, claim, done. ARGV: lease token, claim token, field, result, ttl s.
DONE = """
if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end
if redis.call('get', KEYS[2]) ~= ARGV[2] then return 0 end
redis.call('hset', KEYS[3], ARGV[3], ARGV[4])
redis.call('expire', KEYS[3], ARGV[5])
redis.call('del', KEYS[2])
return 1
"""
# KEYS: the open phase. ARGV: what this cycle opened.
CLOSE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""
# KEYS: claim. ARGV: claim token.
RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


async def phase_state(
    redis: Any, keys: CycleKeys, fields: list[str]
) -> tuple[dict[str, bytes], dict[str, int], set[str]]:
    """Of these batches: the results of those done, the claims made, those claimed now."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hmget(keys.done, fields)
        pipe.hmget(keys.attempts, fields)
        for f in fields:
            pipe.exists(keys.claim(f))
        found = await pipe.execute()
    done = {f: raw for f, raw in zip(fields, found[0], strict=True) if raw is not None}
    attempts = {f: int(n) for f, n in zip(fields, found[1], strict=True) if n is not None}
    claimed = {f for f, n in zip(fields, found[2:], strict=True) if n}
    return done, attempts, claimed


async def run_batch(
    services: "Services", cycle_id: str, token: str, phase: str, index: int, now: datetime
) -> str:
    """Claims batch `index` of the cycle's `phase`, runs it and records its result; returns
    what happened: done, failed, or why it was not run (cycle over, done, out of attempts,
    claimed)."""
    redis = services.redis
    assert redis is not None
    keys = CycleKeys(cycle_id)
    field = f"{phase}:{index}"
    claim_key = keys.claim(field)
    claim_token = f"{os.getpid()}:{uuid.uuid4().hex}"  # whose claim it is, for operators
    ttl_ms = int(LEASE_S * 1000)
    attempt = int(
        await eval_script(
            redis,
            CLAIM,
            [CYCLE_LEASE_KEY, claim_key, keys.done, keys.attempts],
            token,
            claim_token,
            field,
            ttl_ms,
            BATCH_ATTEMPTS,
            CYCLE_KEYS_TTL_S,
        )
    )
    if attempt < 0:
        return {-1: "cycle over", -2: "done", -3: "out of attempts", -4: "claimed"}[attempt]

    async def holds() -> None:
        if not await eval_script(
            redis, HOLDS, [CYCLE_LEASE_KEY, claim_key], token, claim_token, ttl_ms
        ):
            raise LeaseLost(f"batch {field} of cycle {cycle_id}: claim or cycle lease lost")

    async def keep() -> None:
        while True:
            await asyncio.sleep(LEASE_S / 3)
            with contextlib.suppress(LeaseLost, RedisError, OSError):
                await holds()

    keeper = asyncio.ensure_future(keep())
    started = time.perf_counter()
    extra = {"cycle": cycle_id, "phase": phase, "batch": index, "attempt": attempt}
    try:
        raw = await cast(Any, redis).hget(keys.batches, field)
        if raw is None:
            raise LeaseLost(f"batch {field} of cycle {cycle_id} has no payload")
        run = CycleRun(cycle_id, now, RedisInputs(redis, keys))
        # A batch tells no one of its writes (in the cycle's own job, it joins the cycle's
        # unit): the cycle's one notice, at its end, names them (gateway/live).
        async with unit(None):
            result = await WORK[phase](services, run, orjson.loads(raw), holds)
        recorded = await eval_script(
            redis,
            DONE,
            [CYCLE_LEASE_KEY, claim_key, keys.done],
            token,
            claim_token,
            field,
            orjson.dumps(result),
            CYCLE_KEYS_TTL_S,
        )
        if not recorded:
            raise LeaseLost(f"batch {field} of cycle {cycle_id}: claim or cycle lease lost")
    except asyncio.CancelledError:
        # Given up (its worker stops): released now, for another runner's next poll.
        with contextlib.suppress(RedisError, OSError):
            await asyncio.shield(eval_script(redis, RELEASE, [claim_key], claim_token))
        log.info("refresh batch released", extra=extra)
        raise
    except Exception as exc:
        metrics.REFRESH_BATCHES.labels(phase, "failed").inc()
        with contextlib.suppress(RedisError, OSError):
            await eval_script(redis, RELEASE, [claim_key], claim_token)
        log.warning(
            "refresh batch failed",
            extra={**extra, "error": f"{type(exc).__name__}: {exc}"},
            exc_info=not isinstance(exc, LeaseLost | RedisError | OSError),
        )
        return "failed"
    finally:
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keeper
    metrics.REFRESH_BATCHES.labels(phase, "done").inc()
    log.info(
        "refresh batch done",
        extra={**extra, "duration_s": round(time.perf_counter() - started, 3)},
    )
    return "done"


async def eval_script(redis: Any, script: str, keys: list[str], *args: Any) -> Any:
    """One Lua script on the queue's Redis (single-instance: scripts may touch any key)."""
    return await redis.eval(script, len(keys), *keys, *args)
