"""Redis as the processes under test reach it: every command the server runs (MONITOR),
and a link to it that a test can hold at a chosen moment to force an interleaving."""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import redis

from tests.harness.processes import HOST, ServerError, free_port
from tests.harness.waiting import CEILING_S, wait_until

_MONITOR_LINE = re.compile(rb"^\+(\d+\.\d+) \[(\d+) [^\]]*\] ")
_MONITOR_ARG = re.compile(rb'"((?:[^"\\]|\\.)*)"')  # as MONITOR quotes it, escapes kept


@dataclass(frozen=True)
class Command:
    time: float
    db: int
    name: str  # upper case, e.g. SET
    key: str | None
    args: tuple[bytes, ...]  # the whole command, its name first, as MONITOR shows it


class RedisMonitor:
    """Every command the Redis server runs while open (MONITOR on a raw socket, in a
    thread): who wrote which key, and when. `db` None: the commands on every database."""

    def __init__(self, port: int, db: int | None) -> None:
        self.port = port
        self.db = db
        self.commands: list[Command] = []
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self.started_at = 0.0

    def __enter__(self) -> RedisMonitor:
        self._sock = socket.create_connection((HOST, self.port), timeout=CEILING_S)
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
                if match is None or self.db not in (None, int(match.group(2))):
                    continue
                args = tuple(_MONITOR_ARG.findall(line, match.end()))
                if not args:
                    continue
                self.commands.append(
                    Command(
                        float(match.group(1)),
                        int(match.group(2)),
                        args[0].decode().upper(),
                        args[1].decode() if len(args) > 1 else None,
                        args,
                    )
                )

    def caught_up(self) -> None:
        """Until the stream has shown every command the server ran before this call: a
        marker (ECHO, on this monitor's database; keyless, so any cluster node runs it)
        is seen once all before it are. MONITOR's stream lags the server under load."""
        marker = f"monitor-caught-up:{uuid.uuid4().hex}"
        with redis.Redis(host=HOST, port=self.port, db=self.db or 0) as client:
            client.echo(marker)
        wait_until(
            lambda: any(c.name == "ECHO" and c.key == marker for c in reversed(self.commands)),
            "the MONITOR stream to catch up",
            poll_s=0.05,
        )

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None and self._thread is not None and self._thread.is_alive():
            self.caught_up()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(CEILING_S)
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

    HOLD_LIMIT_S = CEILING_S

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
        if not self._ready.wait(CEILING_S) or self._errors:
            raise ServerError(f"proxy did not start: {self._errors}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(CEILING_S)

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
        deadline = time.monotonic() + self.HOLD_LIMIT_S
        while time.monotonic() < deadline:
            if await asyncio.to_thread(self._until):
                break
            await asyncio.sleep(0.005)
        self.released.set()
