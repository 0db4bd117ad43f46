"""Closed-loop load with wrk and bench/requests.lua: (a) the limit, bench/limit_app.py;
(b) the response fast path; (c) subtree cache + execution; (d) no cache. Before any of
it, every distinct request once (the first visits).

On the fast-path server of the last worker count, right after its (b) window, the
variants of (b) that it is compared with: (p) the same requests as POSTs of the
document's text; (z) the same GETs with `Accept-Encoding: gzip`; (xg) and (xp) the admins'
CohortList (about 25 KB at bench scale) by persisted GET and by POST."""

import asyncio
import contextlib
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import redis as redis_sync

from bench import client, promfiles
from bench.cpu import CpuWindow
from bench.limit_app import limit_key
from bench.setup import Rig, Server, log
from tests.harness.processes import HOST

LUA = Path(__file__).resolve().parent.parent / "requests.lua"
# Variants of (b): the scenario set's letter, the workload's request file, Accept-Encoding.
VARIANTS = {
    "p": ("p", "post_file", None),
    "z": ("z", "requests_file", "gzip"),
    "xg": ("x", "admin_get_file", None),
    "xp": ("x", "admin_post_file", None),
}


def closed_loop(rig: Rig) -> tuple[list[dict[str, Any]], int, dict[str, Any]]:
    """Scenarios (a) and (b) for each worker count, then (c) and (d) with the count that
    served (b) best: the rows, that count, and the first visits (made before any load)."""
    wanted = rig.config.scenario_set
    rows: list[dict[str, Any]] = []
    first: dict[str, Any] = {}
    for i, workers in enumerate(rig.config.worker_counts):
        if i == 0 or "b" in wanted:
            fast = rig.start_gateway(workers, "fast")
            try:
                if i == 0:
                    first = first_visits(rig, fast)
                if "b" in wanted:
                    rows.append(measure(rig, fast, "b"))
                if i == len(rig.config.worker_counts) - 1:
                    for variant, (letter, _, _) in VARIANTS.items():
                        if letter in wanted and (letter != "x" or rig.workload.admins):
                            rows.append(measure(rig, fast, variant))
            finally:
                rig.stop_server(fast)
        if "a" in wanted:
            limit = rig.start_limit(workers)
            try:
                rows.append(measure(rig, limit, "a"))
            finally:
                rig.stop_server(limit)
    fast_rows = [r for r in rows if r["scenario"] == "b"]
    best = (
        max(fast_rows, key=lambda r: r["throughput"])["workers"]
        if fast_rows
        else rig.config.worker_counts[-1]
    )
    log(f"worker count for the rest: {best}")
    for kind, scenario in (("subtree", "c"), ("nocache", "d")):
        if scenario not in wanted:
            continue
        server = rig.start_gateway(best, kind)
        try:
            rows.append(measure(rig, server, scenario))
        finally:
            rig.stop_server(server)
    with contextlib.suppress(redis_sync.RedisError):
        rig.redis(2).flushdb()  # the limit's copies are not the gateway's memory
    return rows, best, first


def first_visits(rig: Rig, server: Server) -> dict[str, Any]:
    """Every distinct request once through the fast path: the first visit of each
    CohortDetail page stores its answer (the prewarm covers the two pages without
    arguments); the answers are copied for the limit app, keyed as it reads them."""
    started = time.perf_counter()
    before = promfiles.read_counters(server.metrics_dir)  # type: ignore[arg-type]
    raws = []
    for line in rig.workload.distinct:
        target, token = line.split("\t")
        raws.append(client.raw_get(target, token, server.port))
    answers = asyncio.run(client.fetch_all(server.port, raws, concurrency=8))
    bad = [
        (line.split("\t")[0][:80], status, body[:200])
        for line, (status, body) in zip(rig.workload.distinct, answers, strict=True)
        if status != 200 or body.startswith(b'{"errors"') or b'"errors":' in body[:40]
    ]
    if bad:
        raise RuntimeError(f"{len(bad)} first visits failed, e.g. {bad[:3]}")
    limit = rig.redis(2)
    limit.flushdb()
    with limit.pipeline(transaction=False) as pipe:
        for line, (_, body) in zip(rig.workload.distinct, answers, strict=True):
            target, token = line.split("\t")
            query = target.split("?", 1)[1].encode()
            pipe.set(limit_key(f"Bearer {token}".encode(), query), body)
        pipe.execute()
    after = promfiles.read_counters(server.metrics_dir)  # type: ignore[arg-type]
    cache = promfiles.cache_summary(promfiles.delta(after, before))
    result = {
        "requests": len(raws),
        "seconds": round(time.perf_counter() - started, 2),
        "response_cache": cache["response"],
        "answer_bytes_median": statistics.median(len(b) for _, b in answers),
    }
    log(f"first visits: {result}")
    return result


def measure(rig: Rig, server: Server, scenario: str) -> dict[str, Any]:
    attempts = []
    for attempt in range(1 + max(0, rig.config.retries)):
        result = _measure_once(rig, server, scenario, attempt)
        attempts.append(
            {
                "throughput": result["throughput"],
                "cpu": result["cpu"],
                "quiet_wait": result["quiet_wait"],
            }  # fmt: skip
        )
        if result["cpu"]["other_cores"] <= rig.config.quiet_threshold:
            break
        again = "measuring again" if attempt < rig.config.retries else "kept, flagged"
        log(f"{scenario}: other processes used {result['cpu']['other_cores']} cores; {again}")
    result["attempts"] = attempts
    rig.windows.append(result)
    return result


def _measure_once(rig: Rig, server: Server, scenario: str, attempt: int) -> dict[str, Any]:
    label = f"{scenario}-{server.workers}-{attempt}"
    cycle_wait_s = rig.clear_of_cycles(
        rig.config.warmup + rig.config.duration, f"scenario ({scenario})"
    )
    quiet = rig.wait_quiet(f"scenario ({scenario})")
    if rig.config.warmup > 0:
        wrk(rig, server, rig.config.warmup, label + "-warmup", scenario)
    before = promfiles.read_counters(server.metrics_dir) if server.metrics_dir else None
    assert rig.redis_server is not None
    cpu = CpuWindow({"server": server.child.pid, "redis": rig.redis_server.pid}).start()
    t0 = time.time()
    raw = wrk(rig, server, rig.config.duration, label, scenario)
    t1 = time.time()
    usage = cpu.stop()
    after = promfiles.read_counters(server.metrics_dir) if server.metrics_dir else None
    seconds = raw["duration_us"] / 1e6
    pct = raw["latency_us"]["percentiles"]
    errors = raw["errors"]
    result: dict[str, Any] = {
        "scenario": scenario,
        "server": server.kind,
        "workers": server.workers,
        "window": [t0, t1],
        "requests": raw["requests"],
        "seconds": round(seconds, 2),
        "throughput": round(raw["requests"] / seconds, 1),
        "p50_ms": pct["50"] / 1000,
        "p95_ms": pct["95"] / 1000,
        "p99_ms": pct["99"] / 1000,
        "max_ms": raw["latency_us"]["max"] / 1000,
        "non_2xx": errors["status"],
        "socket_errors": errors["connect"] + errors["read"] + errors["write"] + errors["timeout"],
        "errors_detail": errors,
        "mb_per_s": round(raw["bytes"] / seconds / 1e6, 2),
        # Bytes read per answer, headers included (what gzip changes).
        "bytes_per_request": round(raw["bytes"] / max(1, raw["requests"])),
        "memory": server.child.memory(),
        "cpu": usage,
        "quiet_wait": quiet,
        "cycle_wait_s": cycle_wait_s,
        # CPU the server's processes spent per answered request: unlike throughput,
        # this does not depend on what else the machine's cores were doing.
        "server_cpu_us_per_request": round(
            usage["groups_cpu_s"]["server"] * 1e6 / max(1, raw["requests"]), 1
        ),
        "redis_cpu_us_per_request": round(
            usage["groups_cpu_s"]["redis"] * 1e6 / max(1, raw["requests"]), 1
        ),
    }
    if before is not None and after is not None:
        counters = promfiles.delta(after, before)
        cache = promfiles.cache_summary(counters)
        statements = promfiles.total(counters, promfiles.STATEMENTS)
        result["cache"] = cache
        result["response_hit_rate"] = promfiles.hit_rate(cache, ("response",))
        result["subtree_hit_rate"] = promfiles.hit_rate(cache, promfiles.SUBTREE_KINDS)
        result["statements"] = statements
        result["statements_per_request"] = statements / raw["requests"] if raw["requests"] else None
    log(
        f"{scenario} ({server.workers}w): {result['throughput']:.0f} req/s, "
        f"p50 {result['p50_ms']:.2f} p95 {result['p95_ms']:.2f} p99 {result['p99_ms']:.2f} ms, "
        f"errors {result['non_2xx']}+{result['socket_errors']}, "
        f"hit {result.get('response_hit_rate')}, "
        f"stmts/req {result.get('statements_per_request')}, "
        f"server CPU {result['server_cpu_us_per_request']} µs/request, "
        f"other load {usage['other_cores']} cores"
    )
    return result


def wrk(rig: Rig, server: Server, seconds: float, label: str, scenario: str) -> dict[str, Any]:
    out = rig.work / f"wrk-{label}.json"
    out.unlink(missing_ok=True)
    cfg = rig.config
    _, file_attribute, accept_encoding = VARIANTS.get(scenario, ("", "requests_file", None))
    env = {
        **os.environ,
        "BENCH_REQUESTS": str(getattr(rig.workload, file_attribute)),
        "BENCH_WRK_OUT": str(out),
        "BENCH_ACCEPT_ENCODING": accept_encoding or "",
    }
    argv = [
        "wrk", "-t", str(cfg.threads), "-c", str(max(cfg.connections, cfg.threads)),
        "-d", f"{max(1, round(seconds))}s", "--timeout", "30s", "-s", str(LUA),
        f"http://{HOST}:{server.port}",
    ]  # fmt: skip
    child = rig.run_child(f"wrk-{label}", argv, env=env, timeout_s=seconds + 60)
    if not out.exists():
        raise RuntimeError(f"wrk wrote no report:\n{child.tail(30)}")
    return json.loads(out.read_text())
