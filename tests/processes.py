"""Real gateway and worker processes on loopback, for multi-process (cluster) tests and
for clients outside the test process (tests/live_gateway.py builds on this).

Each child is `python -m gateway.cli serve|worker` with its own GATEWAY_* environment
(settings given without the prefix), JSON logs (GATEWAY_LOG_FORMAT=json), and its stdout
and stderr in its own log file, which the tests parse to count what each process did.
Every wait here is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import orjson
from prometheus_client.parser import text_string_to_metric_families

from tests.servers import HOST, START_TIMEOUT_S, ServerError, free_port

ROOT = Path(__file__).resolve().parent.parent
STOP_TIMEOUT_S = 15.0
POLL_S = 0.05
T = TypeVar("T")


def child_env(database_url: str, **settings: str) -> dict[str, str]:
    """The parent's environment without its GATEWAY_* variables, plus these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env |= {
        "GATEWAY_DATABASE_URL": database_url,
        "GATEWAY_EMBEDDED_SCHEDULER": "false",
        "GATEWAY_LOG_FORMAT": "json",
        **{f"GATEWAY_{name.upper()}": str(value) for name, value in settings.items()},
        "PYTHONPATH": str(ROOT),
    }
    return env


def epoch(record: dict[str, Any]) -> float:
    """Unix time of a JSON log record (its `ts`)."""
    return datetime.fromisoformat(record["ts"]).timestamp()


def run_sync(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine from sync code (a fixture) without touching the test's event loop."""
    out: list[T] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            out.append(asyncio.run(factory()))
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=target, name="tests.processes")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return out[0]


def wait_until(
    predicate: Callable[[], T | None], timeout_s: float, what: str, poll_s: float = POLL_S
) -> T:
    """The first truthy value of `predicate()`, or AssertionError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(poll_s)


class ChildProcess:
    """One `gateway` CLI child; `records()` parses its JSON log lines so far."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.args = args
        self.env = env
        self.log_path = log_dir / f"{name}.log"
        self.workdir = log_dir / name
        self.process: subprocess.Popen[bytes] | None = None

    def spawn(self) -> None:
        # Its own working directory: no .env of the work tree is read.
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gateway.cli", *self.args],
                cwd=self.workdir,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self, timeout_s: float = START_TIMEOUT_S) -> None:
        raise NotImplementedError

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def wait(self, timeout_s: float) -> int | None:
        """Exit code, or None if still running after `timeout_s`."""
        assert self.process is not None
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM, then SIGKILL after `timeout_s`; always reaps the child."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait()

    def text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.text().splitlines()[-lines:])

    def records(self) -> list[dict[str, Any]]:
        out = []
        for line in self.text().splitlines():
            if not line.startswith("{"):
                continue  # a traceback printed before logging was configured
            with contextlib.suppress(orjson.JSONDecodeError):
                out.append(orjson.loads(line))
        return out

    def messages(self, pattern: str) -> list[dict[str, Any]]:
        """Records whose message matches the regular expression `pattern` (re.search)."""
        regex = re.compile(pattern)
        return [r for r in self.records() if regex.search(str(r.get("message", "")))]

    def wait_for_message(self, pattern: str, timeout_s: float, *, after: float = 0.0) -> dict:
        """The first record matching `pattern` logged after `after` (unix time)."""

        def found() -> dict[str, Any] | None:
            hits = [r for r in self.messages(pattern) if epoch(r) >= after]
            if hits:
                return hits[0]
            if not self.alive:
                raise AssertionError(f"{self.name} exited:\n{self.tail()}")
            return None

        return wait_until(found, timeout_s, f"{self.name} to log {pattern!r}")

    def __repr__(self) -> str:
        return f"<{self.name} pid={self.process.pid if self.process else None}>"


class GatewayProcess(ChildProcess):
    """`gateway serve` (uvicorn, one worker process unless told) on a free loopback port."""

    def __init__(
        self,
        name: str,
        database_url: str,
        log_dir: Path,
        workers: int = 1,
        port: int | None = None,
        **settings: str,
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://{HOST}:{self.port}"
        super().__init__(
            name,
            ["serve", "--host", HOST, "--port", str(self.port), "--workers", str(workers)],
            child_env(database_url, **settings),
            log_dir,
        )

    def wait_ready(self, timeout_s: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if not self.alive or time.monotonic() > deadline:
                self.stop()
                raise ServerError(f"{self.name} did not start on {self.url}:\n{self.tail()}")
            time.sleep(0.1)

    def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        """(sample name, labels) → value, from this process's /metrics."""
        text = httpx.get(f"{self.url}/metrics", timeout=5.0).text
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
    version), then polling within STARTUP_S (its on_startup builds the services)."""

    STARTUP_S = 1.0

    def __init__(self, name: str, database_url: str, log_dir: Path, **settings: str) -> None:
        super().__init__(name, ["worker"], child_env(database_url, **settings), log_dir)
        self.ready_at = 0.0

    def wait_ready(self, timeout_s: float = START_TIMEOUT_S) -> None:
        try:
            record = self.wait_for_message(r"^redis_version=", timeout_s)
        except AssertionError as exc:
            self.stop()
            raise ServerError(f"{self.name} did not start: {exc}\n{self.tail()}") from None
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


def signature(secret: str, body: bytes) -> str:
    """X-Signature of a webhook body (HMAC-SHA256 over the raw bytes)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# --- Redis MONITOR ---------------------------------------------------------------------

_MONITOR_LINE = re.compile(rb'^\+(\d+\.\d+) \[(\d+) [^\]]*\] "([^"]*)"(?: "([^"]*)")?')


@dataclass(frozen=True)
class Command:
    time: float
    db: int
    name: str  # upper case, e.g. SET
    key: str | None


class RedisMonitor:
    """Every command the Redis server runs while open (MONITOR on a raw socket, in a
    thread): who wrote which key, and when. Only the command name and first key are kept."""

    def __init__(self, port: int, db: int) -> None:
        self.port = port
        self.db = db
        self.commands: list[Command] = []
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self.started_at = 0.0

    def __enter__(self) -> RedisMonitor:
        self._sock = socket.create_connection((HOST, self.port), timeout=5.0)
        self._sock.sendall(b"MONITOR\r\n")
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = self._sock.recv(64)
            if not chunk:
                raise ServerError("redis closed the MONITOR connection")
            reply += chunk
        if not reply.startswith(b"+OK"):
            raise ServerError(f"MONITOR failed: {reply!r}")
        self._sock.settimeout(0.2)
        self.started_at = time.time()
        self._thread = threading.Thread(target=self._read, name="redis-monitor", daemon=True)
        self._thread.start()
        return self

    def _read(self) -> None:
        assert self._sock is not None
        buffer = b""
        while not self._stop.is_set():
            try:
                chunk = self._sock.recv(1 << 16)
            except TimeoutError:
                continue
            except OSError:
                return
            if not chunk:
                return
            buffer += chunk
            *lines, buffer = buffer.split(b"\r\n")
            for line in lines:
                match = _MONITOR_LINE.match(line)
                if match is None or int(match.group(2)) != self.db:
                    continue
                key = match.group(4)
                self.commands.append(
                    Command(
                        float(match.group(1)),
                        int(match.group(2)),
                        match.group(3).decode().upper(),
                        key.decode() if key is not None else None,
                    )
                )

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
        if self._sock is not None:
            self._sock.close()

    def writes(self, key: str) -> list[float]:
        """Times of SET commands on `key`."""
        return [c.time for c in list(self.commands) if c.name == "SET" and c.key == key]


# --- a Redis link the test can hold -----------------------------------------------------


def resp_command(*parts: str) -> bytes:
    """A command as redis-py writes it (RESP array of bulk strings)."""
    out = [f"*{len(parts)}\r\n".encode()]
    for part in parts:
        data = part.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class RedisLinkProxy:
    """A TCP proxy between one process and Redis (its GATEWAY_REDIS_URL points here).

    Transparent, until `hold_once(command, until)`: the next write containing exactly
    that command (e.g. `resp_command("GET", key)`) is held, its connection paused, until
    `until()` is true — a slow link at a chosen moment, to force an interleaving."""

    HOLD_LIMIT_S = 10.0

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.held = threading.Event()
        self.released = threading.Event()
        self._command: bytes | None = None
        self._until: Callable[[], bool] = lambda: True
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, name="redis-link-proxy", daemon=True)

    def url(self, db: int) -> str:
        return f"redis://{HOST}:{self.port}/{db}"

    def __enter__(self) -> RedisLinkProxy:
        self._thread.start()
        if not self._ready.wait(5.0) or self._errors:
            raise ServerError(f"proxy did not start: {self._errors}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(10.0)

    def hold_once(self, command: bytes, until: Callable[[], bool]) -> None:
        self.held.clear()
        self.released.clear()
        self._until = until
        self._command = command

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported by __enter__ or ignored at exit
            self._errors.append(exc)
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        writers: set[asyncio.StreamWriter] = set()
        tasks: set[asyncio.Task[None]] = set()

        async def pump(
            source: asyncio.StreamReader, sink: asyncio.StreamWriter, inspect: bool
        ) -> None:
            try:
                while data := await source.read(1 << 16):
                    if inspect:
                        await self._maybe_hold(data)
                    sink.write(data)
                    await sink.drain()
            except OSError:
                pass
            finally:
                sink.close()

        async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writers.add(writer)
            try:
                up_reader, up_writer = await asyncio.open_connection(HOST, self.target_port)
            except OSError:
                writer.close()
                return
            writers.add(up_writer)
            await asyncio.gather(pump(reader, up_writer, True), pump(up_reader, writer, False))

        def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.ensure_future(connection(reader, writer))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        server = await asyncio.start_server(accept, HOST, self.port)
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            server.close()
            for writer in writers:
                writer.close()
            for task in list(tasks):
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await server.wait_closed()

    async def _maybe_hold(self, data: bytes) -> None:
        command = self._command
        if command is None or command not in data:
            return
        self._command = None
        self.held.set()
        for _ in range(int(self.HOLD_LIMIT_S / 0.005)):  # bounded: HOLD_LIMIT_S at most
            if await asyncio.to_thread(self._until):
                break
            await asyncio.sleep(0.005)
        self.released.set()
