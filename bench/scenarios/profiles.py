"""py-spy profiles: the fast path's workers under wrk load, and a prewarm that missed
its target."""

import time
from typing import Any

from bench import profile
from bench.scenarios.closed_loop import wrk
from bench.setup import BIN, Rig, Server, log
from tests.harness.processes import ROOT, ChildProcess


def profiling(rig: Rig) -> bool:
    return rig.config.profile != "off" and profile.py_spy() is not None


def fast_path(rig: Rig, server: Server) -> dict[str, Any]:
    """py-spy on the fast path's workers under wrk load (after the measured windows)."""
    if not profiling(rig):
        return {}
    seconds = rig.config.profile_seconds
    pids = server.worker_pids()
    raws = [rig.work / f"profile-fast-{pid}.txt" for pid in pids]
    spies = [
        rig.start_child(
            ChildProcess(
                f"py-spy-{pid}",
                profile.record_pid_argv(pid, seconds, raw),
                log_dir=rig.work,
                cwd=ROOT,
            )
        )
        for pid, raw in zip(pids, raws, strict=True)
    ]
    try:
        time.sleep(0.5)
        wrk(rig, server, seconds + 2, "profile", "b")
        for spy in spies:
            spy.wait(30)
    finally:
        for spy in spies:
            rig.stop_child(spy)
    merged = rig.work / "profile-fast.txt"
    merged.write_text("".join(r.read_text() for r in raws if r.exists()))
    log("profiled the fast path")
    return {
        "fast_path": {
            "what": f"py-spy on {len(pids)} uvicorn worker(s) under wrk load, {seconds:.0f} s",
            **profile.summarize(merged),
        }
    }


def profile_prewarm(rig: Rig, label: str, env: dict[str, str]) -> dict[str, Any]:
    if profile.py_spy() is None:
        return {"error": "py-spy not found"}
    raw = rig.work / f"profile-prewarm-{label}.txt"
    argv = profile.record_command_argv(
        [str(BIN / "python"), "-m", "gateway.cli", "refresh", "--all", "--sync"], raw, rate=100
    )
    child = rig.run_child(raw.stem, argv, env=env, timeout_s=900, cwd=rig.source, check=False)
    if child.returncode != 0 or not raw.exists():
        return {"error": child.tail(30)}
    log(f"profiled a prewarm on {label}")
    return {"what": f"gateway refresh --all --sync on {label} (one extra run)",
            **profile.summarize(raw)}  # fmt: skip
