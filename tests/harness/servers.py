"""Real Redis and PostgreSQL servers spawned from the installed binaries.

No Docker: each server is a child process on a free 127.0.0.1 port with its files in a
temporary directory that is removed when the server stops.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Self

import asyncpg
import redis
from sqlalchemy.engine import URL, make_url

from tests.harness.processes import HOST, ChildProcess, ServerError, Started, free_port
from tests.harness.waiting import run_sync

POSTGRES_URL_ENV = "GATEWAY_TEST_POSTGRES_URL"

_DATABASE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


class _Server(Started):
    """A server child with its files in a temporary directory, removed when it stops."""

    def __init__(self) -> None:
        self._child: ChildProcess | None = None
        self._dir: Path | None = None

    @property
    def is_running(self) -> bool:
        return self._child is not None and self._child.alive

    def _launch(self, child: ChildProcess) -> None:
        self._child = child
        try:
            child.start()
        except ServerError:
            self._cleanup()
            raise

    def _cleanup(self) -> None:
        self._child = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


class RedisServer(_Server):
    """`redis-server` without persistence; `stop()` then `start()` reuses the same port."""

    def __init__(self, port: int | None = None, binary: str = "redis-server") -> None:
        found = shutil.which(binary)
        if found is None:
            raise ServerError(
                f"{binary} not found on PATH: install the redis-server package "
                "(bash .ci/install-system)"
            )
        super().__init__()
        self.binary = found
        self.port = port or free_port()
        self.url = f"redis://{HOST}:{self.port}/0"

    @property
    def pid(self) -> int:
        assert self._child is not None, "redis-server is not running"
        return self._child.pid

    def start(self) -> Self:
        if self.is_running:
            return self
        self._cleanup()
        self._dir = Path(tempfile.mkdtemp(prefix="gateway-redis-"))
        argv = [self.binary, "--port", str(self.port), "--bind", HOST, "--save", "",
                "--appendonly", "no", "--dir", str(self._dir)]  # fmt: skip
        self._launch(
            ChildProcess("redis-server", argv, log_dir=self._dir, cwd=self._dir, ready=self._ping)
        )
        return self

    def stop(self) -> None:
        """Graceful shutdown (SIGTERM), waiting for the process to exit."""
        if self._child is not None:
            self._child.stop(signal.SIGTERM)
        self._cleanup()

    def kill(self) -> None:
        """Abrupt death (SIGKILL), as when the host fails."""
        if self._child is not None:
            self._child.stop(signal.SIGKILL)
        self._cleanup()

    def flushall(self) -> None:
        with redis.Redis(host=HOST, port=self.port) as client:
            client.flushall()

    def _ping(self) -> bool:
        client = redis.Redis(host=HOST, port=self.port, socket_connect_timeout=5.0)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()


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
        f"package (bash .ci/install-system), or set {POSTGRES_URL_ENV} to an existing server"
    )


class PostgresServer(_Server):
    """A private PostgreSQL cluster for the test session, or an existing server given by URL.

    Databases are created on demand; `create_database` returns a SQLAlchemy asyncpg URL.
    """

    def __init__(self, port: int | None = None, *, url: str | None = None) -> None:
        super().__init__()
        self.external = url is not None
        self._created: list[str] = []
        if url is not None:
            self._admin_url = make_url(url).set(drivername="postgresql+asyncpg")
            if not self._admin_url.database:
                self._admin_url = self._admin_url.set(database="postgres")
        else:
            self.bindir = postgres_bindir()
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
        return self.external or super().is_running

    def version(self) -> str:
        """`postgres --version` of the private cluster's binaries."""
        done = subprocess.run(
            [str(self.bindir / "postgres"), "--version"], capture_output=True, text=True
        )
        return done.stdout.strip()

    def url_for(self, database: str) -> str:
        return self._admin_url.set(database=database).render_as_string(hide_password=False)

    def start(self) -> Self:
        if self.external:
            run_sync(lambda: self._execute("SELECT 1"))
            return self
        if self.is_running:
            return self
        self._cleanup()
        base = self._dir = self._make_base_dir()
        data = base / "data"
        # --locale=C: no dependency on generated OS locales; byte-order sorting.
        initdb = ChildProcess(
            "initdb",
            [str(self.bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
             "-E", "UTF8", "--locale=C", "--no-sync"],
            log_dir=base,
            cwd=base,
            popen=self._user_kwargs(),
        )  # fmt: skip
        if (code := initdb.run()) != 0:
            tail = initdb.tail(30)
            self._cleanup()
            raise ServerError(f"initdb failed ({code}):\n{tail}")
        postgres = ChildProcess(
            "postgres",
            [str(self.bindir / "postgres"), "-D", str(data), "-p", str(self.port),
             "-k", str(base / "sockets"), "-c", f"listen_addresses={HOST}",
             "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"],
            log_dir=base,
            cwd=base,
            ready=self._is_ready,
            popen=self._user_kwargs(),
        )  # fmt: skip
        self._launch(postgres)
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
        if self._child is not None:
            self._child.stop(signal.SIGINT)
        self._cleanup()

    def create_database(self, name: str) -> str:
        self._check_name(name)
        run_sync(lambda: self._execute(f'CREATE DATABASE "{name}"'))
        self._created.append(name)
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        self._check_name(name)
        run_sync(lambda: self._execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
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
                str(self.bindir / "pg_isready"),
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
