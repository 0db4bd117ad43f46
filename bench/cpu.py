"""CPU accounting per measured window: the whole machine (/proc/stat) versus the processes
of the benchmark (their /proc/<pid>/stat ticks), so load from anything else running on
the machine at the same time shows up in the report instead of silently skewing it."""

import contextlib
import os
import threading
import time
from pathlib import Path
from typing import Any

TICKS = os.sysconf("SC_CLK_TCK")


def _machine() -> tuple[int, int, int]:
    """(process-context busy, interrupts, steal) jiffies over all CPUs.

    Process context (user + nice + system) is what per-process ticks add up to; interrupt
    time (irq + softirq, mostly loopback networking here) is charged to no process."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return user + nice + system, irq + softirq, steal


def descendants(root: int) -> set[int]:
    """root and every live process below it (the benchmark and all it started)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = (entry / "stat").read_text()
            ppid = int(stat[stat.rfind(")") + 2 :].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid not in out:
            out.add(pid)
            todo.extend(children.get(pid, ()))
    return out


def _ticks(pid: int) -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rfind(")") + 2 :].split()
        return int(fields[11]) + int(fields[12])  # utime + stime
    return None


class CpuWindow:
    """Samples every `interval_s` until stopped; `result()` gives cores used on average."""

    def __init__(self, groups: dict[str, int] | None = None, interval_s: float = 0.25) -> None:
        """groups: name → root pid, whose process trees are also accounted separately."""
        self.groups = groups or {}
        self.interval_s = interval_s
        self._group_of: dict[int, str] = {}
        self._first: dict[int, int] = {}
        self._last: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-cpu", daemon=True)

    def _sample(self, first: bool) -> None:
        pids = descendants(os.getpid())
        for name, root in self.groups.items():
            for pid in descendants(root):
                self._group_of[pid] = name
                pids.add(pid)
        for pid in pids:
            ticks = _ticks(pid)
            if ticks is None:
                continue
            if pid not in self._first:
                # Born during the window: all its ticks are the window's.
                self._first[pid] = ticks if first else 0
            self._last[pid] = ticks

    def start(self) -> "CpuWindow":
        self._m0 = _machine()
        self._t0 = time.monotonic()
        self._sample(first=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            with contextlib.suppress(Exception):
                self._sample(first=False)

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        self._thread.join(5)
        self._sample(first=False)
        busy0, irq0, steal0 = self._m0
        busy1, irq1, steal1 = _machine()
        seconds = time.monotonic() - self._t0
        bench = sum(self._last[p] - self._first.get(p, 0) for p in self._last)
        cores = os.cpu_count() or 1
        machine_busy = (busy1 - busy0) / TICKS / seconds
        bench_cores = bench / TICKS / seconds
        groups: dict[str, float] = dict.fromkeys(self.groups, 0.0)
        for pid, name in self._group_of.items():
            if pid in self._last:
                groups[name] += (self._last[pid] - self._first.get(pid, 0)) / TICKS
        return {
            "groups_cpu_s": {k: round(v, 2) for k, v in groups.items()},
            "seconds": round(seconds, 1),
            "machine_busy_cores": round(machine_busy, 2),
            "bench_cores": round(bench_cores, 2),
            "other_cores": round(max(0.0, machine_busy - bench_cores), 2),
            "interrupt_cores": round((irq1 - irq0) / TICKS / seconds, 2),
            "steal_cores": round((steal1 - steal0) / TICKS / seconds, 2),
            "cores": cores,
        }


def other_load(seconds: float = 2.0) -> float:
    """Cores used by processes outside the benchmark over the next `seconds`."""
    window = CpuWindow().start()
    time.sleep(seconds)
    return window.stop()["other_cores"]
