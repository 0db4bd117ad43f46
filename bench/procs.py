"""Child processes of the benchmark: each in its own session (process group), stopped with
the whole group on exit, error or Ctrl-C; memory and loaded libraries read from /proc."""

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path | None

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 25) -> str:
        if self.log is None:
            return ""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Processes:
    """Every process the benchmark starts; `stop_all()` in a `finally` ends them all."""

    def __init__(self) -> None:
        self.children: list[Child] = []

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        log: Path | None = None,
        cwd: Path | None = None,
    ) -> Child:
        out: IO[bytes] | int
        out = log.open("ab") if log is not None else subprocess.DEVNULL
        try:
            process = subprocess.Popen(
                list(argv),
                env=dict(env) if env is not None else None,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: Ctrl-C reaches only us
            )
        finally:
            if not isinstance(out, int):
                out.close()
        child = Child(name, process, log)
        self.children.append(child)
        return child

    def run(
        self,
        name: str,
        argv: Sequence[str],
        *,
        timeout_s: float,
        env: Mapping[str, str] | None = None,
        log: Path | None = None,
        cwd: Path | None = None,
    ) -> int:
        """Start, wait at most timeout_s (then kill the group), return the exit status."""
        child = self.start(name, argv, env=env, log=log, cwd=cwd)
        try:
            return child.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.stop(child, sig=signal.SIGKILL)
            raise TimeoutError(f"{name} ran longer than {timeout_s:.0f} s") from None
        finally:
            self.stop(child)

    def stop(
        self, child: Child, sig: signal.Signals = signal.SIGTERM, timeout_s: float = 20
    ) -> None:
        if child.running():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, sig)
            try:
                child.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGKILL)
                child.process.wait()
        # Grandchildren left in the group (uvicorn workers, multiprocessing helpers).
        for pid in session_pids(child.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if child in self.children:
            self.children.remove(child)

    def stop_all(self) -> None:
        for child in reversed(list(self.children)):
            self.stop(child, timeout_s=10)


def session_pids(sid: int) -> list[int]:
    """Live processes whose session id is sid (the child and everything it spawned)."""
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


def _status_kb(pid: int, field: str) -> int:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _pss_kb(pid: int) -> int:
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


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def memory_of_session(sid: int) -> dict[str, Any]:
    """RSS and PSS (MB) of every process of a session, summed and per process.

    RSS counts shared pages once per process (an upper bound for the group); PSS shares
    them out, so its sum is what the group really holds."""
    processes: list[dict[str, Any]] = []
    for pid in session_pids(sid):
        maps = _maps(pid)
        processes.append(
            {
                "pid": pid,
                "cmd": _cmdline(pid)[:160],
                "rss_mb": round(_status_kb(pid, "VmRSS") / 1024, 1),
                "pss_mb": round(_pss_kb(pid) / 1024, 1),
                "uvloop": "uvloop/loop." in maps,
                "httptools": "httptools/parser/parser." in maps,
            }
        )
    return {
        "rss_mb": round(sum(p["rss_mb"] for p in processes), 1),
        "pss_mb": round(sum(p["pss_mb"] for p in processes), 1),
        "processes": processes,
    }


def wait_for(predicate: Any, timeout_s: float, what: str, child: Child | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if predicate():
            return
        if child is not None and not child.running():
            raise RuntimeError(f"{child.name} exited while waiting for {what}:\n{child.log_tail()}")
        if time.monotonic() > deadline:
            tail = child.log_tail() if child is not None else ""
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}\n{tail}")
        time.sleep(0.1)
