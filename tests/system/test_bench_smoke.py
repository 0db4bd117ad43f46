"""`make bench` in miniature: the harness itself, end to end, at demo scale.

Off by default (`-m 'not benchmark'` in pyproject); run with `pytest -m benchmark`. Every
step of bench/run.py runs — seed, private Redis and PostgreSQL, prewarm timings, the
limit app, the gateway with 1 and 2 workers, wrk, the open-loop generator, py-spy, cold
cohort details, memory — for about two seconds each, and the report must hold every
field with zero errors. Speed goals are not asserted here (they live in BENCHMARKS.md)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.benchmark

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str]:
    if shutil.which("wrk") is None or shutil.which("redis-server") is None:
        pytest.skip("needs wrk and redis-server")
    tmp = tmp_path_factory.mktemp("bench")
    argv = [
        sys.executable, "-m", "bench.run",
        "--scale", "demo", "--database", str(tmp / "demo.sqlite3"),
        "--duration", "2", "--warmup", "1", "--connections", "8", "--workers", "1,2",
        "--requests", "2000", "--rate", "300",
        "--open-loop-duration", "3", "--open-loop-warmup", "1",
        "--cold-samples", "10", "--prewarm-runs", "1", "--profile-seconds", "2",
        "--quiet-wait", "0", "--retries", "0", "--subscribers", "20",
        "--results-dir", str(tmp / "results"), "--markdown", str(tmp / "BENCHMARKS.md"),
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "BENCH_"))}
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-5000:]
    [path] = [p for p in (tmp / "results").glob("*.json") if "samples" not in p.name]
    return json.loads(path.read_text()), (tmp / "BENCHMARKS.md").read_text()


def test_every_scenario_is_measured_without_errors(bench_run: tuple[dict, str]) -> None:
    results, _ = bench_run
    rows = {(r["scenario"], r["workers"]): r for r in results["scenarios"]}
    best = results["best_workers"]
    assert set(rows) == {
        *[("a", 1), ("b", 1), ("a", 2), ("b", 2), ("c", best), ("d", best)],
        *[("p", 2), ("z", 2), ("xg", 2), ("xp", 2)],  # beside (b) on the last worker count
    }
    for row in rows.values():
        assert row["requests"] > 0 and row["throughput"] > 0
        assert 0 < row["p50_ms"] <= row["p95_ms"] <= row["p99_ms"]
        assert row["non_2xx"] == 0 and row["socket_errors"] == 0
        assert row["server_cpu_us_per_request"] > 0
        assert set(row["cpu"]) >= {"other_cores", "bench_cores", "machine_busy_cores"}
    for key in (("b", 1), ("b", 2), ("c", best), ("d", best), ("p", 2), ("z", 2), ("xp", 2)):
        assert rows[key]["statements_per_request"] is not None
        assert rows[key]["memory"]["rss_mb"] > 0
    assert rows[("b", best)]["response_hit_rate"] is not None
    assert rows[("c", best)]["subtree_hit_rate"] is not None
    assert rows[("d", best)]["statements_per_request"] > 0  # live from upstream


def test_open_loop_cold_prewarm_memory_hit_rate(bench_run: tuple[dict, str]) -> None:
    results, _ = bench_run
    ol = results["open_loop"]
    assert ol["rate_target"] == 300 and ol["completed"] > 0
    assert ol["errors"] == 0 and ol["non_2xx"] == 0 and ol["unanswered"] == 0
    assert 0 < ol["latency_ms"]["50"] <= ol["latency_ms"]["95"] <= ol["latency_ms"]["99"]
    assert ol["send_lag_ms"]["99"] >= 0
    cold = results["cold_detail"]
    assert cold["ok"] == cold["samples"] == 10
    assert cold["response_misses"] == 10 and cold["cohort_misses"] >= 10
    assert cold["p95_ms"] > 0 and cold["statements_per_request"] > 0
    for backend in ("sqlite", "postgres"):
        prewarm = results["prewarm"][backend]
        assert prewarm["median_total_s"] > 0 and prewarm["runs"][0]["answers"] > 0
    memory = results["memory"]
    assert memory["gateway"]["rss_mb"] > 0 and memory["redis_used_memory_mb"] > 0
    processes = memory["gateway"]["processes"]
    # The workers under the gateway's supervisor (the supervisor itself imports only uvicorn).
    serving = [p for p in processes if "--worker" in p["cmd"]] or processes
    assert serving and all(p["uvloop"] and p["httptools"] for p in serving)
    assert results["hit_rate"]["rate"] is not None
    assert results["first_visits"]["requests"] > 0


def test_report(bench_run: tuple[dict, str]) -> None:
    results, markdown = bench_run
    targets = {t["target"] for t in results["evaluation"]}
    # 14, POST against GET and gzip against plain, and the two of executed CPU.
    assert len(targets) == 18 and all(t["value"] is not None for t in results["evaluation"])
    assert {
        "executed operation CPU ≤ 1 ms (demo scale, worst)",
        "admin's first CohortList page CPU ≤ 5 ms (bench scale)",
        "POST ≥ 0.8 × persisted GET throughput",
        "fast path with gzip ≥ 0.9 × without",
    } <= targets
    assert results["profiles"]["fast_path"]["samples"] > 0
    for heading in ("## Results", "## Targets", "## Method", "| Scenario |", "(b)/(a)"):
        assert heading in markdown
    assert results["machine"]["nproc"] and results["machine"]["cpu_model"]


def test_subscriptions_are_measured(bench_run: tuple[dict, str]) -> None:
    results, markdown = bench_run
    live = results["subscriptions"]
    assert live["subscribers"] == 20 and live["directors"] == 10
    cycle = live["cycle"]
    assert cycle["updated"] == cycle["expected"] == 20
    assert 0 <= cycle["delay_p50_s"] <= cycle["delay_p95_s"] <= cycle["delay_max_s"]
    assert live["fast_path_without"]["non_2xx"] == live["fast_path_with"]["non_2xx"] == 0
    assert live["fast_path_ratio"] > 0 and live["memory"]["idle_rss_mb"] > 0
    assert "**Subscriptions**" in markdown


def test_each_operation_is_executed_and_measured(bench_run: tuple[dict, str]) -> None:
    results, markdown = bench_run
    for scale in ("demo", "bench"):
        rows = results["execution"][scale]["operations"]
        assert sorted((r["operation"], r["caller"]) for r in rows) == [
            (operation, caller)
            for operation in ("CohortDetail", "CohortList", "DirectorSummary")
            for caller in ("admin", "director")
        ]
        assert all(r["cpu_ms"] > 0 for r in rows)
        assert [sorted(p) for p in results["execution"][scale]["cycles_phases_s"]] == [
            ["answers", "cohorts", "dashboards", "dashboards_cpu", "directors"]
        ] * 2
    assert "**Executed from cached subtrees**" in markdown
