"""A worker's heartbeat: a small JSON file rewritten every HEARTBEAT_S, for liveness probes.

A file on the worker's own disk rather than a key in Redis: a worker riding out a Redis
outage is alive and must not be restarted for it (`gateway worker --check` reads it).

A worker that dies without a word (SIGKILL, out of memory) leaves its last beat behind:
the check then finds its process gone (the beat names the process and when it started, so
a reused pid is not taken for it) and fails at once, not once the beat has aged. That
holds where the check sees the worker's processes: the same host or container (the
hostname says so); elsewhere only the beat's age counts.
"""

import os
import socket
import time
from pathlib import Path
from typing import Any

import orjson

HEARTBEAT_S = 5.0


def process_started(pid: int) -> str | None:
    """When process `pid` started (clock ticks since boot, Linux' /proc), or None when there
    is no such process (or no /proc to tell)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2 :].split()[19]


def beat(path: Path, **state: Any) -> None:
    """Rewrites the file whole (a reader never sees half of it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": _started_here()}
    temporary.write_bytes(orjson.dumps({"at": time.time(), **me, **state}))
    os.replace(temporary, path)


def _started_here() -> str | None:
    return process_started(os.getpid())


def gone(state: dict[str, Any]) -> bool:
    """The beat's process has ended (or its pid is another process's now)."""
    if state.get("host") != socket.gethostname() or not state.get("started"):
        return False  # another host's processes (or no /proc): the age alone tells
    return process_started(int(state["pid"])) != state["started"]


def forget(path: Path) -> None:
    """A worker that stops says so: a probe then fails at once."""
    path.unlink(missing_ok=True)


def check(path: Path, max_age_s: float) -> tuple[bool, str]:
    """(fresh, what to print): fresh when the last beat is at most `max_age_s` old."""
    try:
        state = orjson.loads(path.read_bytes())
        age_s = time.time() - float(state["at"])
    except FileNotFoundError:
        return False, f"no heartbeat at {path}"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return False, f"unreadable heartbeat at {path}: {exc}"
    summary = orjson.dumps({**state, "age_s": round(age_s, 3)}).decode()
    if gone(state):
        return False, f"the worker is gone (process {state['pid']} ended): {summary}"
    if age_s > max_age_s:
        return False, f"stale heartbeat ({age_s:.1f} s > {max_age_s:g} s): {summary}"
    return True, summary
