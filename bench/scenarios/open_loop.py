"""The fast path at a fixed open-loop rate (bench/openloop.py), long enough to span the
moment the last refresh cycle's entries turn stale; response-cache counters each second."""

import contextlib
import json
import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import promfiles
from bench.cpu import CpuWindow
from bench.setup import BIN, Rig, Server, log
from tests.harness.processes import ROOT


def open_loop(rig: Rig, server: Server) -> dict[str, Any]:
    cfg = rig.config
    out = rig.work / "openloop.json"
    samples = rig.work / "openloop-samples.json"
    quiet = rig.wait_quiet("the open-loop run")
    duration, duration_info = open_loop_seconds(rig)
    log(f"open loop at {cfg.rate:.0f}/s for {duration:.0f} s ({duration_info})")
    before = promfiles.read_counters(server.metrics_dir)  # type: ignore[arg-type]
    sampler = Sampler(server.metrics_dir)  # type: ignore[arg-type]
    sampler.start()
    cpu = CpuWindow().start()
    t0 = time.time()
    argv = [
        str(BIN / "python"), "-m", "bench.openloop", "--port", str(server.port),
        "--requests", str(rig.workload.requests_file), "--rate", str(cfg.rate),
        "--duration", str(duration), "--warmup", str(cfg.open_loop_warmup),
        "--out", str(out), "--samples", str(samples),
    ]  # fmt: skip
    try:
        child = rig.run_child(
            "openloop", argv, env={**os.environ, "PYTHONPATH": str(ROOT)},
            timeout_s=duration + cfg.open_loop_warmup + 90,
        )  # fmt: skip
    finally:
        sampler.stop()
        usage = cpu.stop()
    t1 = time.time()
    if not out.exists():
        raise RuntimeError(f"the open-loop generator wrote no report:\n{child.tail(30)}")
    after = promfiles.read_counters(server.metrics_dir)  # type: ignore[arg-type]
    report = json.loads(out.read_text())
    counters = promfiles.delta(after, before)
    cache = promfiles.cache_summary(counters)
    measured_from = report["t0_wall"] + cfg.open_loop_warmup
    result = {
        **report,
        "workers": server.workers,
        "window": [measured_from, t1],
        "errors": report["non_2xx"] + report["socket_errors"] + report["unanswered"],
        # Counters cover warm-up and measured seconds alike.
        "cache": cache,
        "response_hit_rate": promfiles.hit_rate(cache, ("response",)),
        "statements": promfiles.total(counters, promfiles.STATEMENTS),
        "duration_rule": duration_info,
        "per_second": sampler.series,
        "samples_file": None,
        "cpu": usage,
        "quiet_wait": quiet,
    }
    result["_samples"] = json.loads(samples.read_text()) if samples.exists() else []
    rig.windows.append({"scenario": "open-loop", **result, "window": [t0, t1]})
    log(
        f"open loop {cfg.rate:.0f}/s: achieved {report['achieved_rate']:.1f}/s, "
        f"p50 {report['latency_ms']['50']:.2f} p95 {report['latency_ms']['95']:.2f} "
        f"p99 {report['latency_ms']['99']:.2f} ms, errors {result['errors']}, "
        f"send lag p99 {report['send_lag_ms']['99']:.2f} ms, hit {result['response_hit_rate']}"
    )
    return result


def open_loop_seconds(rig: Rig) -> tuple[float, dict[str, Any]]:
    """The open-loop run's measured length: fixed, or (auto) until 90 s after the entries
    of the last refresh cycle turn stale: the moment the next cycle must replace them."""
    cfg = rig.config
    if cfg.open_loop_duration > 0:
        return cfg.open_loop_duration, {"mode": "fixed"}
    raw = rig.redis(0).get(rig.cache_keys().refresh_stamp())
    now = time.time() + cfg.open_loop_warmup
    if raw is None:
        return cfg.refresh_interval + 60, {"mode": "auto", "note": "no refresh stamp"}
    stamp = json.loads(raw)  # type: ignore[arg-type]
    cycle_start = datetime.fromisoformat(stamp["computed_at"]).timestamp() - float(
        stamp["duration_s"]
    )
    expires = cycle_start + cfg.refresh_interval
    while expires < now - 30:
        expires += cfg.refresh_interval
    seconds = min(max(120.0, expires - now + 90.0), cfg.refresh_interval + 150.0)
    info = {
        "mode": "auto",
        "last_cycle_start": datetime.fromtimestamp(cycle_start, UTC).isoformat(),
        "entries_turn_stale_at": datetime.fromtimestamp(expires, UTC).isoformat(),
    }
    return round(seconds), info


class Sampler:
    """Per-second response cache counters while a window runs (from the metrics files)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.series: list[list[float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):
                cache = promfiles.cache_summary(promfiles.read_counters(self.directory))
                r = cache["response"]
                self.series.append(
                    [round(time.time(), 2), r["hit"], r["miss"], r["stale"], r["error"]]
                )
            self._stop.wait(1.0)
