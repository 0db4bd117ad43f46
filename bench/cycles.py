"""The refresh side of `make bench`, on one bench-scale PostgreSQL database, in one run:

1. per-cohort cost: the subtree phase (bench/subtree_phase.py) of this tree and of a
   reference commit (`--baseline`, checked out in a temporary worktree), alternately,
   `--runs` times each; the medians and their ratio (target: at most 0.40);
2. scale-out: one whole refresh cycle with 1 and with 2 `gateway worker` processes,
   alternately, `--runs` times each, each time on an emptied Redis database once the
   workers' own cold-start cycle is over; the cycle's duration as its coordinator logs it
   (`refresh cycle done`); the medians and their ratio (target: at most 0.60).

    .venv/bin/python -m bench.cycles --database-url URL [--runs 3] [--baseline d5c0887]

`make bench` runs both on its own PostgreSQL (bench/run.py); alone, this needs a seeded
database (`gateway seed --scale bench --database-url URL`) and starts its own Redis.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis as redis_sync

from bench.cpu import CpuWindow, other_load
from tests.harness.processes import HOST, ChildProcess

ROOT = Path(__file__).resolve().parent.parent
PYTHON = str(Path(sys.executable))
BASELINE = "d5c0887"
TARGET_SUBTREE_RATIO = 0.40
TARGET_TWO_WORKERS_RATIO = 0.60
CYCLE_TIMEOUT_S = 900.0
QUIET_CORES = 0.2  # processes outside the bench using more than this: wait (bounded)
QUIET_WAIT_S = 45.0


def log(message: str) -> None:
    print(f"[bench.cycles] {message}", file=sys.stderr, flush=True)


@contextmanager
def baseline_tree(commit: str) -> Iterator[Path]:
    """The reference commit, checked out (detached) in a temporary worktree."""
    path = Path(tempfile.mkdtemp(prefix="bench-baseline-"))
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), commit],
        check=True,
        capture_output=True,
    )
    try:
        yield path
    finally:
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(path, ignore_errors=True)


def child_env(source: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env["PYTHONPATH"] = str(source)
    env["GATEWAY_LOG_FORMAT"] = "json"
    env.update({f"GATEWAY_{k.upper()}": v for k, v in settings.items()})
    return env


def wait_quiet() -> float:
    """Until processes outside the bench use at most QUIET_CORES (at most QUIET_WAIT_S):
    the cores they use now."""
    started = time.monotonic()
    load = other_load(1.0)
    while load > QUIET_CORES and time.monotonic() - started < QUIET_WAIT_S:
        time.sleep(3.0)
        load = other_load(2.0)
    return load


def subtree_phase(source: Path, url: str) -> dict[str, Any]:
    wait_quiet()
    window = CpuWindow().start()
    done = subprocess.run(
        [PYTHON, str(ROOT / "bench" / "subtree_phase.py"), url],
        env=child_env(source),
        cwd=source,
        capture_output=True,
        text=True,
        timeout=CYCLE_TIMEOUT_S,
        check=False,
    )
    usage = window.stop()
    if done.returncode != 0:
        raise RuntimeError(f"subtree phase of {source} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    # Other processes' load during the run (the database server counts as other here,
    # unless it is the bench's own).
    result["other_cores"] = usage["other_cores"]
    return result


def per_cohort_cost(url: str, runs: int, baseline: str) -> dict[str, Any]:
    old: list[dict[str, Any]] = []
    new: list[dict[str, Any]] = []
    with baseline_tree(baseline) as reference:
        for n in range(runs):
            for source, out, label in ((reference, old, baseline), (ROOT, new, "this tree")):
                out.append(subtree_phase(source, url))
                log(f"subtree phase #{n + 1} of {label}: {out[-1]}")
    old_s = statistics.median(r["wall_s"] for r in old)
    new_s = statistics.median(r["wall_s"] for r in new)
    cohorts = new[0]["cohorts"]
    return {
        "baseline": baseline,
        "cohorts": cohorts,
        "runs": {"baseline": old, "this_tree": new},
        "median_baseline_s": old_s,
        "median_s": new_s,
        "ratio": round(new_s / old_s, 3),
        "median_cpu_ms_per_cohort": {
            "baseline": round(1000 * statistics.median(r["cpu_s"] for r in old) / cohorts, 2),
            "this_tree": round(1000 * statistics.median(r["cpu_s"] for r in new) / cohorts, 2),
        },
        "target_ratio": TARGET_SUBTREE_RATIO,
    }


def records(path: Path, message: str) -> list[dict[str, Any]]:
    out = []
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return out
    for line in lines:
        if line.startswith("{") and f'"message":"{message}"' in line:
            out.append(json.loads(line))
    return out


def wait_for(predicate: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def one_cycle(
    work: Path, url: str, redis_port: int, db: int, workers: int, run: int
) -> dict[str, Any]:
    """A cycle with `workers` workers: started on an emptied Redis database; the cycle
    measured is the one asked for once their cold-start cycle is over."""
    redis_url = f"redis://{HOST}:{redis_port}/{db}"
    with redis_sync.Redis(host=HOST, port=redis_port, db=db) as client:
        client.flushdb()
    names = [f"cycle-{workers}w-{run}-{n}" for n in range(workers)]
    logs = [work / f"{name}.log" for name in names]
    children = [
        ChildProcess(
            name,
            [PYTHON, "-m", "gateway.cli", "worker"],
            child_env(
                ROOT,
                database_url=url,
                redis_url=redis_url,
                refresh_interval_s="3600",  # no tick: the cycles here are asked for
                worker_heartbeat_file=str(work / f"{name}.heartbeat"),
            ),
            log_dir=work,
            cwd=ROOT,
        ).spawn()
        for name in names
    ]
    try:

        def done() -> list[dict[str, Any]]:
            for child in children:
                if not child.alive:
                    raise RuntimeError(f"a worker exited:\n{child.tail()}")
            return [r for path in logs for r in records(path, "refresh cycle done")]

        wait_for(lambda: len(done()) >= 1, CYCLE_TIMEOUT_S, "the cold-start cycle")
        with redis_sync.Redis(host=HOST, port=redis_port, db=db) as client:
            wait_for(lambda: not client.exists("ddg:queue:cycle:lease"), 120, "the cycle to end")
        wait_quiet()
        window = CpuWindow().start()
        subprocess.run(
            [PYTHON, "-m", "gateway.cli", "refresh", "--all"],
            env=child_env(ROOT, database_url=url, redis_url=redis_url),
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        [first, measured] = wait_for(
            lambda: sorted(done(), key=lambda r: r["ts"])[:2] if len(done()) >= 2 else None,
            CYCLE_TIMEOUT_S,
            "the measured cycle",
        )
        usage = window.stop()
        batches = Counter(
            n
            for n, path in enumerate(logs)
            for r in records(path, "refresh batch done")
            if r["cycle"] == measured["cycle"]
        )
        with redis_sync.Redis(host=HOST, port=redis_port, db=db) as client:
            memory = client.info("memory")
            keys = client.dbsize()
        return {
            "redis_used_memory_mb": round(memory["used_memory"] / 1e6, 1),
            "redis_keys": keys,
            "workers": workers,
            "cycle_s": measured["duration_s"],
            "phases_s": measured.get("phases_s", {}),
            "batches_by_worker": [batches[n] for n in range(workers)],
            "other_cores": usage["other_cores"],
            "bench_cores": usage["bench_cores"],
            "cold_start_s": first["duration_s"],
        }
    finally:
        for child in children:
            child.stop()


def scale_out(work: Path, url: str, redis_port: int, db: int, runs: int) -> dict[str, Any]:
    by_workers: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
    for run in range(runs):
        for workers in (1, 2):
            result = one_cycle(work, url, redis_port, db, workers, run)
            by_workers[workers].append(result)
            log(f"cycle with {workers} worker(s) #{run + 1}: {result}")
    one = statistics.median(r["cycle_s"] for r in by_workers[1])
    two = statistics.median(r["cycle_s"] for r in by_workers[2])
    return {
        "runs": {str(k): v for k, v in by_workers.items()},
        "median_1_worker_s": round(one, 3),
        "median_2_workers_s": round(two, 3),
        "ratio": round(two / one, 3),
        "target_ratio": TARGET_TWO_WORKERS_RATIO,
    }


def measure(
    url: str,
    redis_port: int,
    *,
    db: int = 2,
    runs: int = 3,
    baseline: str = BASELINE,
    work: Path,
) -> dict[str, Any]:
    return {
        "database": url.rsplit("@", 1)[-1],
        "per_cohort_cost": per_cohort_cost(url, runs, baseline),
        "scale_out": scale_out(work, url, redis_port, db, runs),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.cycles", description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", required=True, help="A seeded bench-scale database.")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--baseline", default=BASELINE, help="Reference commit.")
    parser.add_argument("--output", default="", help="Also write the JSON here.")
    parser.add_argument(
        "--scale-out-only", action="store_true", help="Only the 1 vs 2 workers cycles."
    )
    args = parser.parse_args(argv)
    from tests.harness.servers import RedisServer

    work = Path(tempfile.mkdtemp(prefix="bench-cycles-"))
    with RedisServer() as server:
        if args.scale_out_only:
            results = {
                "database": args.database_url.rsplit("@", 1)[-1],
                "scale_out": scale_out(work, args.database_url, server.port, 2, args.runs),
            }
        else:
            results = measure(
                args.database_url, server.port, runs=args.runs, baseline=args.baseline, work=work
            )
    text = json.dumps(results, indent=2)
    print(text)
    if args.output:
        Path(args.output).write_text(text + "\n")
    log(f"logs in {work}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
