"""Real Redis and PostgreSQL servers spawned from the installed binaries, for tests.

No Docker: each server is a child process on a free 127.0.0.1 port with its files in a
temporary directory that is removed when the server stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import asyncpg
import redis
from sqlalchemy.engine import URL, make_url

POSTGRES_URL_ENV = "GATEWAY_TEST_POSTGRES_URL"
HOST = "127.0.0.1"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0
POLL_INTERVAL_S = 0.05

_DATABASE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
T = TypeVar("T")


class ServerError(RuntimeError):
    pass


def free_port() -> int:
    """A port nothing listens on right now (another process may still take it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop_process(
    process: subprocess.Popen[bytes], sig: signal.Signals, timeout_s: float = STOP_TIMEOUT_S
) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
    process.wait()


def _run_coroutine(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion from sync code, even when an event loop is running."""
    result: list[T] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(factory()))
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=target, name="tests.servers")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]


class RedisServer:
    """`redis-server` without persistence; `stop()` then `start()` reuses the same port."""

    def __init__(self, port: int | None = None, binary: str = "redis-server") -> None:
        found = shutil.which(binary)
        if found is None:
            raise ServerError(f"{binary} not found on PATH; install the redis-server package")
        self.binary = found
        self.port = port or free_port()
        self.url = f"redis://{HOST}:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None
        self._dir: Path | None = None

    @property
    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> Self:
        if self.is_running:
            return self
        self._cleanup()
        self._dir = Path(tempfile.mkdtemp(prefix="gateway-redis-"))
        log = self._dir / "redis.log"
        self._process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                HOST,
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self._dir),
                "--logfile",
                str(log),
            ],  # fmt: skip
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._ping():
            if self._process.poll() is not None or time.monotonic() > deadline:
                tail = _log_tail(log)
                self.kill()
                raise ServerError(f"redis-server did not start on port {self.port}:\n{tail}")
            time.sleep(POLL_INTERVAL_S)
        return self

    def stop(self) -> None:
        """Graceful shutdown (SIGTERM), waiting for the process to exit."""
        if self._process is not None:
            _stop_process(self._process, signal.SIGTERM)
        self._cleanup()

    def kill(self) -> None:
        """Abrupt death (SIGKILL), as when the host fails."""
        if self._process is not None:
            _stop_process(self._process, signal.SIGKILL)
        self._cleanup()

    def flushall(self) -> None:
        with redis.Redis(host=HOST, port=self.port) as client:
            client.flushall()

    def _ping(self) -> bool:
        client = redis.Redis(host=HOST, port=self.port, socket_connect_timeout=0.5)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def _cleanup(self) -> None:
        self._process = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def postgres_bindir() -> Path:
    """Directory holding initdb/postgres/pg_isready; the highest installed version wins."""

    def version(path: str) -> tuple[int, ...]:
        digits = Path(path).parent.name
        return tuple(int(part) for part in digits.split(".") if part.isdigit())

    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version)
    if candidates:
        return Path(candidates[-1]).parent
    if shutil.which("pg_config"):
        bindir = subprocess.run(
            ["pg_config", "--bindir"], capture_output=True, text=True, check=False
        ).stdout.strip()
        if bindir and (Path(bindir) / "initdb").exists():
            return Path(bindir)
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise ServerError(
        "PostgreSQL server binaries (initdb, postgres) not found: install the postgresql "
        f"package, or set {POSTGRES_URL_ENV} to an existing server"
    )


class PostgresServer:
    """A private PostgreSQL cluster for the test session, or an existing server given by URL.

    Databases are created on demand; `create_database` returns a SQLAlchemy asyncpg URL.
    """

    def __init__(self, port: int | None = None, *, url: str | None = None) -> None:
        self.external = url is not None
        self._process: subprocess.Popen[bytes] | None = None
        self._base: Path | None = None
        self._created: list[str] = []
        if url is not None:
            self._admin_url = make_url(url).set(drivername="postgresql+asyncpg")
            if not self._admin_url.database:
                self._admin_url = self._admin_url.set(database="postgres")
        else:
            self._bindir = postgres_bindir()
            self._admin_url = URL.create(
                "postgresql+asyncpg",
                username="postgres",
                host=HOST,
                port=port or free_port(),
                database="postgres",
            )
        self.host = str(self._admin_url.host or HOST)
        self.port = int(self._admin_url.port or 5432)

    @classmethod
    def from_env(cls) -> PostgresServer:
        return cls(url=os.environ.get(POSTGRES_URL_ENV) or None)

    @property
    def url(self) -> str:
        """URL of the maintenance database `postgres` (or the one named in the external URL)."""
        return self._admin_url.render_as_string(hide_password=False)

    @property
    def is_running(self) -> bool:
        if self.external:
            return True
        return self._process is not None and self._process.poll() is None

    def url_for(self, database: str) -> str:
        return self._admin_url.set(database=database).render_as_string(hide_password=False)

    def start(self) -> Self:
        if self.external:
            _run_coroutine(lambda: self._execute("SELECT 1"))
            return self
        if self.is_running:
            return self
        self._cleanup()
        self._base = self._make_base_dir()
        data, sockets, log = (
            self._base / "data",
            self._base / "sockets",
            self._base / "postgres.log",
        )
        self._run_as_postgres(
            [
                str(self._bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",  # no dependency on generated OS locales; byte-order sorting
                "--no-sync",
            ],  # fmt: skip
            log,
        )
        with log.open("ab") as log_file:
            self._process = subprocess.Popen(
                [
                    str(self._bindir / "postgres"),
                    "-D",
                    str(data),
                    "-p",
                    str(self.port),
                    "-k",
                    str(sockets),
                    "-c",
                    f"listen_addresses={HOST}",
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                ],  # fmt: skip
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=self._base,
                **self._user_kwargs(),
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._is_ready():
            if self._process.poll() is not None or time.monotonic() > deadline:
                tail = _log_tail(log)
                self.stop()
                raise ServerError(f"postgres did not start on port {self.port}:\n{tail}")
            time.sleep(POLL_INTERVAL_S)
        return self

    def stop(self) -> None:
        """Fast shutdown (disconnects clients) and removal of the cluster's files.

        On an external server, drops the databases this object created instead.
        """
        if self.external:
            names, self._created = self._created, []
            for name in names:
                self.drop_database(name)
            return
        if self._process is not None:
            _stop_process(self._process, signal.SIGINT)
        self._cleanup()

    def create_database(self, name: str) -> str:
        self._check_name(name)
        _run_coroutine(lambda: self._execute(f'CREATE DATABASE "{name}"'))
        self._created.append(name)
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        self._check_name(name)
        _run_coroutine(lambda: self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        with contextlib.suppress(ValueError):
            self._created.remove(name)

    async def _execute(self, sql: str) -> None:
        dsn = self._admin_url.set(drivername="postgresql").render_as_string(hide_password=False)
        connection = await asyncpg.connect(dsn)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    @staticmethod
    def _check_name(name: str) -> None:
        if not _DATABASE_NAME.fullmatch(name):
            raise ValueError(f"database name must match {_DATABASE_NAME.pattern}: {name!r}")

    def _is_ready(self) -> bool:
        result = subprocess.run(
            [
                str(self._bindir / "pg_isready"),
                "-q",
                "-h",
                HOST,
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                "postgres",
            ],  # fmt: skip
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
        return result.returncode == 0

    @staticmethod
    def _as_root() -> bool:
        return os.geteuid() == 0

    def _user_kwargs(self) -> dict[str, Any]:
        """PostgreSQL refuses to run as root: as root, drop to the `postgres` user."""
        if not self._as_root():
            return {}
        return {"user": "postgres", "group": self._postgres_user().pw_gid, "extra_groups": []}

    @staticmethod
    def _postgres_user() -> pwd.struct_passwd:
        try:
            return pwd.getpwnam("postgres")
        except KeyError:
            raise ServerError(
                "running as root but there is no `postgres` user to run PostgreSQL as"
            ) from None

    def _make_base_dir(self) -> Path:
        # /tmp rather than $TMPDIR: the postgres user must be able to reach it.
        base = Path(tempfile.mkdtemp(prefix="gateway-pg-", dir="/tmp" if self._as_root() else None))
        (base / "sockets").mkdir()
        if self._as_root():
            user = self._postgres_user()
            for path in (base, base / "sockets"):
                os.chown(path, user.pw_uid, user.pw_gid)
        return base

    def _run_as_postgres(self, args: list[str], log: Path) -> None:
        with log.open("ab") as log_file:
            result = subprocess.run(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=self._base,
                check=False,
                **self._user_kwargs(),
            )
        if result.returncode != 0:
            tail = _log_tail(log)
            self._cleanup()
            raise ServerError(f"{Path(args[0]).name} failed ({result.returncode}):\n{tail}")

    def _cleanup(self) -> None:
        self._process = None
        if self._base is not None:
            shutil.rmtree(self._base, ignore_errors=True)
            self._base = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
