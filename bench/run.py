"""`make bench`: the gateway under load on this machine, in one run, into one report.

    .venv/bin/python -m bench.run [--duration 20] [--workers 1,2] …   (see --help)

Every option also reads BENCH_<OPTION> from the environment (flags win; bench/config.py).
Steps:

 1. bench-scale SQLite at var/bench.sqlite3 (seeded only when missing or incomplete); a
    private redis-server; the persisted-query manifest; a token for each of the directors
    (bench/setup.py, bench/workload.py);
 2. full prewarm (`gateway refresh --all --sync`: every subtree, then every director's
    DirectorSummary and CohortList answer) on SQLite and on a private PostgreSQL; there,
    the subtree phase against a reference commit and a cycle with 1 and 2 workers
    (bench/cycles.py);
 3. the gateway (`gateway serve`, production profile) and an arq worker (`gateway worker`);
 4. closed-loop load with wrk + bench/requests.lua: (a) the limit, bench/limit_app.py;
    (b) the response fast path; (c) subtree cache + execution; (d) no cache;
 5. the fast path at a fixed open-loop rate (bench/openloop.py);
 6. hit rate, cold cohort detail, upstream statements per request, RSS, Redis memory;
    each dashboard operation's CPU executed from cached subtrees, demo and bench scale
    (bench/execution_cpu.py) (steps 2 to 6: bench/scenarios/);
 7. bench/results/<timestamp>.json and BENCHMARKS.md (bench/results.py, bench/report.py).

Every process it starts runs in its own process group and is stopped on exit, on error
and on Ctrl-C.
"""

import os
import shutil
import signal
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.config import TARGETS, Config, parse_config
from bench.results import (
    analyze_open_loop,
    code_fingerprint,
    evaluate,
    git_revision,
    hit_rate_over_run,
    machine,
    parse_cycles,
    write_results,
)
from bench.scenarios import (
    closed_loop,
    cold_detail,
    execution,
    memory,
    open_loop,
    prewarm,
    profiles,
    subscriptions,
)
from bench.setup import Rig, log
from tests.harness.processes import ROOT


class Bench:
    def __init__(self, config: Config, overrides: dict[str, str]) -> None:
        self.config = config
        self.overrides = overrides
        self.rig = Rig(config)
        self.results: dict[str, Any] = {}

    def run(self) -> dict[str, Any]:
        started = time.time()
        ok = False
        try:
            self._run(started)
            ok = True
            return self.results
        finally:
            self.rig.stop_all(keep_logs=not ok or self.config.keep_logs)

    def _run(self, started: float) -> None:
        cfg, rig = self.config, self.rig
        self.results = {
            "started_at": datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds"),
            "command": self.command(),
            "config": asdict(cfg),
            "machine": machine(),
            "revision": {**git_revision(), "code_at_start": code_fingerprint(rig.source)},
            "targets": TARGETS,
        }
        self.results["dataset"] = rig.ensure_database()
        rig.start_redis()
        rig.write_manifest()
        self.results["prewarm"] = {}
        if cfg.postgres:
            self.results["prewarm"]["postgres"] = prewarm.on_postgres(rig)
            self.results["cycles"] = self.results["prewarm"]["postgres"].pop("cycles", None)
        self.results["prewarm"]["sqlite"] = prewarm.on_sqlite(rig)
        if "e" in cfg.scenario_set:  # before the gateway and the worker start: in quiet
            self.results["execution"] = execution.execution(rig)
        worker = rig.start_worker()
        self.results["directors"] = rig.workload.load_dataset(rig.sqlite_path)
        self.results["load"] = rig.workload.write_requests(cfg)
        rows, best, first_visits = closed_loop.closed_loop(rig)
        self.results["first_visits"] = first_visits
        self.results["best_workers"] = best
        self.results["scenarios"] = rows
        fast = rig.start_gateway(best, "fast")
        try:
            self.results["open_loop"] = open_loop.open_loop(rig, fast)
            self.results["profiles"] = profiles.fast_path(rig, fast)
            self.results["cold_detail"] = cold_detail.cold_detail(rig, fast)
            self.results["memory"] = memory.final_memory(rig, fast)
            if "s" in cfg.scenario_set:
                self.results["subscriptions"] = subscriptions.subscriptions(
                    rig, fast, cfg.subscribers
                )
        finally:
            rig.stop_server(fast)
        # The worker's refresh cycles during the run, from its JSON log lines.
        self.results["refresh_cycles"] = parse_cycles(worker.log())
        self.results["open_loop"]["by_time"] = analyze_open_loop(
            self.results["open_loop"], self.results["refresh_cycles"]
        )
        self.results["hit_rate"] = hit_rate_over_run(rig.windows, self.results["refresh_cycles"])
        self.results["revision"]["code_at_end"] = code_fingerprint(rig.source)
        self.results["revision"]["source"] = str(rig.source)
        self.results["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        self.results["total_seconds"] = round(time.time() - started, 1)
        self.results["evaluation"] = evaluate(self.results)

    def command(self) -> str:
        parts = [f"{k}={v}" for k, v in self.overrides.items() if k.startswith("BENCH_")]
        flags = [f"{k}={v}" for k, v in self.overrides.items() if k.startswith("--")]
        base = "make bench" if not flags else ".venv/bin/python -m bench.run " + " ".join(flags)
        return " ".join([*parts, base])


def _raise_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    config, overrides = parse_config(argv)
    if shutil.which("wrk") is None:
        print("bench: wrk not found (apt-get install wrk)", file=sys.stderr)
        return 2
    if shutil.which("redis-server") is None:
        print("bench: redis-server not found", file=sys.stderr)
        return 2
    # The bench sets every GATEWAY_* variable of its children itself; none from the shell.
    for name in [n for n in os.environ if n.startswith("GATEWAY_")]:
        del os.environ[name]
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    signal.signal(signal.SIGHUP, _raise_on_sigterm)
    os.chdir(ROOT)
    bench = Bench(config, overrides)
    results = bench.run()
    path = write_results(results, config)
    log(f"results: {path}")
    if config.markdown:
        from bench.report import render

        target = Path(config.markdown)
        target = target if target.is_absolute() else ROOT / target
        target.write_text(render(results, path))
        log(f"wrote {target}")
    from bench.report import summary_table

    print(summary_table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
