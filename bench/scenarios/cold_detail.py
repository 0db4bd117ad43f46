"""CohortDetail with both its stored answer and its cohort subtree absent, one request
at a time: what a director waits for on a page nobody asked for since the last cycle."""

import asyncio
import random
from collections import defaultdict
from typing import Any

from bench import client, promfiles
from bench.cpu import CpuWindow
from bench.results import percentile
from bench.setup import Rig, Server, log
from bench.workload import persisted_get


def cold_detail(rig: Rig, server: Server) -> dict[str, Any]:
    """CohortDetail with both the answer and the cohort subtree absent, one at a time."""
    from gateway.cache.answers import AnswerId, answer_key
    from gateway.documents.dashboard import dashboard_operations
    from resolvers.caller import Caller

    keys = rig.cache_keys()
    detail = dashboard_operations()["CohortDetail"]
    rng = random.Random(rig.config.seed + 1)
    owner: dict[int, int] = {}
    for director in rig.workload.directors:
        for cohort in rig.workload.scopes[director]:
            owner.setdefault(cohort, director)
    cohorts = rng.sample(sorted(owner), min(rig.config.cold_samples, len(owner)))
    store = rig.redis(0)
    quiet = rig.wait_quiet("the cold cohort details")
    before = promfiles.read_counters(server.metrics_dir)  # type: ignore[arg-type]
    cpu = CpuWindow().start()
    timings: list[float] = []
    statuses: dict[int, int] = defaultdict(int)
    for cohort in cohorts:
        director = owner[cohort]
        variables = {"id": cohort}
        key = answer_key(
            keys,
            Caller(director, "director"),
            AnswerId.of(detail.sha256, "CohortDetail", variables),
        )
        store.delete(keys.cohort(cohort), key)
        raw = client.raw_get(
            persisted_get("CohortDetail", detail.sha256, variables),
            rig.workload.tokens[director],
            server.port,
        )
        [(status, seconds, body)] = asyncio.run(client.timed_sequence(server.port, [raw]))
        statuses[status] += 1
        if status == 200 and b'"errors"' not in body[:20]:
            timings.append(seconds * 1000)
    usage = cpu.stop()
    after = promfiles.read_counters(server.metrics_dir)  # type: ignore[arg-type]
    counters = promfiles.delta(after, before)
    cache = promfiles.cache_summary(counters)
    result = {
        "cpu": usage,
        "quiet_wait": quiet,
        "samples": len(cohorts),
        "ok": len(timings),
        "statuses": dict(statuses),
        "p50_ms": percentile(timings, 50),
        "p95_ms": percentile(timings, 95),
        "p99_ms": percentile(timings, 99),
        "max_ms": max(timings) if timings else float("nan"),
        "response_misses": cache["response"]["miss"],
        "cohort_misses": cache["cohort"]["miss"],
        "statements_per_request": promfiles.total(counters, promfiles.STATEMENTS)
        / max(1, len(cohorts)),
    }
    log(f"cold cohort detail: {result}")
    return result
