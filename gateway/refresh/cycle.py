"""The refresh cycle: every subtree rewritten, then every stored answer built from them.

What the workers' cron, the embedded scheduler and `gateway refresh --all --sync` run,
every refresh interval, holding the cycle lease (one cycle at a time: lease.py), as of one
instant read once the lease is held, in four phases of batches (batches.py) that any
worker may run (dispatch.py; in this process without Redis):

1. cohorts: every cohort once, in batches of GATEWAY_REFRESH_COHORT_BATCH;
2. directors: every director's and admin's profile, scope and summary, in batches of
   GATEWAY_REFRESH_DIRECTOR_BATCH, pooled from the summary inputs phase 1 kept (scopes
   from one read of track_directors and one of the cohorts' tracks);
3. dashboards: every caller's argument-less dashboard pages, built and stored;
4. answers: the other stored answers built from a rewritten subtree, rebuilt in place
   (most recently used first, within GATEWAY_ANSWER_REBUILD_SHARE of the interval), so a
   dashboard stays a fast-path hit across cycles; the rest are dropped.

The cycle's record (`refresh:last`, and `refresh:success` when complete) is written at its
end: last success, refresh lag and the `stale` flag speak of the whole cycle. A phase that
lost a batch (out of attempts) ends the cycle there, reported incomplete: the next covers
it. While the cycle runs, the answers it is about to replace keep being served (the
previous cycle's bytes, with their computedAt). Should the cycle fail, the answers built
from what it rewrote are dropped instead: none is left in place on a rewritten subtree.
"""

import asyncio
import contextlib
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson
from redis.exceptions import RedisError

from gateway import metrics
from gateway.cache.kv import CacheUnavailable
from gateway.refresh.answers import AnswerBuilder, AnswerReport, Replaced
from gateway.refresh.batches import CycleRun, MemoryInputs
from gateway.refresh.dispatch import (
    Dispatcher,
    LocalDispatcher,
    PhaseResult,
    QueueDispatcher,
    close_abandoned,
    local_run,
)
from gateway.refresh.lease import Skipped, cycle_lease
from gateway.refresh.service import Guard, RefreshService
from gateway.settings import Settings
from loaders import programs
from resolvers.caller import ADMIN
from resolvers.figures import iso_instant

if TYPE_CHECKING:
    from gateway.services import Services

log = logging.getLogger("gateway.refresh.cycle")


@dataclass
class CycleReport:
    cohorts: int
    directors: int
    seconds: float
    incomplete_cohorts: int
    cycle: str = ""
    lost_batches: int = 0

    @property
    def complete(self) -> bool:
        return not self.incomplete_cohorts and not self.lost_batches


def new_cycle_id(now: datetime) -> str:
    return f"{int(now.timestamp() * 1000)}-{uuid.uuid4().hex[:8]}"


def batch_sizes(settings: Settings | None) -> tuple[int, int]:
    """(cohorts, directors) per batch: the settings', or their defaults."""
    if settings is not None:
        return settings.refresh_cohort_batch, settings.refresh_director_batch
    fields = Settings.model_fields
    return fields["refresh_cohort_batch"].default, fields["refresh_director_batch"].default


class Phases:
    """A cycle's phases through a dispatcher, and what they wrote."""

    def __init__(self, services: "Services", dispatcher: Dispatcher) -> None:
        assert services.refresh is not None
        self.services = services
        self.service: RefreshService = services.refresh
        self.dispatcher = dispatcher
        self.written: set[str] = set()  # keys of subtrees this cycle rewrote
        self.lost = 0
        self.seconds: dict[str, float] = {}
        self.users: Sequence[Any] = ()  # who has a dashboard, as the cycle read it

    def note(self, phase: str, result: PhaseResult) -> None:
        if phase in ("cohorts", "directors"):
            self.written.update(k for r in result.done() for k in r["written"])
        self.lost += len(result.lost)
        self.seconds[phase] = result.seconds
        metrics.REFRESH_PHASE.labels(phase).observe(result.seconds)

    async def rewritten_keys(self) -> list[str]:
        """Every subtree key the cycle rewrote so far, batches of a failed phase too."""
        written = set(self.written)
        # With the queue's Redis away: what the finished phases wrote.
        with contextlib.suppress(RedisError, OSError):
            written.update(await self.dispatcher.written())
        return sorted(written)

    async def rewritten_tags(self) -> list[str]:
        return [self.service.keys.tag(k) for k in await self.rewritten_keys()]

    async def subtrees(
        self, sizes: tuple[int, int], guard: Guard | None, progress: Any = None
    ) -> tuple[int, int, int, list[str]] | None:
        """(cohorts built, incomplete cohorts, directors, summaries' computed_at), or None
        when a batch was lost (the cycle stops there)."""
        upstream = self.service.upstream
        pairs = await programs.cohort_track_pairs(upstream)
        track_of = {row.id: row.track_id for row in pairs}
        # Who directs what, and who has a dashboard: read while the cohorts are built
        # (phase 2 starts the moment they are), as of the same cycle.
        directing = asyncio.ensure_future(programs.director_track_pairs(upstream))
        users = asyncio.ensure_future(programs.dashboard_users(upstream))
        director_tracks: Sequence[Any]
        try:
            result = await self.dispatcher.run_phase(
                "cohorts", self.dispatcher.cut(sorted(track_of), sizes[0]), guard, progress
            )
            self.users, director_tracks = await asyncio.gather(users, directing)
        except BaseException:
            for task in (directing, users):
                task.cancel()
            await asyncio.gather(directing, users, return_exceptions=True)
            raise
        self.note("cohorts", result)
        if result.lost:
            return None
        built = sorted({i for r in result.done() for i in r["built"]})
        incomplete = sum(len(r["incomplete"]) for r in result.done())

        tracks_by_director: dict[int, set[int]] = defaultdict(set)
        for row in director_tracks:
            tracks_by_director[row.director_id].add(row.track_id)
        cohorts_by_track: dict[int, list[int]] = defaultdict(list)
        for cid in built:
            cohorts_by_track[track_of[cid]].append(cid)
        people = []
        for person in self.users:
            if person.role == ADMIN:
                ids = built
            else:
                tracks = tracks_by_director.get(person.id, ())
                ids = sorted({c for t in tracks for c in cohorts_by_track[t]})
            people.append([person.id, person.role, person.name, person.email, ids])
        batches = self.dispatcher.cut(people, sizes[1])
        result = await self.dispatcher.run_phase("directors", batches, guard)
        self.note("directors", result)
        if result.lost:
            return None
        directors = sum(r["directors"] for r in result.done())
        summaries = [r["oldest_summary_at"] for r in result.done() if r["oldest_summary_at"]]
        return len(built), incomplete, directors, summaries

    async def run(
        self, now: datetime, guard: Guard | None, progress: Any = None
    ) -> tuple[CycleReport, AnswerReport]:
        """Every phase, then the cycle's record."""
        started = time.perf_counter()
        done = await self.subtrees(batch_sizes(self.services.settings), guard, progress)
        answers = AnswerReport(0, 0, 0.0)
        if done is None:
            await drop_answers(self.services, await self.rewritten_tags())
        elif self.services.answers is not None:
            answers = await self.answers(now, guard)
        return await self.record(now, started, done, guard), answers

    async def answers(self, now: datetime, guard: Guard | None) -> AnswerReport:
        """Phases 3 and 4: every caller's dashboard pages (`users`, as phase 1 read them),
        then the other stored answers built from what the cycle rewrote (rebuilt within
        the cycle's share, else dropped)."""
        services = self.services
        started = time.perf_counter()
        settings = services.settings
        callers = [[p.id, p.role] for p in self.users]
        result = await self.dispatcher.run_phase(
            "dashboards", self.dispatcher.cut(callers, settings.refresh_answer_batch), guard
        )
        self.note("dashboards", result)
        written = {k for r in result.done() for k in r["written"]}
        builder = AnswerBuilder(services)
        deadline = time.time() + settings.answer_rebuild_share * settings.refresh_interval_s
        tags = [self.service.keys.tag(k) for k in sorted(self.written)]
        selection = await builder.select(tags, written, now)
        payloads: list[dict[str, Any]] = [
            {"chosen": part, "deadline": deadline}
            for part in self.dispatcher.cut(selection.chosen, settings.refresh_answer_batch)
        ]
        rebuilt = await self.dispatcher.run_phase("answers", payloads, guard)
        self.note("answers", rebuilt)
        outcome = Replaced()
        dropped: set[str] = set()
        for payload, r in zip(payloads, rebuilt.results, strict=True):
            if r is None:  # lost: none of its answers may stay on the rewritten subtrees
                dropped.update(key for key, _ in payload["chosen"])
                outcome.failed += len(payload["chosen"])
                continue
            for name in ("rebuilt", "over_budget", "failed", "gone"):
                setattr(outcome, name, getattr(outcome, name) + r[name])
            dropped.update(r["dropped"])
        replaced = await builder.finish(selection, outcome, dropped, rebuilt.seconds)
        report = AnswerReport(len(callers), len(written), time.perf_counter() - started, replaced)
        report.log()
        return report

    async def record(
        self,
        now: datetime,
        started: float,
        done: tuple[int, int, int, list[str]] | None,
        guard: Guard | None,
    ) -> CycleReport:
        """The cycle's record, of what the subtree phases `done` (None: a batch was lost)."""
        cohorts, incomplete, directors, summaries = done or (0, 0, 0, [])
        seconds = time.perf_counter() - started
        cycle = self.dispatcher.run.id
        report = CycleReport(cohorts, directors, seconds, incomplete, cycle, self.lost)
        await record(self.service, now, report, summaries, self.seconds, guard)
        return report


async def record(
    service: RefreshService,
    now: datetime,
    report: CycleReport,
    summaries: list[str],
    phase_seconds: dict[str, float],
    guard: Guard | None,
) -> None:
    """The cycle's record (and, when complete, the last successful cycle's), then its
    metrics and its one log line."""
    finished = now + timedelta(seconds=report.seconds)
    stamp = {
        "cycle": report.cycle,
        "started_at": iso_instant(now),
        "computed_at": iso_instant(finished),
        "duration_s": report.seconds,
        "directors": report.directors,
        "cohorts": report.cohorts,
        "incomplete_cohorts": report.incomplete_cohorts,
        "lost_batches": report.lost_batches,
        "complete": report.complete,
        "oldest_summary_at": min(summaries, default=None),
        "phases_s": {name: round(seconds, 3) for name, seconds in phase_seconds.items()},
    }
    entries = {service.keys.refresh_stamp(): stamp}
    if report.complete:
        entries[service.keys.refresh_success()] = dict(stamp)
    await service.write(entries, set(), guard)
    metrics.REFRESH_DURATION.labels("all").observe(report.seconds)
    metrics.REFRESH_LAST_DURATION.set(report.seconds)
    if report.complete:
        metrics.REFRESH_LAST_SUCCESS.set(finished.timestamp())
    extra = {
        "cycle": report.cycle,
        "directors": report.directors,
        "cohorts": report.cohorts,
        "duration_s": round(report.seconds, 3),
        "incomplete_cohorts": report.incomplete_cohorts,
        "lost_batches": report.lost_batches,
        "phases_s": stamp["phases_s"],
    }
    if report.lost_batches:
        log.warning("refresh cycle incomplete: batches lost", extra=extra)
    else:
        log.info("refresh cycle done", extra=extra)


# A cycle waits for the running one at most this many refresh intervals.
LEASE_WAIT_INTERVALS = 2
DROP_ATTEMPTS = 3
DROP_RETRY_S = 1.1  # past the Redis circuit breaker's pause (RedisKV.retry_after_s)


async def drop_answers(services: "Services", tags: Collection[str]) -> None:
    """Drops the answers tagged `tags`, retrying past the circuit breaker a failure opens."""
    if not tags:
        return
    for attempt in range(DROP_ATTEMPTS):
        try:
            await services.kv.invalidate(sorted(tags))
            return
        except CacheUnavailable:
            if attempt + 1 < DROP_ATTEMPTS:
                await asyncio.sleep(DROP_RETRY_S)
    log.error(
        "could not drop the answers built from rewritten subtrees; they expire when their "
        "inputs turn stale",
        extra={"tags": len(tags)},
    )


async def refresh_cycle(
    services: "Services", progress: Any = None, *, only_when_cold: bool = False, job: str = ""
) -> tuple[CycleReport, AnswerReport]:
    """A full refresh, in batches any worker may run (gateway/refresh/dispatch.py; in this
    process without Redis), holding the cycle lease (gateway/refresh/lease.py); then one
    rewrite notice (gateway/live) for all of it, once the answers built from what it
    rewrote are replaced (or dropped).

    Raises Skipped when a cycle is running and another already waits to follow it, or,
    `only_when_cold`, when a completed cycle is recorded by the time the lease is held.
    `job`: the arq job running it, named in its lease (gateway/refresh/lease.py)."""
    assert services.refresh is not None
    wait_s = LEASE_WAIT_INTERVALS * services.settings.refresh_interval_s
    async with (
        cycle_lease(services.redis, wait_s, job) as lease,
        services.refresh.cache.unit() as rewrites,
    ):
        if only_when_cold and await last_cycle(services) is not None:
            raise Skipped("a completed cycle is recorded")
        now = services.clock()  # the cycle's instant: read once the lease is held
        cycle_id = new_cycle_id(now)
        dispatcher: Dispatcher
        if services.redis is not None and lease.token is not None:
            await close_abandoned(services.redis)
            run = CycleRun(cycle_id, now, MemoryInputs())
            dispatcher = QueueDispatcher(services, run, lease.token)
        else:
            run = local_run(cycle_id, now)
            dispatcher = LocalDispatcher(services, run)
        phases = Phases(services, dispatcher)
        try:
            return await phases.run(now, lease.confirm, progress)
        except BaseException:
            # What was rewritten before the failure must not keep its old answers; unless
            # the lease was lost: the cycle holding it now replaces them all (or Redis
            # came back empty), and a drop would delete that cycle's new answers.
            if lease.lost is None:
                await drop_answers(services, await phases.rewritten_tags())
            raise
        finally:
            # Batches run by other workers wrote without telling anyone: the cycle's one
            # notice names everything it rewrote (at its instant), here or elsewhere.
            stamp = {"computed_at": iso_instant(now)}
            keys = await phases.rewritten_keys()
            rewrites.note(services.refresh.keys, dict.fromkeys(keys, stamp))
            await dispatcher.close()


async def last_cycle(services: "Services") -> dict[str, Any] | None:
    """The record of the last completed cycle; raises CacheUnavailable."""
    assert services.cache is not None
    [raw] = await services.kv.get_many([services.cache.keys.refresh_stamp()])
    return None if raw is None else dict(orjson.loads(raw))


async def embedded_scheduler(services: "Services") -> None:
    """Embedded mode: the workers' cycle, in this process, every refresh interval."""
    while True:
        try:
            await refresh_cycle(services)
        except Exception:
            log.exception("embedded refresh cycle failed")
        await asyncio.sleep(services.settings.refresh_interval_s)


def cron_fields(interval_s: float) -> dict[str, Any]:
    """arq cron fields for "every interval_s seconds", aligned on the clock."""
    seconds = int(interval_s)
    if seconds != interval_s or seconds <= 0:
        raise ValueError("the refresh interval must be a whole number of seconds")
    if seconds < 60 and 60 % seconds == 0:
        return {"second": set(range(0, 60, seconds))}
    if seconds % 60 == 0 and 3600 % seconds == 0:
        return {"minute": set(range(0, 60, seconds // 60)), "second": 0}
    raise ValueError("the refresh interval must divide a minute or an hour (e.g. 30, 60, 300)")
