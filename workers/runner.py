"""arq's Worker, kept up through Redis outages of any length.

arq's own main loop ends at the first Redis error, and the process exits with a
traceback. This subclass replaces only that loop (arq's job running, cron and signal
handling are unchanged): a Redis error sends it into an outage, logged once when Redis
goes away and once when it is back, with backoff between attempts (never more than
BACKOFF_CAP_S apart); it then resumes polling jobs and cron. Cron ticks missed during the
outage are skipped, not run in a burst; `on_connect` (the cold-start check) runs again.
Jobs that were running when Redis went away end on their own (a refresh cycle stops at its
next write: gateway/refresh/lease.py).

`beside` tasks run next to the job loop from start-up to shutdown (the cycle's batch runner,
gateway/refresh/dispatch.py), told whether the worker still takes new work: not once it
was told to stop. On SIGTERM the worker waits (up to arq's job completion wait) for its
jobs and for what `busy()` says the beside tasks still run; then it cancels them.
"""

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from arq.connections import log_redis_info
from arq.utils import poll
from arq.worker import Worker
from redis.backoff import EqualJitterBackoff
from redis.exceptions import RedisError

from workers import heartbeat, metrics

log = logging.getLogger("workers.runner")
arq_log = logging.getLogger("arq.worker")

REDIS_ERRORS = (RedisError, OSError, asyncio.TimeoutError)
BACKOFF_BASE_S = 0.25
BACKOFF_CAP_S = 5.0
STOP_POLL_S = 0.05
BESIDE_STOP_S = 10.0  # cancelled, the batch runner releases its claims within 5 s
STOP_SLACK_S = 75.0  # closing: the upstream reads in flight end within their 60 s timeout

Hook = Callable[[dict[str, Any]], Awaitable[None]]
Beside = Callable[[dict[str, Any], Callable[[], bool]], Awaitable[None]]


class ResilientWorker(Worker):
    def __init__(
        self,
        *args: Any,
        heartbeat_file: Path | None = None,
        on_connect: Hook | None = None,
        beside: Sequence[Beside] = (),
        busy: Callable[[], bool] = lambda: False,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.heartbeat_file = heartbeat_file
        self.on_connect = on_connect
        self.beside = list(beside)
        self.busy = busy
        self._beside_tasks: list[asyncio.Task[None]] = []
        self.redis_up = False
        self._backoff = EqualJitterBackoff(cap=BACKOFF_CAP_S, base=BACKOFF_BASE_S)
        self._started_up = False
        self._stop_watch: asyncio.TimerHandle | None = None
        self._stop_by: float | None = None  # loop time: the job loop ends by then

    async def main(self) -> None:
        beating = asyncio.ensure_future(self._beat()) if self.heartbeat_file else None
        try:
            await self._serve()
        finally:
            tasks = [t for t in [beating, *self._beside_tasks] if t is not None]
            for task in tasks:
                task.cancel()
            if tasks:
                # Bounded: a task that ignored its cancel must not keep the worker alive.
                done, stuck = await asyncio.wait(tasks, timeout=BESIDE_STOP_S)
                for task in done:
                    if not task.cancelled() and task.exception() is not None:
                        log.error("a task beside the jobs failed", exc_info=task.exception())
                if stuck:
                    log.error(
                        "tasks beside the jobs still ran after being cancelled; stopping anyway",
                        extra={"tasks": len(stuck), "waited_s": BESIDE_STOP_S},
                    )

    def handle_sig(self, signum: signal.Signals) -> None:
        # Told to stop: the batch runner takes no new batch from now on, whatever becomes
        # of the cancel arq sends the job loop next.
        self.allow_pick_jobs = False
        self._watch_stop()
        super().handle_sig(signum)

    def handle_sig_wait_for_completion(self, signum: signal.Signals) -> None:
        self._watch_stop()
        super().handle_sig_wait_for_completion(signum)

    def _watch_stop(self) -> None:
        """A stop still under way past its bound (arq's job completion wait, the beside
        tasks' BESIDE_STOP_S, then STOP_SLACK_S for closing) logs what still runs, with
        where each task waits: the one place to look when a worker does not exit."""
        if self._stop_watch is None:
            loop = asyncio.get_running_loop()
            self._stop_by = loop.time() + self._job_completion_wait
            bound_s = self._job_completion_wait + BESIDE_STOP_S + STOP_SLACK_S
            self._stop_watch = loop.call_later(bound_s, _log_running_tasks, bound_s)

    async def _serve(self) -> None:
        await self._until_connected()
        while True:
            try:
                if not self._started_up:
                    arq_log.info(
                        "Starting worker for %d functions: %s",
                        len(self.functions),
                        ", ".join(self.functions),
                    )
                    await log_redis_info(self.pool, arq_log.info)
                    self.ctx["redis"] = self.pool
                    if self.on_startup:
                        await self.on_startup(self.ctx)
                    self._started_up = True
                    self._beside_tasks = [
                        asyncio.ensure_future(task(self.ctx, lambda: self.allow_pick_jobs))
                        for task in self.beside
                    ]
                    await self._connected()
                async for _ in poll(self.poll_delay_s):
                    if self._stop_due():
                        return
                    await self._poll_iteration()
                    if self.burst and await self._burst_done():
                        return
            except REDIS_ERRORS as exc:
                await self._ride_out(exc)

    def _stop_due(self) -> bool:
        """Told to stop, and its wait is over: the job loop ends by itself (its jobs
        cancelled, as arq's stop does), without relying on arq's cancel of it alone. That
        cancel has been seen lost under load: the worker logged its stop, then polled on
        and never exited. The loop's polls write to Redis through redis-py, which wraps
        each send in asyncio.wait_for (socket_timeout is set); on Python 3.11, wait_for
        returns the send's result instead of raising when the cancel lands after the send
        has finished (CANCEL_LOST in tests/system/test_cluster.py; fixed in 3.12)."""
        if self._stop_by is None or asyncio.get_running_loop().time() < self._stop_by:
            return False
        for task in self.tasks.values():
            if not task.done():
                task.cancel()
        return True

    async def _sleep_until_tasks_complete(self) -> None:
        """arq's wait on SIGTERM (within its job completion wait), for the beside tasks'
        work too: a batch finished is one that no other worker redoes."""
        while self.tasks or self.busy():  # noqa: ASYNC110 (arq's own wait polls too)
            await asyncio.sleep(STOP_POLL_S)

    async def _burst_done(self) -> bool:
        """arq's own end of a burst: the job budget spent, or the queue empty."""
        if 0 <= self.max_burst_jobs <= self._jobs_started():
            await asyncio.gather(*self.tasks.values())
            return True
        if await self.pool.zcard(self.queue_name) == 0:
            await asyncio.gather(*self.tasks.values())
            return True
        return False

    async def _ride_out(self, error: BaseException) -> None:
        """After a Redis error: an outage until Redis answers again; else carry on."""
        try:
            await self.pool.ping()
        except REDIS_ERRORS:
            await self._until_connected(error)
            self._skip_missed_cron()
            await self._connected()
            return
        # Redis answers: one failed command (or a job that failed on one), not an outage.
        log.warning("a redis command failed; carrying on", extra={"error": _describe(error)})

    async def _until_connected(self, error: BaseException | None = None) -> None:
        down_since = None
        failures = 0
        while True:
            if error is not None:
                if down_since is None:
                    down_since = time.monotonic()
                    self.redis_up = False
                    metrics.REDIS_UP.set(0)
                    metrics.REDIS_OUTAGES.inc()
                    log.warning(
                        "redis went away; retrying with backoff",
                        extra={"error": _describe(error), "backoff_cap_s": BACKOFF_CAP_S},
                    )
                await asyncio.sleep(self._backoff.compute(failures))
                failures += 1
            try:
                await self.pool.ping()
                break
            except REDIS_ERRORS as exc:
                error = exc
        self.redis_up = True
        metrics.REDIS_UP.set(1)
        if down_since is not None:
            self._forget_failed_jobs()
            seconds = time.monotonic() - down_since
            metrics.REDIS_OUTAGE_SECONDS.inc(seconds)
            log.info(
                "redis is back",
                extra={"down_s": round(seconds, 3), "attempts": failures},
            )

    def _forget_failed_jobs(self) -> None:
        """Jobs whose own Redis bookkeeping failed during the outage: already logged by
        arq, their error is not one more (arq re-runs them once their claim expires)."""
        for job_id, task in list(self.tasks.items()):
            if task.done():
                del self.tasks[job_id]
                if not task.cancelled():
                    task.exception()

    async def _connected(self) -> None:
        if self.on_connect is not None and not self.burst:
            await self.on_connect(self.ctx)

    def _skip_missed_cron(self) -> None:
        now = datetime.now(tz=self.timezone)
        for cron_job in self.cron_jobs:
            if cron_job.next_run is not None and cron_job.next_run < now:
                cron_job.calculate_next(now)

    async def _beat(self) -> None:
        assert self.heartbeat_file is not None
        while True:
            try:
                heartbeat.beat(
                    self.heartbeat_file,
                    redis="up" if self.redis_up else "down",
                    jobs_running=sum(not t.done() for t in self.tasks.values()),
                    jobs_complete=self.jobs_complete,
                    jobs_failed=self.jobs_failed,
                )
                metrics.HEARTBEAT.set(time.time())
            except OSError:
                log.exception("could not write the heartbeat file")
            await asyncio.sleep(heartbeat.HEARTBEAT_S)

    async def close(self) -> None:
        """arq's close, minus its failures when Redis is away at shutdown."""
        try:
            await self._close()
        finally:
            if self._stop_watch is not None:
                self._stop_watch.cancel()  # stopped within its bound

    async def _close(self) -> None:
        if not self._handle_signals:
            self.handle_sig(signal.SIGUSR1)
        if self.heartbeat_file is not None:
            heartbeat.forget(self.heartbeat_file)
        if not self._pool:
            return
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        with contextlib.suppress(*REDIS_ERRORS):
            await self.pool.delete(self.health_check_key)
        if self.on_shutdown and self._started_up:
            await self.on_shutdown(self.ctx)
        with contextlib.suppress(*REDIS_ERRORS):
            await self.pool.aclose(close_connection_pool=True)
        self._pool = None


def _log_running_tasks(bound_s: float) -> None:
    tasks = [t for t in asyncio.all_tasks() if not t.done()]
    log.error(
        "still stopping past the stop's bound; the tasks that run",
        extra={
            "bound_s": bound_s,
            "tasks": len(tasks),
            "where": [f"{t.get_name()}: {' -> '.join(_awaiting(t.get_coro()))}" for t in tasks],
        },
    )


def _awaiting(coro: Any) -> list[str]:
    """Where a task waits: its coroutine, then each one it awaits, down to the innermost
    (Task.get_stack shows only the outermost frame of a suspended task; Python 3.14's
    asyncio.capture_call_graph does this)."""
    found: list[str] = []
    while coro is not None and len(found) < 32:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        frame = frame or getattr(coro, "ag_frame", None)
        if frame is not None:
            code = frame.f_code
            found.append(f"{code.co_name} ({Path(code.co_filename).name}:{frame.f_lineno})")
        coro = (
            getattr(coro, "cr_await", None)
            or getattr(coro, "gi_yieldfrom", None)
            or getattr(coro, "ag_await", None)
        )
    return found


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"
