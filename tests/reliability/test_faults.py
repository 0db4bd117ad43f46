"""Faults under load: Redis killed and restarted, an upstream module unreachable, a worker
SIGKILLed mid-cycle, the gateway restarted with SIGTERM. Each bounded to a few seconds."""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis.asyncio as aioredis
from arq.connections import ArqRedis

from gateway.cache.answers import AnswerRequest, decode_stored
from gateway.cache.keys import CYCLE_OPEN_KEY, JOB_REFRESH_ALL, QUEUE_NAME, Keys
from gateway.refresh.requests import QueueRefresher
from gateway.version import VERSION
from tests.harness.processes import HOST, GatewayProcess, WorkerProcess, free_port
from tests.harness.servers import RedisServer
from tests.harness.waiting import CEILING_S
from tests.reliability.harness import (
    CacheCounters,
    IsolationChecker,
    Probe,
    World,
    cache_counters,
    cache_version_in_redis,
    copy_db,
    gateway_env,
    http_client,
    manifest_file,
    manifest_get,
    post_document,
    read_world,
    refresh_all_sync,
    sqlite_url,
    write_results,
)
from tests.reliability.load import Recorder, closed_loop, dashboard_mix
from tests.support.cycles import SECTIONS

pytestmark = pytest.mark.reliability


class MetricsSampler:
    """Polls /metrics: (monotonic time, response-cache counters)."""

    def __init__(self, client: httpx.AsyncClient, every_s: float = 0.25) -> None:
        self.client = client
        self.every_s = every_s
        self.samples: list[tuple[float, CacheCounters]] = []
        self._stop = asyncio.Event()

    async def run(self, max_seconds: float) -> None:
        deadline = time.monotonic() + max_seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                self.samples.append((time.monotonic(), await cache_counters(self.client, "")))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.every_s)

    def stop(self) -> None:
        self._stop.set()

    def hit_rate(self, start: float, end: float, kind: str = "response") -> float | None:
        inside = [(t, c) for t, c in self.samples if start <= t <= end]
        if len(inside) < 2:
            return None
        return inside[-1][1].minus(inside[0][1]).hit_rate(kind)

    def windows(self, kind: str = "response") -> list[tuple[float, float | None]]:
        return [
            (t1, c1.minus(c0).hit_rate(kind))
            for (_, c0), (t1, c1) in zip(self.samples, self.samples[1:], strict=False)
        ]


# --- Redis killed and restarted --------------------------------------------------------

REDIS_UP_BEFORE_S = 3.0
REDIS_DOWN_S = 3.0
RECOVERY_LIMIT_S = 15.0


async def test_redis_killed_and_restarted_under_load(
    redis_server: RedisServer, redis_url: str, db_path: Path, world: World, tmp_path: Path
) -> None:
    env = gateway_env(sqlite_url(db_path), redis_url, manifest_file(tmp_path))
    await asyncio.to_thread(refresh_all_sync, env, tmp_path)
    checker = IsolationChecker(world)
    recorder = Recorder(checker)
    plan = dashboard_mix(world, random.Random(11), size=300)
    marks: dict[str, float] = {}
    recovered_at: float | None = None
    with GatewayProcess("gateway", env, tmp_path) as gateway:
        async with (
            http_client(gateway.url, connections=32) as client,
            http_client(gateway.url, connections=2) as metrics_client,
        ):
            sampler = MetricsSampler(metrics_client)
            done = asyncio.Event()

            async def chaos() -> None:
                nonlocal recovered_at
                await asyncio.sleep(REDIS_UP_BEFORE_S)
                marks["killed"] = time.monotonic()
                await asyncio.to_thread(redis_server.kill)
                await asyncio.sleep(REDIS_DOWN_S)
                await asyncio.to_thread(redis_server.start)
                marks["restarted"] = time.monotonic()
                pre = sampler.hit_rate(marks["killed"] - 2.0, marks["killed"]) or 1.0
                deadline = time.monotonic() + RECOVERY_LIMIT_S
                while time.monotonic() < deadline:
                    await asyncio.sleep(0.25)
                    rate = sampler.hit_rate(time.monotonic() - 0.75, time.monotonic())
                    if rate is not None and rate >= 0.9 * pre:
                        recovered_at = time.monotonic()
                        break
                await asyncio.sleep(1.0)  # a little load after recovery, judged too
                done.set()

            started = time.monotonic()
            sampler_task = asyncio.ensure_future(sampler.run(60))
            await asyncio.gather(
                chaos(),
                closed_loop(
                    client,
                    recorder,
                    plan,
                    clients=12,
                    stop=done.is_set,
                    max_requests=200_000,
                    max_seconds=REDIS_UP_BEFORE_S + REDIS_DOWN_S + RECOVERY_LIMIT_S + 5,
                ),
            )
            sampler.stop()
            await sampler_task
        alive = gateway.alive
    killed, restarted = marks["killed"], marks["restarted"]
    before = recorder.between(started, killed)
    down = recorder.between(killed, restarted)
    after = recorder.between(restarted, time.monotonic())
    figures: dict[str, Any] = {
        "redis_down_s": round(restarted - killed, 2),
        "all": recorder.summary(),
        "before_kill": recorder.summary(before),
        "while_down": recorder.summary(down),
        "after_restart": recorder.summary(after),
        "answers_served_live_while_down": sum(1 for o in down if o.status == 200),
        "response_hit_rate_before_kill": sampler.hit_rate(killed - 2.0, killed),
        "response_hit_rate_while_down": sampler.hit_rate(killed + 0.3, restarted),
        "seconds_to_recover_hit_rate_after_restart": (
            None if recovered_at is None else round(recovered_at - restarted, 2)
        ),
        "recovery_rule": "first 0.75 s window with response hit rate >= 0.9 x the rate before",
        "gateway_alive": alive,
        "problem_examples": [p for o in recorder.outcomes for p in o.problems][:10],
        "leak_examples": checker.leaks[:10],
    }
    write_results("fault_redis_restart", figures)
    summary = figures["all"]
    assert alive
    assert summary["http_5xx"] == 0
    assert summary["transport_errors"] == 0
    assert summary["leaks"] == 0
    assert summary["answers_with_problems"] == 0
    assert figures["answers_served_live_while_down"] > 0
    assert recovered_at is not None


# --- one upstream module unreachable ---------------------------------------------------

SECTIONS_OF_BILLING = ("payments",)


async def cached_cohort(redis_url: str, cohort_id: int) -> tuple[str, dict[str, Any]]:
    client = aioredis.Redis.from_url(redis_url)
    try:
        [key] = [k.decode() async for k in client.scan_iter(match=f"ddg:*:cohort:{cohort_id}")]
        return key, orjson.loads(await client.get(key))
    finally:
        await client.aclose()


async def delete_key(redis_url: str, key: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    try:
        await client.delete(key)
    finally:
        await client.aclose()


BILLING_LOAD_S = 4.0


@pytest.fixture(scope="module")
async def billing_down(
    redis_server: RedisServer, demo_db: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """Billing's database is a closed port. Runs the scenario once; the tests judge it."""
    tmp_path = tmp_path_factory.mktemp("billing")
    db_path = tmp_path / "upstream.sqlite3"
    database_url = copy_db(demo_db, db_path)
    world = read_world(db_path)
    redis_server.start()
    redis_server.flushall()
    redis_url = redis_server.url
    # Every entry is older than the interval (and the TTL) a second after it is written:
    # with billing down it has to be recomputed, and billing's part of it cannot be. Both
    # phases use these settings, so no answer stored while billing was up outlives them.
    short = {"refresh_interval_s": "1", "refresh_grace_s": "0", "cache_ttl_s": "1"}
    good_env = gateway_env(database_url, redis_url, manifest_file(tmp_path), **short)
    await asyncio.to_thread(refresh_all_sync, good_env, tmp_path)
    admin = next(c for c in world.callers if c.role == "admin")
    uncached = max(world.cohorts)  # its subtree is deleted: nothing to fall back on
    with GatewayProcess("good", good_env, tmp_path) as good:
        async with http_client(good.url) as client:
            reference = {
                cid: (await post_document(client, admin, Probe("CohortDetail", {"id": cid}))).json()
                for cid in sorted(world.cohorts)
            }
            reference_summary = {
                c: (await post_document(client, c, Probe("DirectorSummary"))).json()
                for c in world.callers
            }
    uncached_key, _ = await cached_cohort(redis_url, uncached)
    await delete_key(redis_url, uncached_key)

    closed_port = free_port()
    env = gateway_env(
        database_url,
        redis_url,
        manifest_file(tmp_path),
        upstream_billing_url=f"postgresql+asyncpg://nobody@{HOST}:{closed_port}/billing",
        **short,
    )
    await asyncio.sleep(1.2)
    checked: dict[str, int] = {"cohorts": 0, "stale_payments": 0, "null_payments": 0}
    wrong: list[str] = []
    summaries: list[dict[str, Any]] = []
    with GatewayProcess("billing-down", env, tmp_path) as gateway:
        async with http_client(gateway.url, connections=16) as client:
            ready = await client.get("/readyz")
            recorder = Recorder(
                IsolationChecker(world, allowed_codes=frozenset({"UPSTREAM_UNAVAILABLE"}))
            )
            plan = dashboard_mix(world, random.Random(5), size=300)
            await closed_loop(
                client,
                recorder,
                plan,
                clients=8,
                stop=lambda: False,
                max_requests=100_000,
                max_seconds=BILLING_LOAD_S,
            )
            for cid in sorted(world.cohorts):
                probe = Probe("CohortDetail", {"id": cid})
                body = (await post_document(client, admin, probe)).json()
                checked["cohorts"] += 1
                wrong += judge_billing_down(cid, body, reference[cid], cid == uncached, checked)
            for caller in world.callers:
                body = (await manifest_get(client, caller, Probe("DirectorSummary"))).json()
                errors = body.get("errors") or []
                summaries.append(
                    {
                        "caller": str(caller),
                        "running_cohorts_in_scope": len(world.running(world.scope(caller))),
                        "errors": [
                            [e["extensions"]["code"], e["extensions"].get("module"), e.get("path")]
                            for e in errors
                        ],
                        "stale": body["data"]["me"]["summary"]["stale"],
                        "same_figures_as_before": _summary_figures(body)
                        == _summary_figures(reference_summary[caller]),
                    }
                )
        alive = gateway.alive
        log_tail = gateway.log()[-2000:]
    figures = {
        "module_down": "billing",
        "readyz_status": ready.status_code,
        "readyz_body": ready.json(),
        "load": recorder.summary(),
        "detail_checks": checked,
        "wrong_answers": wrong[:20],
        "summaries": summaries,
        "summaries_marked": sum(1 for s in summaries if s["errors"] and s["stale"]),
        "summaries_unmarked": sum(1 for s in summaries if not s["errors"]),
        "gateway_alive": alive,
        "cohorts": len(world.cohorts),
    }
    write_results("fault_upstream_unavailable", figures)
    return {**figures, "log_tail": log_tail}


async def test_upstream_module_unreachable(billing_down: dict[str, Any]) -> None:
    """Every other figure answers; payments come from the last cached subtree (stale) with
    UPSTREAM_UNAVAILABLE, or null with it when nothing is cached; nothing fails."""
    figures = billing_down
    load = figures["load"]
    assert figures["gateway_alive"], figures["log_tail"]
    # Answers are still given: degraded, the module named, no address.
    assert (figures["readyz_status"], figures["readyz_body"]) == (
        200,
        {"status": "degraded", "down": ["billing"], "version": VERSION},
    )
    assert load["http_5xx"] == 0 and load["transport_errors"] == 0
    assert load["by_status"] == {"200": load["requests"]}
    assert load["leaks"] == 0 and load["answers_with_problems"] == 0
    assert set(load["error_codes"]) <= {"UPSTREAM_UNAVAILABLE"}
    assert figures["wrong_answers"] == []
    assert figures["detail_checks"]["stale_payments"] == figures["cohorts"] - 1
    assert figures["detail_checks"]["null_payments"] == 1
    # Figures of the summary are the last ones known (nothing lost, nothing invented).
    assert all(s["same_figures_as_before"] for s in figures["summaries"])


async def test_summary_pooled_from_stale_sections_says_so(billing_down: dict[str, Any]) -> None:
    """A summary pools alerts computed from billing (PAYMENT_FAILURES): built from stale
    payments it must be marked stale and carry UPSTREAM_UNAVAILABLE, like the cohorts."""
    for summary in billing_down["summaries"]:
        if summary["running_cohorts_in_scope"]:
            assert summary["stale"] is True, summary
            assert ["UPSTREAM_UNAVAILABLE", "billing", ["me", "summary"]] in summary["errors"], (
                summary
            )


def _without(cohort: dict[str, Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in cohort.items() if k not in names}


def judge_billing_down(
    cid: int,
    body: dict[str, Any],
    reference: dict[str, Any],
    uncached: bool,
    counts: dict[str, int],
) -> list[str]:
    """What a cohort detail must look like while billing is down."""
    wrong = []
    errors = body.get("errors") or []
    codes = [
        (e["extensions"]["code"], e["extensions"].get("module"), e.get("path")) for e in errors
    ]
    if codes != [("UPSTREAM_UNAVAILABLE", "billing", ["cohort", "payments"])]:
        wrong.append(f"cohort {cid}: errors {codes}")
    cohort = (body.get("data") or {}).get("cohort")
    if cohort is None:
        return [*wrong, f"cohort {cid}: no data"]
    expected = reference["data"]["cohort"]
    # Every figure of the other five modules answers, equal to what it was.
    others = ("payments", "computedAt", "stale", "alerts", "flags")
    if _without(cohort, *others) != _without(expected, *others):
        wrong.append(f"cohort {cid}: other figures changed")
    if uncached:
        if cohort["payments"] is not None:
            wrong.append(f"cohort {cid}: payments {cohort['payments']} with nothing cached")
        counts["null_payments"] += 1
    else:
        if cohort["payments"] != expected["payments"]:
            wrong.append(f"cohort {cid}: payments not the cached ones")
        if cohort["stale"] is not True:
            wrong.append(f"cohort {cid}: stale payments not marked stale")
        counts["stale_payments"] += 1
    return wrong


def _summary_figures(body: dict[str, Any]) -> dict[str, Any]:
    summary = dict(body["data"]["me"]["summary"])
    summary.pop("computedAt", None)
    summary.pop("stale", None)
    return summary


# --- a worker SIGKILLed mid-cycle ------------------------------------------------------

SUMMARY_FIELDS = ("total_cohorts", "active_cohorts", "seats", "alerts", "computed_at")


async def snapshot(redis_url: str) -> dict[str, bytes]:
    client = aioredis.Redis.from_url(redis_url)
    try:
        keys = [k async for k in client.scan_iter(match="ddg:*", count=1000)]
        out = {}
        for key in keys:
            if await client.type(key) == b"string":
                value = await client.get(key)
                if value is not None:
                    out[key.decode()] = value
        return out
    finally:
        await client.aclose()


def partial_entries(entries: dict[str, bytes]) -> list[str]:
    """Every cache entry must be whole: a complete subtree or answer, never a fragment."""
    bad = []
    for key, raw in entries.items():
        if key.startswith(QUEUE_NAME) or key.endswith(":lock"):
            continue
        if ":response:" in key:
            try:
                stored = decode_stored(raw)
                answer = orjson.loads(stored.body)
                assert stored.etag.startswith('"') and stored.expires_at > 0
                assert AnswerRequest.decode(stored.request) is not None
                assert "errors" not in answer and answer["data"]
            except (ValueError, AssertionError, KeyError, TypeError):
                bad.append(key)
            continue
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            bad.append(key)
            continue
        if not isinstance(value, dict) or "computed_at" not in value:
            if ":event:" not in key and ":rate:" not in key:
                bad.append(key)
            continue
        if ":cohort:" in key and (
            "unavailable" in value or any(value.get(s) is None for s in SECTIONS)
        ):
            bad.append(key)
        if ":summary:" in key and any(f not in value for f in SUMMARY_FIELDS):
            bad.append(key)
    return bad


# The cycle's phases (gateway/refresh/cycle.py) as the kill trials name them: the stamp
# (`refresh:last`) is written last, once the answers are prewarmed.
PREWARM_PHASES = ("dashboards", "answers")


def phase_of(entries: dict[str, bytes], prewarm_total: int) -> str:
    if any(k.endswith(":refresh:last") for k in entries):
        return "done"
    opened = entries.get(CYCLE_OPEN_KEY)
    open_phase = orjson.loads(opened)["phase"] if opened else None
    answers = sum(1 for k in entries if ":response:" in k)
    if open_phase in PREWARM_PHASES or answers:
        return "prewarming"
    cohorts = sum(1 for k in entries if ":cohort:" in k)
    return "computing" if cohorts == 0 else "subtrees-written-no-stamp"


async def wait_for(condition, timeout_s: float, every_s: float = 0.005) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await condition():
            return True
        await asyncio.sleep(every_s)
    return False


async def test_worker_killed_mid_cycle(
    redis_url: str, db_path: Path, world: World, tmp_path: Path
) -> None:
    database_url = sqlite_url(db_path)
    # How many answers a whole cycle prewarms (callers with an empty list store none).
    await asyncio.to_thread(refresh_all_sync, gateway_env(database_url, redis_url), tmp_path)
    prewarm_total = sum(1 for k in await snapshot(redis_url) if ":response:" in k)
    directors = [c.user_id for c in world.callers if c.role == "director"]
    trials = []
    targets = ("computing", "subtrees-written-no-stamp", "prewarming")
    keys = Keys(await cache_version_in_redis(redis_url))
    redis = aioredis.Redis.from_url(redis_url)
    queue = ArqRedis(redis.connection_pool, default_queue_name=QUEUE_NAME)
    try:
        for target in targets:
            await redis.flushall()
            # A cron that cannot fire during the trial; the cycle is enqueued by hand.
            env = gateway_env(database_url, redis_url, refresh_interval_s="3600")
            killed = WorkerProcess("killed", env, tmp_path / f"kill-{target}")
            killed.start()
            try:
                await queue.enqueue_job(
                    JOB_REFRESH_ALL, _job_id=JOB_REFRESH_ALL, _queue_name=QUEUE_NAME
                )

                async def reached(target: str = target) -> bool:
                    # One round trip, polled every millisecond or so.
                    async with redis.pipeline(transaction=False) as pipe:
                        pipe.exists(f"arq:in-progress:{JOB_REFRESH_ALL}")
                        pipe.exists(keys.cohort(min(world.cohorts)))
                        pipe.get(CYCLE_OPEN_KEY)
                        claimed, cohort, opened = await pipe.execute()
                    if target == "computing":
                        return bool(claimed)
                    if target == "subtrees-written-no-stamp":
                        return bool(cohort)
                    return bool(opened) and orjson.loads(opened)["phase"] in PREWARM_PHASES

                await wait_for(reached, CEILING_S, every_s=0.001)
                killed.stop(signal.SIGKILL)
            finally:
                killed.stop(signal.SIGKILL)
            killed_at = time.monotonic()
            at_kill = await snapshot(redis_url)
            phase = phase_of(at_kill, prewarm_total)
            partial = partial_entries(at_kill)
            # A manual `gateway refresh --all` right after the crash:
            manual_enqueued = await QueueRefresher(queue).refresh_all()
            claim_ttl_ms = await redis.pttl(f"arq:in-progress:{JOB_REFRESH_ALL}")

            # The next cycle: what the cron of a (re)started worker runs.
            stamp_before = await redis.get(
                next((k for k in at_kill if k.endswith(":refresh:last")), "none")
            )
            cron_env = gateway_env(database_url, redis_url, refresh_interval_s="5")
            with WorkerProcess("next", cron_env, tmp_path / f"next-{target}"):

                async def cycle_done(stamp_before: bytes | None = stamp_before) -> bool:
                    entries = await snapshot(redis_url)
                    stamps = [v for k, v in entries.items() if k.endswith(":refresh:last")]
                    return (
                        bool(stamps)
                        and stamps[0] != stamp_before
                        and phase_of(entries, prewarm_total) == "done"
                    )

                completed = await wait_for(cycle_done, CEILING_S, every_s=0.1)
                next_cycle_s = time.monotonic() - killed_at
            after = await snapshot(redis_url)
            stamp = next(orjson.loads(v) for k, v in after.items() if k.endswith(":refresh:last"))
            unrefreshed = [
                d
                for d in directors
                if not any(k.endswith(f":summary:{d}") for k in after)
                or not any(k.endswith(f":scope:{d}") for k in after)
            ]
            trials.append(
                {
                    "target_phase": target,
                    "phase_at_kill": phase,
                    "entries_at_kill": dict(
                        Counter(k.split(":")[2] for k in at_kill if k.count(":") >= 2)
                    ),
                    "partial_entries_at_kill": partial,
                    "manual_refresh_all_enqueued_after_kill": manual_enqueued,
                    "killed_job_claim_ttl_s": round(claim_ttl_ms / 1000, 1),
                    "next_cycle_completed": completed,
                    "kill_to_next_cycle_done_s": round(next_cycle_s, 2),
                    "next_cycle": {
                        "cohorts": stamp["cohorts"],
                        "directors": stamp["directors"],
                        "incomplete_cohorts": stamp["incomplete_cohorts"],
                    },
                    "partial_entries_after": partial_entries(after),
                    "directors_unrefreshed": unrefreshed,
                }
            )
    finally:
        await redis.aclose()
    write_results(
        "fault_worker_sigkill", {"prewarm_answers_per_cycle": prewarm_total, "trials": trials}
    )
    # Each kill landed mid-cycle (the narrow "subtrees written, no stamp" window may be
    # missed for the prewarm that follows it; never for a finished cycle).
    assert all(t["phase_at_kill"] != "done" for t in trials)
    for trial in trials:
        assert trial["partial_entries_at_kill"] == []
        assert trial["next_cycle_completed"]
        assert trial["next_cycle"] == {
            "cohorts": len(world.cohorts),
            "directors": len(directors),
            "incomplete_cohorts": 0,
        }
        assert trial["partial_entries_after"] == []
        assert trial["directors_unrefreshed"] == []


# --- the gateway restarted with SIGTERM under load -------------------------------------

RESTART_BEFORE_S = 2.5
RESTART_AFTER_S = 2.5


async def test_gateway_restart_with_sigterm_under_load(
    redis_url: str, db_path: Path, world: World, tmp_path: Path
) -> None:
    env = gateway_env(sqlite_url(db_path), redis_url, manifest_file(tmp_path), log_level="INFO")
    await asyncio.to_thread(refresh_all_sync, env, tmp_path)
    checker = IsolationChecker(world)
    recorder = Recorder(checker)
    # Heavier pages too (the admin's 100-row list over POST), so requests are in flight.
    rng = random.Random(3)
    admin = next(c for c in world.callers if c.role == "admin")
    plan = dashboard_mix(world, rng, size=300)
    plan = [
        *plan,
        *[
            type(plan[0])("post", admin, Probe("CohortList", {"first": 100}))
            for _ in range(len(plan) // 4)
        ],
    ]
    rng.shuffle(plan)
    first = GatewayProcess("first", env, tmp_path)
    port = first.port
    marks: dict[str, float] = {}
    second: GatewayProcess | None = None
    first.start()
    try:
        async with http_client(first.url, connections=24) as client:
            done = asyncio.Event()

            async def restart() -> None:
                nonlocal second
                await asyncio.sleep(RESTART_BEFORE_S)
                marks["sigterm"] = time.monotonic()
                first.send_signal(signal.SIGTERM)
                code = await asyncio.to_thread(first.wait, 40)
                marks["exited"] = time.monotonic()
                marks["exit_code"] = code if code is not None else -1
                second = GatewayProcess("second", env, tmp_path, port=port)
                await asyncio.to_thread(second.start)
                marks["serving_again"] = time.monotonic()
                await asyncio.sleep(RESTART_AFTER_S)
                done.set()

            started = time.monotonic()
            await asyncio.gather(
                restart(),
                closed_loop(
                    client,
                    recorder,
                    plan,
                    clients=16,
                    stop=done.is_set,
                    max_requests=100_000,
                    max_seconds=RESTART_BEFORE_S + RESTART_AFTER_S + 60,
                    pause_after_error_s=0.02,
                ),
            )
    finally:
        first.stop(signal.SIGKILL)
        if second is not None:
            second.stop()
    sigterm = marks["sigterm"]
    graceful = "Application shutdown complete" in first.log()
    in_flight = [o for o in recorder.outcomes if o.started < sigterm < o.finished]
    in_flight_ok = [o for o in in_flight if o.status == 200 and not o.problems]
    in_flight_closed = [o for o in in_flight if o.status is None]
    errors = [o for o in recorder.outcomes if o.status is None]
    figures = {
        "all": recorder.summary(),
        "before_sigterm": recorder.summary(recorder.between(started, sigterm)),
        "during_restart": recorder.summary(recorder.between(sigterm, marks["serving_again"])),
        "after_restart": recorder.summary(
            recorder.between(marks["serving_again"], time.monotonic())
        ),
        "in_flight_at_sigterm": len(in_flight),
        "in_flight_completed_200": len(in_flight_ok),
        "in_flight_connection_closed": len(in_flight_closed),
        "drain_s": round(marks["exited"] - sigterm, 3),
        "old_process_exit_code": marks["exit_code"],
        "old_process_logged_graceful_shutdown": graceful,
        "unavailable_s": round(marks["serving_again"] - sigterm, 2),
        "errors_by_kind": {
            kind: sum(1 for o in errors if o.error == kind) for kind in {o.error for o in errors}
        },
        "port": port,
    }
    write_results("fault_gateway_restart", figures)
    assert figures["all"]["http_5xx"] == 0
    assert figures["all"]["leaks"] == 0
    assert figures["all"]["answers_with_problems"] == 0
    # uvicorn re-raises the SIGTERM it handled once it has shut down: -15 is a clean exit.
    assert marks["exit_code"] in (0, -signal.SIGTERM)
    assert graceful
    assert len(in_flight) > 0
    # In-flight requests drain: each is answered in full, or (sent on a connection the
    # server was closing) refused without an answer; never cut mid-answer, never a 5xx.
    assert len(in_flight_ok) + len(in_flight_closed) == len(in_flight)
    assert len(in_flight_ok) > 0
    assert set(figures["errors_by_kind"]) <= {"ConnectError", "RemoteProtocolError", "ReadError"}
    assert figures["after_restart"]["requests"] > 0
    assert figures["after_restart"]["transport_errors"] == 0
