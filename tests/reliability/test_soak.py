"""Soak: a steady request rate for RELIABILITY_SOAK_S seconds (default 600) across refresh
cycles (a worker's cron every 60 s) and a webhook storm (one signed event a second, and
a replayed one now and then). Zero errors, flat memory, hit rate and p95 reported."""

from __future__ import annotations

import asyncio
import os
import random
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from gateway.cache.keys import Keys
from loaders import MODULES
from tests.harness.processes import GatewayProcess, WorkerProcess
from tests.reliability.harness import (
    IsolationChecker,
    World,
    cache_counters,
    cache_version_in_redis,
    gateway_env,
    http_client,
    manifest_file,
    refresh_all_sync,
    signed,
    sqlite_url,
    write_results,
)
from tests.reliability.load import Recorder, dashboard_mix, steady_rate
from tests.support.gateway import event_body

pytestmark = pytest.mark.reliability

SOAK_S = float(os.environ.get("RELIABILITY_SOAK_S", "600"))
RATE_PER_S = float(os.environ.get("RELIABILITY_SOAK_RPS", "50"))
REFRESH_INTERVAL_S = 60
WEBHOOK_EVERY_S = 1.0
REPLAY_EVERY = 15  # every 15th event is a redelivery of an earlier one
SAMPLE_EVERY_S = 5.0
MB = 1 << 20


async def test_soak(db_path: Path, redis_url: str, world: World, tmp_path: Path) -> None:
    env = gateway_env(
        sqlite_url(db_path),
        redis_url,
        manifest_file(tmp_path),
        refresh_interval_s=str(REFRESH_INTERVAL_S),
    )
    await asyncio.to_thread(refresh_all_sync, env, tmp_path)
    checker = IsolationChecker(world)
    recorder = Recorder(checker)
    plan = dashboard_mix(world, random.Random(17), size=2_000)
    keys = Keys(await cache_version_in_redis(redis_url))
    rng = random.Random(23)
    webhooks: dict[str, int] = {}
    samples: list[dict[str, Any]] = []
    stamps: set[str] = set()
    redis = aioredis.Redis.from_url(redis_url)
    try:
        with (
            GatewayProcess("gateway", env, tmp_path) as gateway,
            WorkerProcess("worker", env, tmp_path) as worker,
        ):
            async with (
                http_client(gateway.url, connections=64) as client,
                http_client(gateway.url, connections=4) as side,
            ):
                started = time.monotonic()
                deadline = started + SOAK_S

                async def storm() -> None:
                    sent: list[bytes] = []
                    n = 0
                    while time.monotonic() < deadline:
                        n += 1
                        if n % REPLAY_EVERY == 0 and sent:
                            body = rng.choice(sent)
                            expected = "duplicate"
                        else:
                            cohorts = rng.sample(sorted(world.cohorts), rng.randint(1, 3))
                            directors = (
                                [rng.choice(sorted(world.tracks_by_director))]
                                if n % 10 == 0
                                else []
                            )
                            body = event_body(
                                f"evt_soak_{n}", rng.choice(MODULES), cohorts, directors
                            )
                            sent.append(body)
                            expected = "accepted"
                        response = await side.post(
                            "/webhooks/upstream", content=body, headers=signed(body)
                        )
                        answer = (
                            response.json().get("status") if response.status_code == 202 else None
                        )
                        outcome = f"{response.status_code} {answer}"
                        webhooks[outcome] = webhooks.get(outcome, 0) + 1
                        if answer != expected:
                            webhooks["unexpected"] = webhooks.get("unexpected", 0) + 1
                        await asyncio.sleep(WEBHOOK_EVERY_S)

                async def sampler() -> None:
                    while time.monotonic() < deadline + SAMPLE_EVERY_S:
                        raw = await redis.get(keys.refresh_stamp())
                        if raw is not None:
                            stamps.add(orjson.loads(raw)["computed_at"])
                        counters = await cache_counters(side, "")
                        samples.append(
                            {
                                "t_s": round(time.monotonic() - started, 1),
                                "gateway_rss_mb": round(gateway.rss_bytes() / MB, 1),
                                "worker_rss_mb": round(worker.rss_bytes() / MB, 1),
                                "counters": counters,
                                "requests": len(recorder.outcomes),
                            }
                        )
                        await asyncio.sleep(SAMPLE_EVERY_S)

                sampling = asyncio.ensure_future(sampler())
                skipped, _ = await asyncio.gather(
                    steady_rate(client, recorder, plan, rate_per_s=RATE_PER_S, seconds=SOAK_S),
                    storm(),
                )
                await sampling
            gateway_alive, worker_alive = gateway.alive, worker.alive
    finally:
        await redis.aclose()

    # RSS: the first sample after warm-up (10 s or 5 % of the run), the middle, the last.
    warm = next(s for s in samples if s["t_s"] >= min(10.0, SOAK_S * 0.05))
    middle = min(samples, key=lambda s: abs(s["t_s"] - SOAK_S / 2))
    end = samples[-1]
    first_c, last_c = samples[0]["counters"], end["counters"]
    total = last_c.minus(first_c)
    per_minute = []
    for i in range(1, len(samples)):
        if (
            int(samples[i]["t_s"] // 60) != int(samples[i - 1]["t_s"] // 60)
            or i == len(samples) - 1
        ):
            start = next(
                s for s in samples if int(s["t_s"] // 60) == int(samples[i - 1]["t_s"] // 60)
            )
            delta = samples[i]["counters"].minus(start["counters"])
            per_minute.append(
                {
                    "minute": int(samples[i - 1]["t_s"] // 60),
                    "response_hit_rate": _round(delta.hit_rate("response")),
                    "cohort_hit_rate": _round(delta.hit_rate("cohort")),
                    "gateway_rss_mb": samples[i]["gateway_rss_mb"],
                }
            )
    load = recorder.summary()
    rss_limit_mb = warm["gateway_rss_mb"] * 1.2 + 20
    figures = {
        "duration_s": SOAK_S,
        "target_rate_per_s": RATE_PER_S,
        "achieved_rate_per_s": round(load["requests"] / SOAK_S, 1),
        "ticks_skipped_for_too_many_in_flight": skipped,
        "load": load,
        "response_hit_rate": _round(total.hit_rate("response")),
        "subtree_hit_rate": {
            kind: _round(total.hit_rate(kind)) for kind in ("cohort", "summary", "scope", "user")
        },
        "refresh_cycles_seen": len(stamps),
        "refresh_interval_s": REFRESH_INTERVAL_S,
        "webhooks": webhooks,
        "rss_mb": {
            "gateway": {
                "start": warm["gateway_rss_mb"],
                "middle": middle["gateway_rss_mb"],
                "end": end["gateway_rss_mb"],
                "limit": round(rss_limit_mb, 1),
            },
            "worker": {
                "start": warm["worker_rss_mb"],
                "middle": middle["worker_rss_mb"],
                "end": end["worker_rss_mb"],
            },
            "at": {"start_s": warm["t_s"], "middle_s": middle["t_s"], "end_s": end["t_s"]},
        },
        "per_minute": per_minute,
        "gateway_alive": gateway_alive,
        "worker_alive": worker_alive,
        "leak_examples": checker.leaks[:10],
        "problem_examples": checker.problems[:10],
    }
    write_results("soak", figures)
    assert gateway_alive and worker_alive
    assert load["by_status"] == {"200": load["requests"]}
    assert load["leaks"] == 0 and load["answers_with_problems"] == 0
    assert load["error_codes"] == {}
    assert skipped == 0
    assert webhooks.get("unexpected", 0) == 0
    assert end["gateway_rss_mb"] <= rss_limit_mb
    assert end["worker_rss_mb"] <= warm["worker_rss_mb"] * 1.2 + 20
    assert len(stamps) >= max(1, int(SOAK_S // REFRESH_INTERVAL_S) - 1)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
