"""The processes of a session and their memory, read from /proc (Linux)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any


def session_pids(sid: int) -> list[int]:
    """Live processes whose session id is `sid`: a child started in its own session and
    everything it spawned (uvicorn workers, multiprocessing helpers)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the parenthesised command name: state ppid pgrp session …
        fields = stat[stat.rfind(")") + 2 :].split()
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(entry.name))
    return sorted(pids)


def status_kb(pid: int, field: str) -> int:
    """A kB figure of /proc/<pid>/status (VmRSS, VmHWM…); 0 once the process is gone."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def pss_kb(pid: int) -> int:
    """Proportional set size: shared pages divided among the processes sharing them."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return 0


def _maps(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return ""


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def memory_of_session(sid: int) -> dict[str, Any]:
    """RSS and PSS (MB) of every process of a session, summed and per process, and
    whether each has uvloop and httptools loaded.

    RSS counts shared pages once per process (an upper bound for the group); PSS shares
    them out, so its sum is what the group really holds."""
    processes: list[dict[str, Any]] = []
    for pid in session_pids(sid):
        maps = _maps(pid)
        processes.append(
            {
                "pid": pid,
                "cmd": cmdline(pid)[:160],
                "rss_mb": round(status_kb(pid, "VmRSS") / 1024, 1),
                "pss_mb": round(pss_kb(pid) / 1024, 1),
                "uvloop": "uvloop/loop." in maps,
                "httptools": "httptools/parser/parser." in maps,
            }
        )
    return {
        "rss_mb": round(sum(p["rss_mb"] for p in processes), 1),
        "pss_mb": round(sum(p["pss_mb"] for p in processes), 1),
        "processes": processes,
    }
