"""Sampling profiles with py-spy (in the venv): where a process spends its CPU.

py-spy samples Python stacks from outside the process (`--nonblocking`: without pausing
it), so the profiled run is barely slowed. Idle samples (the event loop waiting in epoll)
are left out, so shares are of the time the process was on a CPU running Python."""

import re
import shutil
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def py_spy() -> str | None:
    venv_bin = Path(sys.executable).parent / "py-spy"
    if venv_bin.exists():
        return str(venv_bin)
    return shutil.which("py-spy")


def record_pid_argv(pid: int, seconds: float, out: Path, rate: int = 250) -> list[str]:
    exe = py_spy()
    assert exe is not None
    return [
        exe, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", str(rate),
        "--nonblocking", "--format", "raw", "--output", str(out),
    ]  # fmt: skip


def record_command_argv(command: Sequence[str], out: Path, rate: int = 250) -> list[str]:
    exe = py_spy()
    assert exe is not None
    return [
        exe,
        "record",
        "--rate",
        str(rate),
        "--format",
        "raw",
        "--output",
        str(out),
        "--",
    ] + list(command)


def _name(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if match is None:
        return frame.strip()
    return f"{match['func']} ({match['file']})"


def _package(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    path = match["file"] if match else frame
    if path.startswith("<"):
        return path
    head = path.split("/", 1)[0]
    return head.removesuffix(".py")


def summarize(raw_file: Path, top: int = 20) -> dict[str, Any]:
    """Self and inclusive shares per function, and self shares per package (top-level
    module of the innermost Python frame), from py-spy's collapsed-stack output."""
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    total = 0
    for line in raw_file.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack.strip() or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if f.strip()]
        if not frames:
            continue
        total += count
        names = [_name(f) for f in frames]
        self_time[names[-1]] += count
        packages[_package(frames[-1])] += count
        for name in set(names):
            inclusive[name] += count

    def shares(counter: Counter[str], n: int) -> list[list[Any]]:
        return [[name, round(100 * c / total, 1)] for name, c in counter.most_common(n)]

    return {
        "samples": total,
        "self_pct": shares(self_time, top) if total else [],
        "inclusive_pct": shares(inclusive, top + 10) if total else [],
        "package_self_pct": shares(packages, 15) if total else [],
    }
