"""A worker's heartbeat: a small JSON file rewritten every HEARTBEAT_S, for liveness probes.

A file on the worker's own disk rather than a key in Redis: a worker riding out a Redis
outage is alive and must not be restarted for it (`gateway worker --check` reads it).
"""

import os
import time
from pathlib import Path
from typing import Any

import orjson

HEARTBEAT_S = 5.0


def beat(path: Path, **state: Any) -> None:
    """Rewrites the file whole (a reader never sees half of it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.write_bytes(orjson.dumps({"at": time.time(), "pid": os.getpid(), **state}))
    os.replace(temporary, path)


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
    if age_s > max_age_s:
        return False, f"stale heartbeat ({age_s:.1f} s > {max_age_s:g} s): {summary}"
    return True, summary
