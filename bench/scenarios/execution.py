"""Execution from cached subtrees (scenario e): bench/execution_cpu.py in a process of its
own, on the demo scale (seeded into the run's work directory) and on the run's
bench-scale SQLite: each dashboard operation's CPU as the admin and as the director with
the largest scope, executed as the endpoint executes it; and the phases of the refresh
cycles it runs first (the dashboards phase executes every caller's DirectorSummary and
CohortList)."""

import sys
from pathlib import Path
from typing import Any

import orjson

from bench.setup import GATEWAY, Rig, log
from tests.harness.processes import ROOT, child_env

# Executions measured per operation and caller: the demo scale's are short.
REPEAT = {"demo": 300, "bench": 40}


def execution(rig: Rig) -> dict[str, Any]:
    demo = rig.work / "demo.sqlite3"
    env = child_env(pythonpath=(rig.source, ROOT))  # in process: no Redis, memory cache
    rig.run_child(
        "seed-demo",
        [*GATEWAY, "seed", "--scale", "demo", "--seed", str(rig.config.seed),
         "--no-checksum", "--database-url", f"sqlite+aiosqlite:///{demo}"],
        env=env,
        timeout_s=300,
        cwd=rig.source,
    )  # fmt: skip
    out: dict[str, Any] = {}
    for scale, database in (("demo", demo), ("bench", rig.sqlite_path)):
        log(f"execution CPU per operation, {scale} scale …")
        target = rig.work / f"execution-{scale}.json"
        rig.run_child(
            f"execution-{scale}",
            [sys.executable, "-m", "bench.execution_cpu", "--database", str(database),
             "--repeat", str(REPEAT[scale]), "--json", str(target)],
            env=env,
            timeout_s=900,
            cwd=rig.source,
        )  # fmt: skip
        out[scale] = orjson.loads(Path(target).read_bytes())
    return out


# Goals (issue "execution that does not grow with scope"): every dashboard operation at
# the demo scale, and the admin's first CohortList page at the bench scale.
TARGET_DEMO_MS = 1.0
TARGET_ADMIN_LIST_BENCH_MS = 5.0


def _ms(found: dict[str, Any], operation: str, caller: str) -> float | None:
    for row in found.get("operations", []):
        if (row["operation"], row["caller"]) == (operation, caller):
            return float(row["cpu_ms"])
    return None


def targets(found: dict[str, Any] | None) -> list[tuple[str, float, float | None, str, str]]:
    """(name, goal, value, unit, note) of each target, for bench/results.py evaluate."""
    if not found:
        return []
    demo = found.get("demo", {})
    worst = max((r["cpu_ms"] for r in demo.get("operations", [])), default=None)
    return [
        ("executed operation CPU ≤ 1 ms (demo scale, worst)", TARGET_DEMO_MS, worst, "ms",
         "every dashboard query as the admin and a director"),
        ("admin's first CohortList page CPU ≤ 5 ms (bench scale)", TARGET_ADMIN_LIST_BENCH_MS,
         _ms(found.get("bench", {}), "CohortList", "admin"), "ms", "2,500 cohorts in scope"),
    ]  # fmt: skip


def report_lines(found: dict[str, Any] | None) -> list[str]:
    """The section of BENCHMARKS.md's other measurements (bench/report.py)."""
    if not found:
        return []
    demo, bench = found.get("demo", {}), found.get("bench", {})
    cells = []
    for row in demo.get("operations", []):
        at_bench = _ms(bench, row["operation"], row["caller"])
        cells.append(
            f"{row['operation']} as the {row['caller']} {row['cpu_ms']:.3f} ms "
            f"(bench scale {at_bench:.3f} ms)"
            if at_bench is not None
            else f"{row['operation']} as the {row['caller']} {row['cpu_ms']:.3f} ms"
        )
    lines = [
        "- **Executed from cached subtrees** (bench/execution_cpu.py, in process: CPU per "
        "execution and serialization, demo scale then bench scale): " + "; ".join(cells) + "."
    ]
    for scale, part in (("demo", demo), ("bench", bench)):
        phases = part.get("cycles_phases_s") or []
        if phases:
            dashboards = ", ".join(
                f"{p.get('dashboards', 0):.2f} s ({p.get('dashboards_cpu', 0):.2f} s of CPU)"
                for p in phases
            )
            lines.append(
                f"- **Refresh cycle, dashboards phase** ({scale} scale, in process, the "
                f"cycles run before those measurements): {dashboards}; cohorts phase "
                + ", ".join(f"{p.get('cohorts', 0):.2f}" for p in phases)
                + " s."
            )
    return lines
