"""Who runs a refresh cycle's batches: every worker (QueueDispatcher), or this process
(LocalDispatcher: embedded mode, and `gateway refresh --all --sync` without Redis).

With Redis, a phase's batches are written to the cycle's hash in the queue's Redis and
the phase is opened (`ddg:queue:cycle:open`: the cycle, its lease token, the phase and
its number of batches) and announced (`ddg:queue:cycle:opened`, pub/sub). Every worker's
batch runner (serve_batches, beside arq's job loop), woken by the announcement or at its
poll, takes batches of the open phase, BATCHES_PER_WORKER at a time; the cycle's own job
runs whatever is still unclaimed meanwhile, so a cycle completes with one worker. Not arq
jobs: a killed worker's arq job stays claimed for the job timeout (minutes), a batch claim
for LEASE_S. Each batch is run exactly once:

- a runner claims it first (`claim:<phase>:<i>`: a token with a LEASE_S lifetime, renewed
  while it runs), in one Lua script that also checks the cycle's lease is the cycle's own
  and that the batch is neither done nor out of attempts;
- it writes nothing before confirming, in one round trip, that both the cycle's lease and
  its claim are still its own, and it records its result only in the same check;
- a runner that fails releases its claim; one that dies (or stalls past LEASE_S) loses
  it: either way another runner takes the batch over, up to BATCH_ATTEMPTS claims. A batch
  still not done after that is lost: the cycle is reported incomplete and the next one
  covers it.
"""

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

import orjson
from redis.exceptions import RedisError

from gateway import metrics
from gateway.cache.keys import CYCLE_LEASE_KEY, CYCLE_OPEN_KEY, CYCLE_OPENED_CHANNEL, CycleKeys
from gateway.live.notices import unit
from gateway.refresh.batches import WORK, CycleRun, MemoryInputs, RedisInputs
from gateway.refresh.lease import LEASE_S, LeaseLost
from gateway.refresh.service import Guard
from resolvers.figures import iso_instant

if TYPE_CHECKING:
    from gateway.services import Services

log = logging.getLogger("gateway.refresh.dispatch")

BATCH_ATTEMPTS = 3  # claims of one batch before it is lost
BATCHES_PER_WORKER = 3  # a worker's batches at once: some compute while others wait on SQL
# In one process alone (embedded, --sync): the whole machine's share of the work.
LOCAL_BATCHES = 4
# How often an idle batch runner looks for an open phase when it missed the announcement
# of one (which wakes it at once, as the end of one of its batches does).
RUNNER_POLL_S = 0.2
RESUBSCRIBE_S = 1.0  # a runner whose subscription to opened phases failed tries again
# Batch runners serving in this process (a worker's: one).
_runners_here = 0
SUBTREE_PHASES = ("cohorts", "directors")  # their results name the subtree keys written
POLL_S = 0.025  # how often the cycle's job looks at its batches (all claimed: the tail)
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


def chunks(items: Sequence[Any], size: int) -> list[list[Any]]:
    return [list(items[start : start + size]) for start in range(0, len(items), size)]


# A phase ends with its slowest runner. Its batches are taken in order, so the last ones
# are made smaller (guided self-scheduling): none holds more than 1/TAPER_RUNNERS of what
# is left (the batches a few workers run at once), down to 1/TAPER_FLOOR of the size.
TAPER_RUNNERS = 8
TAPER_FLOOR = 8


def tapered(items: Sequence[Any], size: int) -> list[list[Any]]:
    """`items` in batches of `size`, the last ones shrinking: every runner finishes its last
    batch at about the same time instead of one running a whole batch alone."""
    out: list[list[Any]] = []
    floor = max(1, size // TAPER_FLOOR)
    start = 0
    while start < len(items):
        left = len(items) - start
        step = min(size, max(floor, -(-left // TAPER_RUNNERS)))
        out.append(list(items[start : start + step]))
        start += step
    return out


@dataclass
class PhaseResult:
    results: list[dict[str, Any] | None]  # by batch; None: lost
    seconds: float

    @property
    def lost(self) -> list[int]:
        return [i for i, r in enumerate(self.results) if r is None]

    def done(self) -> list[dict[str, Any]]:
        return [r for r in self.results if r is not None]


class LocalDispatcher:
    """Every batch in this process, LOCAL_BATCHES at a time (some compute while the others'
    statements run); a failure fails the cycle."""

    def __init__(self, services: "Services", run: CycleRun) -> None:
        self.services = services
        self.run = run
        self.subtree_keys: set[str] = set()

    @staticmethod
    def cut(items: Sequence[Any], size: int) -> list[list[Any]]:
        """Batches of `size`: one process keeps its core busy to the end of a phase."""
        return chunks(items, size)

    async def run_phase(
        self, phase: str, payloads: Sequence[Any], guard: Guard | None, progress: Any = None
    ) -> PhaseResult:
        started = time.perf_counter()
        results: list[dict[str, Any] | None] = [None] * len(payloads)
        slots = asyncio.Semaphore(LOCAL_BATCHES)

        async def one(index: int, payload: Any) -> None:
            async with slots:
                try:
                    result = await WORK[phase](self.services, self.run, payload, guard)
                except BaseException:
                    metrics.REFRESH_BATCHES.labels(phase, "failed").inc()
                    raise
            metrics.REFRESH_BATCHES.labels(phase, "done").inc()
            results[index] = result
            if phase in SUBTREE_PHASES:
                self.subtree_keys.update(result["written"])
            if progress is not None:
                progress.update(len(payload))

        tasks = [asyncio.ensure_future(one(i, p)) for i, p in enumerate(payloads)]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        return PhaseResult(results, time.perf_counter() - started)

    async def written(self) -> set[str]:
        """Subtree keys the subtree phases' batches wrote (done ones)."""
        return set(self.subtree_keys)

    async def close(self) -> None:
        return None


def local_run(cycle_id: str, now: datetime) -> CycleRun:
    return CycleRun(cycle_id, now, MemoryInputs())


class QueueDispatcher:
    """Batches for every worker's batch runner; the cycle's job runs the unclaimed ones."""

    def __init__(self, services: "Services", run: CycleRun, token: str) -> None:
        assert services.redis is not None
        self.services = services
        self.redis = services.redis
        self.run = run
        self.token = token
        self.keys = CycleKeys(run.id)

    @staticmethod
    def cut(items: Sequence[Any], size: int) -> list[list[Any]]:
        """In a worker: batches of `size`, the last ones shrinking (tapered), so the workers
        end a phase together. In a process without a batch runner (`refresh --all --sync`,
        the embedded gateway), whose cycle's job runs its batches one at a time unless
        workers help: batches of `size` (fewer statements)."""
        return tapered(items, size) if _runners_here else chunks(items, size)

    async def run_phase(
        self, phase: str, payloads: Sequence[Any], guard: Guard | None, progress: Any = None
    ) -> PhaseResult:
        started = time.perf_counter()
        fields = [f"{phase}:{i}" for i in range(len(payloads))]
        if not fields:
            return PhaseResult([], 0.0)
        opened = orjson.dumps(
            {
                "cycle": self.run.id,
                "token": self.token,
                "phase": phase,
                "batches": len(fields),
                "now": iso_instant(self.run.now),
                # Runners of another cache version (a rolling upgrade) leave it alone: they
                # would write their version's keys, which this cycle's version never reads.
                "version": self.services.refresh.keys.version if self.services.refresh else "",
            }
        )
        async with self.redis.pipeline(transaction=False) as pipe:
            encoded = [orjson.dumps(payload) for payload in payloads]
            pipe.hset(self.keys.batches, mapping=dict(zip(fields, encoded, strict=True)))
            for key in (self.keys.batches, self.keys.inputs):
                pipe.expire(key, CYCLE_KEYS_TTL_S)
            pipe.set(CYCLE_OPEN_KEY, opened, ex=CYCLE_KEYS_TTL_S)
            pipe.publish(CYCLE_OPENED_CHANNEL, phase)  # every batch runner looks now
            await pipe.execute()
        counted: set[str] = set()
        while True:
            if guard is not None:
                await guard()
            done, attempts, claimed = await phase_state(self.redis, self.keys, fields)
            if progress is not None:
                for f in fields:
                    if f in done and f not in counted:
                        counted.add(f)
                        progress.update(len(payloads[int(f.rsplit(":", 1)[1])]))
            pending = [f for f in fields if f not in done]
            runnable = [
                f for f in pending if f not in claimed and attempts.get(f, 0) < BATCH_ATTEMPTS
            ]
            if runnable:
                # The cycle's own job works too: with no runner free, it runs them all.
                await run_batch(
                    self.services, self.run.id, self.token, phase, fields.index(runnable[0]),
                    self.run.now,
                )  # fmt: skip
                continue
            if not pending or all(f not in claimed for f in pending):
                break  # every batch done, or the rest out of attempts (lost)
            await asyncio.sleep(POLL_S)
        await _eval(self.redis, CLOSE, [CYCLE_OPEN_KEY], opened)
        results = [orjson.loads(done[f]) if f in done else None for f in fields]
        return PhaseResult(results, time.perf_counter() - started)

    async def written(self) -> set[str]:
        """Subtree keys the subtree phases' batches wrote (done ones)."""
        found: set[str] = set()
        found_all = await cast(Any, self.redis).hgetall(self.keys.done)
        for field, raw in found_all.items():
            name = field.decode() if isinstance(field, bytes) else field
            if name.split(":", 1)[0] in SUBTREE_PHASES:
                found.update(orjson.loads(raw)["written"])
        return found

    async def close(self) -> None:
        """The cycle's keys (batch runners then find nothing to do)."""
        with contextlib.suppress(RedisError, OSError):
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.delete(self.keys.batches, self.keys.done, self.keys.attempts, self.keys.inputs)
                await pipe.execute()


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


async def serve_batches(services: "Services", taking: Callable[[], bool]) -> None:
    """A worker's batch runner: batches of the open phase, BATCHES_PER_WORKER at a time,
    while `taking()` (a worker told to stop takes no new batch; those running finish).
    Rides out Redis outages (the worker logs them): it looks again at its next poll."""
    redis = services.redis
    assert redis is not None
    global _runners_here
    # A batch ended, or a phase was opened: look at once, not at the next poll.
    freed = asyncio.Event()
    listener = asyncio.ensure_future(_phases_opened(redis, freed))
    _runners_here += 1
    try:
        await _serve(redis, services, taking, freed)
    finally:
        _runners_here -= 1
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener


async def _phases_opened(redis: Any, freed: asyncio.Event) -> None:
    """Sets `freed` whenever a coordinator opens a phase (CYCLE_OPENED_CHANNEL), so every
    runner starts its batches at once. Polling covers what it misses (Redis away, or the
    subscription being renewed)."""
    while True:
        with contextlib.suppress(RedisError, OSError):
            async with redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                await pubsub.subscribe(CYCLE_OPENED_CHANNEL)
                while True:
                    # With a timeout: no read outlasts the client's socket timeout.
                    if await pubsub.get_message(True, timeout=RESUBSCRIBE_S) is not None:
                        freed.set()
        await asyncio.sleep(RESUBSCRIBE_S)


async def _serve(
    redis: Any,
    services: "Services",
    taking: Callable[[], bool],
    freed: asyncio.Event,
) -> None:
    running: set[asyncio.Task[str]] = set()
    assert services.refresh is not None
    version = services.refresh.keys.version

    def ended(task: "asyncio.Task[str]") -> None:
        running.discard(task)
        freed.set()

    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(freed.wait(), RUNNER_POLL_S)
        freed.clear()
        if not taking() or len(running) >= BATCHES_PER_WORKER:
            continue
        try:
            raw = await cast(Any, redis).get(CYCLE_OPEN_KEY)
            if raw is None:
                continue
            opened = orjson.loads(raw)
            if opened.get("version") != version:
                continue
            keys = CycleKeys(opened["cycle"])
            fields = [f"{opened['phase']}:{i}" for i in range(opened["batches"])]
            done, attempts, claimed = await phase_state(redis, keys, fields)
        except (RedisError, OSError):
            continue
        for i, f in enumerate(fields):
            if len(running) >= BATCHES_PER_WORKER:
                break
            if f in done or f in claimed or attempts.get(f, 0) >= BATCH_ATTEMPTS:
                continue
            task = asyncio.ensure_future(
                run_batch(
                    services,
                    opened["cycle"],
                    opened["token"],
                    opened["phase"],
                    i,
                    datetime.fromisoformat(opened["now"]),
                )  # fmt: skip
            )
            running.add(task)
            task.add_done_callback(ended)
            claimed.add(f)


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
        await _eval(
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
        if not await _eval(redis, HOLDS, [CYCLE_LEASE_KEY, claim_key], token, claim_token, ttl_ms):
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
        recorded = await _eval(
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
    except Exception as exc:
        metrics.REFRESH_BATCHES.labels(phase, "failed").inc()
        with contextlib.suppress(RedisError, OSError):
            await _eval(redis, RELEASE, [claim_key], claim_token)
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


async def _eval(redis: Any, script: str, keys: list[str], *args: Any) -> Any:
    """One Lua script on the queue's Redis (single-instance: scripts may touch any key)."""
    return await redis.eval(script, len(keys), *keys, *args)


Dispatcher = LocalDispatcher | QueueDispatcher
