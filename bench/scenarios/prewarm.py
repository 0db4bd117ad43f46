"""Full prewarm timings: `gateway refresh --all --sync` (every subtree, then every
director's DirectorSummary and CohortList answer) on SQLite and on a private PostgreSQL
seeded with the same scale."""

import contextlib
import statistics
import time
from typing import Any

import redis as redis_sync

from bench import cycles
from bench.config import TARGETS
from bench.cpu import CpuWindow
from bench.results import parse_refresh_output
from bench.scenarios.profiles import profile_prewarm, profiling
from bench.setup import GATEWAY, Rig, log
from tests.harness.processes import HOST
from tests.harness.servers import PostgresServer


def on_sqlite(rig: Rig) -> dict[str, Any]:
    result = _runs(rig, "sqlite", rig.env(), rig.config.prewarm_runs)
    if profiling(rig) and result["median_total_s"] > TARGETS["prewarm_sqlite_s"]:
        result["profile"] = profile_prewarm(rig, "sqlite", rig.env())
    return result


def on_postgres(rig: Rig) -> dict[str, Any]:
    log("starting a private PostgreSQL …")
    rig.postgres = PostgresServer().start()
    try:
        url = rig.postgres.create_database("bench")
        started = time.perf_counter()
        rig.run_child(
            "seed-postgres",
            [*GATEWAY, "seed", "--scale", rig.config.scale, "--seed", str(rig.config.seed),
             "--database-url", url],
            env=rig.env(),
            timeout_s=900,
            cwd=rig.source,
        )  # fmt: skip
        seed_s = round(time.perf_counter() - started, 1)
        log(f"seeded PostgreSQL in {seed_s} s")
        env = rig.env(database_url=url, redis_url=f"redis://{HOST}:{rig.redis_port}/1")
        result = _runs(rig, "postgres", env, rig.config.prewarm_runs)
        result["seed_s"] = seed_s
        if rig.config.cycles:  # on the same database, while it is up
            result["cycles"] = cycles.measure(
                url,
                rig.redis_port,
                db=2,
                runs=rig.config.cycle_runs,
                baseline=rig.config.baseline,
                work=rig.work,
            )
        result["server"] = rig.postgres.version()
        if profiling(rig) and result["median_total_s"] > TARGETS["prewarm_postgres_s"]:
            result["profile"] = profile_prewarm(rig, "postgres", env)
        return result
    finally:
        with contextlib.suppress(redis_sync.RedisError):
            rig.redis(1).flushdb()
        if rig.postgres is not None:
            rig.postgres.stop()
            rig.postgres = None


def _runs(rig: Rig, label: str, env: dict[str, str], runs: int) -> dict[str, Any]:
    """`gateway refresh --all --sync` until `runs` runs were not disturbed by other
    processes (at most runs + retries attempts); medians of the undisturbed ones."""
    out: list[dict[str, Any]] = []
    for i in range(max(1, runs) + max(0, rig.config.retries)):
        name = f"prewarm-{label}-{i}"
        quiet = rig.wait_quiet(f"prewarm {label}")
        cpu = CpuWindow().start()
        started = time.perf_counter()
        child = rig.run_child(
            name,
            [*GATEWAY, "refresh", "--all", "--sync"],
            env=env,
            timeout_s=900,
            cwd=rig.source,
        )
        wall = time.perf_counter() - started
        usage = cpu.stop()
        run = {
            **parse_refresh_output(child.log()),
            "process_wall_s": round(wall, 2),
            "clean": usage["other_cores"] <= rig.config.quiet_threshold,
            "cpu": usage,
            "quiet_wait": quiet,
        }
        out.append(run)
        log(
            f"prewarm {label} #{i + 1}: {run['total_s']} s (subtrees {run['subtrees_s']} s, "
            f"answers {run['responses_s']} s), other load {usage['other_cores']} cores"
        )
        if sum(r["clean"] for r in out) >= runs:
            break
    used = [r for r in out if r["clean"]] or out
    return {
        "runs": out,
        "runs_used": len(used),
        "median_total_s": round(statistics.median(r["total_s"] for r in used), 2),
        "median_subtrees_s": round(statistics.median(r["subtrees_s"] for r in used), 2),
        "median_responses_s": round(statistics.median(r["responses_s"] for r in used), 2),
    }
