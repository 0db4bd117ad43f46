"""Child processes on loopback: any command with its log, `gateway serve`, `gateway worker`.

Each child runs in its own session (process group), so that stopping it also ends what
it spawned (uvicorn workers, multiprocessing helpers) and a Ctrl-C of the parent reaches
only the parent, which then stops its children. Its stdout and stderr go to
`<log_dir>/<name>.log`; the gateway's children log JSON lines, which `records()` parses.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Self

import httpx
import orjson
from prometheus_client.parser import text_string_to_metric_families

from tests.harness.procfs import memory_of_session, session_pids, status_kb
from tests.harness.waiting import CEILING_S, wait_until

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
GATEWAY_CLI = [sys.executable, "-m", "gateway.cli"]
# A request to a child that is up but busy (a loaded machine, a cold cache) answers within
# this; it only bounds a child that hangs.
HTTP_TIMEOUT_S = 60.0


class ServerError(RuntimeError):
    """A server or child process did not start."""


def free_port() -> int:
    """A port nothing listens on right now (another process may still take it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def child_env(
    database_url: str | None = None, *, pythonpath: Sequence[Path] = (ROOT,), **settings: str
) -> dict[str, str]:
    """The parent's environment without its GATEWAY_* variables (nor its metrics
    directory), plus these settings (names without the prefix): JSON logs, and no
    embedded scheduler, since a test starts the workers it wants."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env |= {
        "GATEWAY_EMBEDDED_SCHEDULER": "false",
        "GATEWAY_LOG_FORMAT": "json",
        **{f"GATEWAY_{name.upper()}": str(value) for name, value in settings.items()},
        "PYTHONPATH": os.pathsep.join(dict.fromkeys(str(p) for p in pythonpath)),
    }
    if database_url is not None:
        env["GATEWAY_DATABASE_URL"] = database_url
    return env


def epoch(record: dict[str, Any]) -> float:
    """Unix time of a JSON log record (its `ts`)."""
    return datetime.fromisoformat(record["ts"]).timestamp()


class Started:
    """`with thing:` starts it (ready to serve) and always stops it."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> object:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class ChildProcess(Started):
    """One child process, started in its own session; `stop()` ends it and its session.

    It runs in `cwd`, by default a directory of its own (`<log_dir>/<name>`), so that no
    .env of the work tree is read. `ready()` turns true once it serves; `popen` adds
    arguments of subprocess.Popen (user…)."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: dict[str, str] | None = None,
        *,
        log_dir: Path,
        cwd: Path | None = None,
        ready: Callable[[], object] | None = None,
        popen: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = env
        self.log_path = log_dir / f"{name}.log"
        self.cwd = cwd or log_dir / name
        self.ready = ready
        self.popen = popen or {}
        self.process: subprocess.Popen[bytes] | None = None

    def spawn(self) -> Self:
        self.cwd.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **self.popen,
            )
        return self

    def wait_ready(self, timeout_s: float = CEILING_S) -> None:
        """Until `ready()` (when given) is true."""
        if self.ready is not None:
            wait_until(self.ready, f"{self.name} to serve", timeout_s=timeout_s, process=self)

    def start(self) -> Self:
        """Spawn and wait until ready; ServerError (the child stopped) if it never is."""
        self.spawn()
        try:
            self.wait_ready()
        except BaseException as exc:
            # In its own session, a Ctrl-C does not reach it: stopped here in every case.
            self.stop(signal.SIGKILL)
            if isinstance(exc, Exception):
                raise ServerError(f"{self.name} did not start: {exc}\n{self.tail()}") from None
            raise
        return self

    def run(self, timeout_s: float = CEILING_S) -> int:
        """Spawn, and return the exit status. TimeoutError (the child killed) if it runs
        longer than `timeout_s`."""
        self.spawn()
        try:
            code = self.wait(timeout_s)
            if code is None:
                raise TimeoutError(f"{self.name} ran longer than {timeout_s:.0f} s:\n{self.tail()}")
            return code
        finally:
            self.stop(signal.SIGKILL)

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} was not started"
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        """Its exit status once it has exited; None before."""
        return None if self.process is None else self.process.poll()

    def send_signal(self, sig: signal.Signals) -> None:
        """To the child alone (a supervisor passes it on to its workers itself)."""
        if self.alive:
            assert self.process is not None
            self.process.send_signal(sig)

    def wait(self, timeout_s: float = CEILING_S) -> int | None:
        """Exit status, or None if still running after `timeout_s`."""
        assert self.process is not None, f"{self.name} was not started"
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def stop(
        self, sig: signal.Signals = signal.SIGTERM, timeout_s: float = CEILING_S
    ) -> int | None:
        """`sig` to the child, then SIGKILL to its whole session if it still runs after
        `timeout_s`; always reaps it, and kills whatever of its session it left behind.
        Its exit status, or None if it was never spawned."""
        if self.process is None:
            return None
        self.send_signal(sig)
        if self.wait(timeout_s) is None:
            self._kill_session()
        code = self.process.wait()
        self._kill_session()
        return code

    def _kill_session(self) -> None:
        assert self.process is not None
        for pid in session_pids(self.process.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def rss_bytes(self) -> int:
        """Resident memory of the child itself; 0 once it is gone."""
        return status_kb(self.pid, "VmRSS") * 1024

    def memory(self) -> dict[str, Any]:
        """RSS and PSS of the child and everything it spawned (procfs.memory_of_session)."""
        return memory_of_session(self.pid)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def records(self) -> list[dict[str, Any]]:
        """Its JSON log lines so far."""
        out = []
        for line in self.log().splitlines():
            if not line.startswith("{"):
                continue  # a traceback printed before logging was configured
            with contextlib.suppress(orjson.JSONDecodeError):
                out.append(orjson.loads(line))
        return out

    def messages(self, pattern: str) -> list[dict[str, Any]]:
        """Records whose message matches the regular expression `pattern` (re.search)."""
        regex = re.compile(pattern)
        return [r for r in self.records() if regex.search(str(r.get("message", "")))]

    def wait_for_message(
        self, pattern: str, timeout_s: float = CEILING_S, *, after: float = 0.0
    ) -> dict[str, Any]:
        """The first record matching `pattern` logged after `after` (unix time)."""

        def found() -> dict[str, Any] | None:
            return next((r for r in self.messages(pattern) if epoch(r) >= after), None)

        return wait_until(
            found, f"{self.name} to log {pattern!r}", timeout_s=timeout_s, process=self
        )

    def __repr__(self) -> str:
        return f"<{self.name} pid={self.process.pid if self.process else None}>"


class HttpProcess(ChildProcess):
    """A child serving HTTP on a loopback port with `workers` worker processes: ready once
    /healthz answers 200 and, with several workers, each has logged its start-up (at INFO;
    one worker answering says nothing of the others)."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: dict[str, str] | None = None,
        *,
        port: int,
        workers: int = 1,
        **options: Any,
    ) -> None:
        super().__init__(name, argv, env, **options)
        self.port = port
        self.workers = workers
        self.url = f"http://{HOST}:{port}"

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/healthz", timeout=HTTP_TIMEOUT_S).status_code == 200
        except httpx.TransportError:
            return False

    def wait_ready(self, timeout_s: float = CEILING_S) -> None:
        def ready() -> bool:
            if self.workers > 1 and self.log().count("Application startup complete") < self.workers:
                return False
            return self.healthy()

        wait_until(ready, f"{self.name} on {self.url}", timeout_s=timeout_s, process=self)


class GatewayProcess(HttpProcess):
    """`gateway serve` (uvicorn; a supervisor over `workers` processes when more than one)
    on a free loopback port, unless given one."""

    def __init__(
        self,
        name: str,
        env: dict[str, str],
        log_dir: Path,
        *,
        workers: int = 1,
        port: int | None = None,
        cwd: Path | None = None,
    ) -> None:
        port = port or free_port()
        argv = [*GATEWAY_CLI, "serve", "--host", HOST, "--port", str(port)]
        super().__init__(
            name,
            [*argv, "--workers", str(workers)],
            env,
            log_dir=log_dir,
            port=port,
            workers=workers,
            cwd=cwd,
        )

    def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        """(sample name, labels) → value, from this process's /metrics."""
        text = httpx.get(f"{self.url}/metrics", timeout=HTTP_TIMEOUT_S).text
        return {
            (s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def metric_sum(self, name: str, **labels: str) -> float:
        """Sum of a sample over every label set that includes `labels`."""
        wanted = set(labels.items())
        return sum(v for (n, ls), v in self.metrics().items() if n == name and wanted <= ls)

    def statements(self) -> float:
        """Upstream SQL statements this process has run (gateway_upstream_statements_total)."""
        return self.metric_sum("gateway_upstream_statements_total")


class WorkerProcess(ChildProcess):
    """`gateway worker` (arq); ready once connected to Redis (arq logs the server's
    version), then polling by `ready_at`: its on_startup builds the services, silently,
    in a fraction of STARTUP_S even on a loaded machine. Its cron plans the next run when
    it first polls, so a tick before `ready_at` may pass unseen.

    It logs at INFO at least: readiness, job starts and ends are read from arq's lines."""

    STARTUP_S = 5.0

    def __init__(
        self, name: str, env: dict[str, str], log_dir: Path, *, cwd: Path | None = None
    ) -> None:
        if env.get("GATEWAY_LOG_LEVEL", "INFO").upper() not in ("DEBUG", "INFO"):
            env = {**env, "GATEWAY_LOG_LEVEL": "INFO"}
        super().__init__(name, [*GATEWAY_CLI, "worker"], env, log_dir=log_dir, cwd=cwd)
        self.ready_at = 0.0

    def wait_ready(self, timeout_s: float = CEILING_S) -> None:
        record = self.wait_for_message(r"^redis_version=", timeout_s)
        self.ready_at = epoch(record) + self.STARTUP_S

    def job_starts(self, ref: str) -> list[dict[str, Any]]:
        """arq's `→ ref(args)` lines: a job of this ref started here."""
        return self.messages(rf"→ {re.escape(ref)}\(")

    def job_ends(self, ref: str) -> list[dict[str, Any]]:
        """arq's `← ref ●` lines: a job of this ref completed here."""
        return self.messages(rf"← {re.escape(ref)} ●")


@contextlib.contextmanager
def running(*children: ChildProcess) -> Iterator[tuple[ChildProcess, ...]]:
    """Spawn all (they start in parallel), wait until each is ready; stop all on exit."""
    try:
        for child in children:
            child.spawn()
        for child in children:
            child.wait_ready()
        yield children
    finally:
        for child in children:
            child.stop()
