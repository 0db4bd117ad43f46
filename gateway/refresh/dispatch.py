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
- a runner told to stop (SIGTERM) takes no new batch and finishes those it runs (its
  worker waits for them, up to GATEWAY_WORKER_STOP_WAIT_S); those it must give up are
  released at once, so another runner takes them at its next poll instead of after
  LEASE_S.

A cycle whose coordinator died is noticed by its lease: once the lease has expired (or
another cycle holds it), the first runner to see the dead cycle's phase still open (or
the next cycle, as it takes the lease) closes it, logs `refresh cycle abandoned` naming
it, and frees its arq job (lease.free_abandoned_job), which a live worker then runs again.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

import orjson
from redis.exceptions import RedisError

from gateway import metrics
from gateway.cache.keys import CYCLE_LEASE_KEY, CYCLE_OPEN_KEY, CYCLE_OPENED_CHANNEL, CycleKeys
from gateway.refresh.batches import WORK, CycleRun, MemoryInputs
from gateway.refresh.claims import (
    BATCH_ATTEMPTS,
    CLOSE,
    CYCLE_KEYS_TTL_S,
    eval_script,
    phase_state,
    run_batch,
)
from gateway.refresh.lease import free_abandoned_job, owner_of
from gateway.refresh.service import Guard
from resolvers.figures import iso_instant

if TYPE_CHECKING:
    from gateway.services import Services

log = logging.getLogger("gateway.refresh.dispatch")

BATCHES_PER_WORKER = 3  # a worker's batches at once: some compute while others wait on SQL
# In one process alone (embedded, --sync): the whole machine's share of the work.
LOCAL_BATCHES = 4
# How often an idle batch runner looks for an open phase when it missed the announcement
# of one (which wakes it at once, as the end of one of its batches does).
RUNNER_POLL_S = 0.2
RESUBSCRIBE_S = 1.0  # a runner whose subscription to opened phases failed tries again
# Batch runners serving in this process (a worker's: one), and the batches they run.
_runners_here = 0
_batches_here: set["asyncio.Task[str]"] = set()
RELEASE_WAIT_S = 5.0  # a runner stopped with batches running: their claims released within
SUBTREE_PHASES = ("cohorts", "directors")  # their results name the subtree keys written
POLL_S = 0.025  # how often the cycle's job looks at its batches (all claimed: the tail)


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
        await eval_script(self.redis, CLOSE, [CYCLE_OPEN_KEY], opened)
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


def batches_running() -> int:
    """Batches this process's runner is running (a stopping worker waits for them)."""
    return sum(not task.done() for task in _batches_here)


async def serve_batches(services: "Services", taking: Callable[[], bool]) -> None:
    """A worker's batch runner: batches of the open phase, BATCHES_PER_WORKER at a time,
    while `taking()` (a worker told to stop takes no new batch; those running finish).
    Cancelled, it cancels the batches still running, which release their claims.
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
        left = [task for task in _batches_here if not task.done()]
        for task in left:
            task.cancel()
        if left:
            await asyncio.wait(left, timeout=RELEASE_WAIT_S)
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener


async def until_set(event: asyncio.Event, timeout_s: float) -> None:
    """Until `event` is set, or `timeout_s` has passed. Not asyncio.wait_for: on Python
    3.11 it swallows a cancel that arrives as the event is set (a batch ending just as the
    worker is told to stop), and the runner, never cancelled, keeps the worker alive."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            await event.wait()


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
    running = _batches_here
    assert services.refresh is not None
    version = services.refresh.keys.version

    def ended(task: "asyncio.Task[str]") -> None:
        running.discard(task)
        freed.set()

    while True:
        await until_set(freed, RUNNER_POLL_S)
        freed.clear()
        if not taking() or len(running) >= BATCHES_PER_WORKER:
            continue
        try:
            raw, lease = await cast(Any, redis).mget(CYCLE_OPEN_KEY, CYCLE_LEASE_KEY)
            if raw is None:
                continue
            opened = orjson.loads(raw)
            if lease is None or lease.decode() != opened["token"]:
                await _abandoned(redis, raw, opened)
                continue
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


async def close_abandoned(redis: Any) -> None:
    """Called by a cycle that just took the lease: a phase still open is a dead cycle's
    (a cycle closes each of its phases), which no runner noticed before the lease passed."""
    raw = await redis.get(CYCLE_OPEN_KEY)
    if raw is not None:
        await _abandoned(redis, raw, orjson.loads(raw))


async def _abandoned(redis: Any, raw: bytes, opened: dict[str, Any]) -> None:
    """The open phase of a cycle that no longer holds the lease: its coordinator died (or
    stalled past its lease). Closed once, by whichever runner sees it first."""
    if not await eval_script(redis, CLOSE, [CYCLE_OPEN_KEY], raw):
        return
    job = owner_of(opened["token"])
    freed = bool(job) and await free_abandoned_job(redis, job)
    log.warning(
        "refresh cycle abandoned: its coordinator no longer holds the lease",
        extra={"cycle": opened["cycle"], "phase": opened["phase"], "job": job, "requeued": freed},
    )


Dispatcher = LocalDispatcher | QueueDispatcher
