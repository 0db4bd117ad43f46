"""What a run measured, turned into results: the machine and revision it ran on, the
parsing of the children's output, percentiles, the evaluation against the targets, and
the results file (bench/results/<timestamp>.json)."""

import contextlib
import hashlib
import json
import math
import os
import platform
import re
import subprocess
from collections import defaultdict
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from bench.config import TARGETS, Config
from bench.scenarios import execution
from tests.harness.processes import ROOT


def percentile(values: list[float], q: float) -> float:
    """Nearest rank, as bench.openloop."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(1, min(len(ordered), math.ceil(q * len(ordered) / 100))) - 1]


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    versions = {}
    for dist in ("uvicorn", "uvloop", "httptools", "starlette", "strawberry-graphql", "redis",
                 "hiredis", "orjson", "SQLAlchemy", "aiosqlite", "asyncpg", "arq",
                 "prometheus-client", "PyJWT"):  # fmt: skip
        with contextlib.suppress(Exception):
            versions[dist] = version(dist)
    tools = {}
    for tool, argv in (
        ("wrk", ["wrk", "--version"]),
        ("redis-server", ["redis-server", "--version"]),
    ):
        with contextlib.suppress(OSError):
            out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            tools[tool] = (out.stdout or out.stderr).strip().splitlines()[0][:100]
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu,
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "os": _os_name(),
        "python": platform.python_version(),
        "packages": versions,
        "tools": tools,
    }


def _os_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    return platform.system()


def code_fingerprint(source: Path) -> str:
    """Read-only: a digest of the gateway's code as it is now (files, not git state), to
    tell whether other people's edits landed while the benchmark ran."""
    digest = hashlib.sha256()
    for package in ("gateway", "resolvers", "loaders", "workers"):
        for path in sorted((source / package).rglob("*")):
            if path.is_file() and path.suffix in (".py", ".graphql"):
                digest.update(str(path.relative_to(source)).encode() + b"\0")
                digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def git_revision() -> dict[str, Any]:
    """Read-only: the commit and whether the work tree had changes."""
    out: dict[str, Any] = {}
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        )
        out["commit"] = rev.stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        out["modified_files"] = [line[3:] for line in status.stdout.splitlines()]
    return out


# --------------------------------------------------------------------------- parsing


_REFRESHED = re.compile(r"refreshed (\d+) directors, (\d+) cohorts in ([\d.]+) s")
_PREWARMED = re.compile(r"prewarmed (\d+) answers for (\d+) callers in ([\d.]+) s")


def parse_refresh_output(text: str) -> dict[str, Any]:
    """The timings `gateway refresh --all --sync` prints: the whole command (subtrees, then
    the response prewarm) and the response prewarm alone."""
    refreshed = _REFRESHED.search(text)
    prewarmed = _PREWARMED.search(text)
    if refreshed is None:
        raise RuntimeError(f"unexpected `gateway refresh` output:\n{text[-2000:]}")
    total_s = float(refreshed.group(3))
    responses_s = float(prewarmed.group(3)) if prewarmed else 0.0
    return {
        "directors": int(refreshed.group(1)),
        "cohorts": int(refreshed.group(2)),
        "answers": int(prewarmed.group(1)) if prewarmed else 0,
        "total_s": total_s,
        "responses_s": responses_s,
        "subtrees_s": round(total_s - responses_s, 2),
    }


def parse_cycles(text: str) -> list[dict[str, Any]]:
    """Refresh cycles from the worker's JSON lines. A cycle in phases logs `refresh cycle
    done` last, with the whole cycle's duration and each phase's (`phases_s`); an older
    one logged it after its subtrees, then `prewarmed responses` after its answers."""
    cycles: list[dict[str, Any]] = []
    for line in text.splitlines():
        if not line.startswith("{"):
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        message = entry.get("message")
        ts = entry.get("ts")
        if not ts or message not in ("refresh cycle done", "prewarmed responses"):
            continue
        at = datetime.fromisoformat(ts).timestamp()
        phases = entry.get("phases_s")
        if message == "refresh cycle done" and isinstance(phases, dict):
            duration = float(entry.get("duration_s", 0))
            subtrees = sum(float(phases.get(p, 0)) for p in ("cohorts", "directors"))
            responses = sum(float(phases.get(p, 0)) for p in ("dashboards", "answers"))
            cycles.append(
                {
                    "start": at - duration,
                    "subtrees_s": round(subtrees, 3),
                    "end": at,
                    "responses_s": round(responses, 3),
                }
            )
        elif message == "refresh cycle done":
            duration = float(entry.get("duration_s", 0))
            cycles.append(
                {"start": at - duration, "subtrees_s": duration, "end": at, "responses_s": None}
            )
        elif message == "prewarmed responses" and cycles and cycles[-1]["responses_s"] is None:
            cycles[-1]["responses_s"] = float(entry.get("duration_s", 0))
            cycles[-1]["end"] = at
    for c in cycles:
        c["started_at"] = datetime.fromtimestamp(c["start"], UTC).isoformat(timespec="seconds")
        c["total_s"] = round(c["end"] - c["start"], 2)
    return cycles


def analyze_open_loop(open_loop: dict[str, Any], cycles: list[dict[str, Any]]) -> dict[str, Any]:
    """Open-loop latencies split by time: before the last cycle's entries turned stale,
    from that moment on, and during worker refresh cycles; plus a 10-second timeline."""
    t0 = open_loop.get("t0_wall")
    samples = open_loop.get("_samples") or []
    if t0 is None or not samples:
        return {}
    stale_at_text = (open_loop.get("duration_rule") or {}).get("entries_turn_stale_at")
    stale_at = datetime.fromisoformat(stale_at_text).timestamp() if stale_at_text else None
    inf = float("inf")
    before: list[float] = []
    after: list[float] = []
    during: list[float] = []
    buckets: dict[int, list[float]] = defaultdict(list)
    first = t0 + samples[0][0]
    for offset, latency in samples:
        at = t0 + offset
        value = latency if latency is not None else inf
        (after if stale_at is not None and at >= stale_at else before).append(value)
        if any(c["start"] <= at <= c["end"] for c in cycles):
            during.append(value)
        buckets[int((at - first) // 10)].append(value)

    def stats(values: list[float]) -> dict[str, Any] | None:
        if not values:
            return None
        return {
            "count": len(values),
            "p50_ms": percentile(values, 50),
            "p95_ms": percentile(values, 95),
            "p99_ms": percentile(values, 99),
            "max_ms": max(values),
        }

    return {
        "stale_at": stale_at_text,
        "before_stale": stats(before),
        "from_stale": stats(after),
        "during_cycles": stats(during),
        "timeline_10s": [
            [
                k * 10,
                len(v),
                round(percentile(v, 50), 2),
                round(percentile(v, 99), 2),
                round(max(v), 2),
            ]
            for k, v in sorted(buckets.items())
        ],
    }


def hit_rate_over_run(
    windows: list[dict[str, Any]], cycles: list[dict[str, Any]]
) -> dict[str, Any]:
    """Response fast-path look-ups over every measured fast-path window of the run."""
    totals: dict[str, float] = defaultdict(float)
    rows = []
    for w in windows:
        if w.get("scenario") not in ("b", "open-loop") or "cache" not in w:
            continue
        for result, count in w["cache"]["response"].items():
            totals[result] += count
        start, end = w["window"]
        overlapping = [c for c in cycles if c["start"] < end and c["end"] > start]
        rows.append(
            {
                "scenario": w["scenario"],
                "workers": w.get("workers"),
                "response": w["cache"]["response"],
                "hit_rate": w.get("response_hit_rate"),
                "refresh_cycles_overlapping": len(overlapping),
            }
        )
    looked = sum(totals.values())
    return {
        "response": dict(totals),
        "rate": totals["hit"] / looked if looked else None,
        "windows": rows,
    }


# --------------------------------------------------------------------------- targets


def evaluate(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target: the measured value, met or not, and by how much."""
    rows: list[dict[str, Any]] = []

    def add(name: str, target: float, value: float | None, higher_is_better: bool, unit: str,
            note: str = "") -> None:  # fmt: skip
        if value is None or (isinstance(value, float) and math.isnan(value)):
            rows.append({"target": name, "goal": target, "value": None, "met": False,
                         "unit": unit, "note": note or "not measured"})  # fmt: skip
            return
        met = value >= target if higher_is_better else value <= target
        margin = (value / target - 1) * 100 if target else 0.0
        rows.append({"target": name, "goal": target, "value": value, "met": met, "unit": unit,
                     "margin_pct": round(margin, 1), "note": note})  # fmt: skip

    for name, goal, value, unit, note in execution.targets(results.get("execution")):
        add(name, goal, value, False, unit, note)
    scenarios = results.get("scenarios", [])
    best = results.get("best_workers")

    def row(scenario: str, workers: int | None) -> dict[str, Any] | None:
        return next(
            (r for r in scenarios if r["scenario"] == scenario and r["workers"] == workers), None
        )

    a, b = row("a", best), row("b", best)
    ratio = b["throughput"] / a["throughput"] if a and b and a["throughput"] else None
    add("fast path ≥ 0.5 × limit throughput", TARGETS["fast_path_vs_limit"], ratio, True, "×",
        f"{best} worker(s)")  # fmt: skip
    last = max((r["workers"] for r in scenarios), default=None)

    def ratio_of(over: str, under: str) -> float | None:
        o, u = row(over, last), row(under, last)
        return o["throughput"] / u["throughput"] if o and u and u["throughput"] else None

    if row("p", last):
        add("POST ≥ 0.8 × persisted GET throughput", TARGETS["post_vs_get"], ratio_of("p", "b"),
            True, "×", "the load's mix, POST of the document's text")  # fmt: skip
    if row("xp", last):
        add("POST ≥ 0.8 × persisted GET throughput", TARGETS["post_vs_get"],
            ratio_of("xp", "xg"), True, "×", "the admins' CohortList")  # fmt: skip
    if row("z", last):
        add("fast path with gzip ≥ 0.9 × without", TARGETS["gzip_vs_plain"], ratio_of("z", "b"),
            True, "×", "Accept-Encoding: gzip, the load's mix")  # fmt: skip
    ol = results.get("open_loop") or {}
    lat = ol.get("latency_ms", {})
    errors = ol.get("errors")
    add("open-loop p95 ≤ 10 ms", TARGETS["open_loop_p95_ms"], lat.get("95"), False, "ms")
    add("open-loop p99 ≤ 25 ms", TARGETS["open_loop_p99_ms"], lat.get("99"), False, "ms")
    rows.append({"target": "open-loop: zero errors", "goal": 0, "value": errors,
                 "met": errors == 0, "unit": "errors", "note": ""})  # fmt: skip
    hit = (results.get("hit_rate") or {}).get("rate")
    add("hit rate ≥ 99.5 %", TARGETS["hit_rate"], hit, True, "")
    prewarm = results.get("prewarm", {})
    add("full prewarm, SQLite ≤ 20 s", TARGETS["prewarm_sqlite_s"],
        prewarm.get("sqlite", {}).get("median_total_s"), False, "s", "median")  # fmt: skip
    add("full prewarm, PostgreSQL ≤ 15 s", TARGETS["prewarm_postgres_s"],
        prewarm.get("postgres", {}).get("median_total_s"), False, "s", "median")  # fmt: skip
    add("cold cohort detail p95 ≤ 50 ms", TARGETS["cold_detail_p95_ms"],
        (results.get("cold_detail") or {}).get("p95_ms"), False, "ms")  # fmt: skip
    memory = results.get("memory") or {}
    add("gateway RSS ≤ 250 MB", TARGETS["gateway_rss_mb"],
        (memory.get("gateway") or {}).get("rss_mb"), False, "MB",
        f"RSS summed over {len((memory.get('gateway') or {}).get('processes', []))} "
        "processes")  # fmt: skip
    add("Redis ≤ 250 MB", TARGETS["redis_mb"], memory.get("redis_used_memory_mb"), False, "MB",
        "used_memory")  # fmt: skip
    live = results.get("subscriptions")
    if live:
        cycle = live["cycle"]
        rows.append({"target": "one cycle: every subscriber updated", "goal": cycle["expected"],
                     "value": cycle["updated"], "met": cycle["updated"] == cycle["expected"],
                     "unit": "subscribers", "note": ""})  # fmt: skip
        add("rewrite → push p95 ≤ 1 s", TARGETS["subscription_delay_p95_s"],
            cycle["delay_p95_s"], False, "s",
            f"{live['subscribers']} subscribers, {live['directors']} directors")  # fmt: skip
        add(
            "memory per idle subscription ≤ 50 KB",
            TARGETS["subscription_idle_kb"],
            live["memory"]["per_subscription_kb"],
            False,
            "KB",
            "gateway RSS growth / count",
        )
        add("fast path with subscribers ≥ 0.9 × without", TARGETS["fast_path_with_subscribers"],
            live["fast_path_ratio"], True, "×")  # fmt: skip
    return rows


def write_results(results: dict[str, Any], config: Config) -> Path:
    directory = Path(config.results_dir)
    directory = directory if directory.is_absolute() else ROOT / directory
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = directory / f"{stamp}.json"
    ol = results.get("open_loop")
    if ol and "_samples" in ol:
        samples = ol.pop("_samples")
        samples_path = directory / f"{stamp}-openloop-samples.json"
        samples_path.write_text(json.dumps(samples))
        ol["samples_file"] = str(samples_path)
    path.write_text(json.dumps(results, indent=2, default=str))
    return path
