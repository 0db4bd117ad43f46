"""What a `make bench` run sets up: the bench-scale SQLite database, a private
redis-server, the persisted-query manifest, the gateway's processes (`gateway serve`,
`gateway worker`, the limit app), and a quiet machine before each measurement.

Every process it starts runs in its own session and is stopped by `Rig.stop_all()` (on
exit, on error and on Ctrl-C)."""

import contextlib
import shutil
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis as redis_sync

from bench.config import INTERNAL_TOKEN, JWT_SECRET, WEBHOOK_SECRET, Config
from bench.cpu import other_load
from bench.workload import Workload
from gateway.cache.keys import CYCLE_LEASE_KEY
from tests.harness.processes import (
    HOST,
    ROOT,
    ChildProcess,
    GatewayProcess,
    HttpProcess,
    WorkerProcess,
    child_env,
    free_port,
)
from tests.harness.servers import PostgresServer, RedisServer

BIN = Path(sys.executable).parent
# `python -m gateway.cli` rather than the `gateway` script: PYTHONPATH picks the source tree.
GATEWAY = [str(BIN / "python"), "-m", "gateway.cli"]
# Settle time after a server is ready, before load: its first requests are not measured.
SETTLE_S = 0.5
CYCLE_WAIT_S = 180.0  # the longest a cycle of the bench's worker is waited for
CRON_GRACE_S = 5.0  # after a cron boundary, until the cycle surely holds its lease


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Server:
    child: ChildProcess
    port: int
    kind: str  # limit, fast, subtree, nocache
    workers: int
    metrics_dir: Path | None = None
    started: float = field(default_factory=time.time)

    def worker_pids(self) -> list[int]:
        """The processes that serve requests: the workers under the gateway's supervisor
        or uvicorn's (the limit app), or the single process."""
        procs = self.child.memory()["processes"]
        workers = [p["pid"] for p in procs if "spawn_main" in p["cmd"] or "--worker" in p["cmd"]]
        return workers or [self.child.pid]


class Rig:
    """The run's work directory, servers and child processes, the workload, and the
    measured windows (closed- and open-loop) the hit rate over the run is computed from."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.work = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
        self.source = Path(config.source).resolve() if config.source else ROOT
        self.children: list[ChildProcess] = []
        self.redis_server: RedisServer | None = None
        self.postgres: PostgresServer | None = None
        self.worker: WorkerProcess | None = None
        self.workload = Workload(self.work / "requests.tsv")
        self.windows: list[dict[str, Any]] = []

    def stop_all(self, *, keep_logs: bool) -> None:
        for child in reversed(self.children):
            child.stop()
        for server in (self.postgres, self.redis_server):
            if server is not None:
                with contextlib.suppress(Exception):
                    server.stop()
        if keep_logs:
            log(f"logs kept in {self.work}")
        else:
            shutil.rmtree(self.work, ignore_errors=True)

    # ---------------------------------------------------------------- children

    def env(self, **settings: str) -> dict[str, str]:
        """The children's environment: GATEWAY_* only from here (never the caller's shell)."""
        settings = {
            "env": "production",
            "database_url": self.sqlite_url,
            "redis_url": f"redis://{HOST}:{self.redis_port}/0",
            "persisted_manifest": str(self.work / "manifest.json"),
            "jwt_secret": JWT_SECRET,
            "webhook_secret": WEBHOOK_SECRET,
            "internal_token": INTERNAL_TOKEN,
            "refresh_interval_s": str(int(self.config.refresh_interval)),
            **settings,
        }
        # The gateway's code from `source` (default: this work tree), bench from here.
        return child_env(pythonpath=(self.source, ROOT), **settings)

    def run_child(
        self,
        name: str,
        argv: list[str],
        *,
        timeout_s: float,
        env: dict[str, str] | None = None,
        cwd: Path = ROOT,
        check: bool = True,
    ) -> ChildProcess:
        """A command run to its end, its output in <work>/<name>.log. Unless `check` is
        false, RuntimeError with the tail of that log when it fails."""
        child = ChildProcess(name, argv, env, log_dir=self.work, cwd=cwd)
        status = child.run(timeout_s)
        if check and status != 0:
            raise RuntimeError(f"{name} failed ({status}):\n{child.tail(30)}")
        return child

    def start_child(self, child: ChildProcess) -> ChildProcess:
        """Started and ready; stopped by `stop_child` or at the end of the run."""
        self.children.append(child)
        child.start()
        return child

    def stop_child(self, child: ChildProcess) -> None:
        child.stop()
        self.children.remove(child)

    # ---------------------------------------------------------------- the database

    @property
    def sqlite_path(self) -> Path:
        path = Path(self.config.database)
        return path if path.is_absolute() else ROOT / path

    @property
    def sqlite_url(self) -> str:
        return f"sqlite+aiosqlite:///{self.sqlite_path}"

    def ensure_database(self) -> dict[str, Any]:
        """The scale's SQLite database, seeded only when missing or incomplete."""
        from loaders.demo import SCALES

        scale = SCALES[self.config.scale]
        path = self.sqlite_path
        directors = _count(path, "SELECT count(*) FROM users WHERE role = 'director'")
        cohorts = _count(path, "SELECT count(*) FROM cohorts")
        if directors == scale.directors and cohorts == scale.cohorts:
            log(f"reusing {path} ({directors} directors, {cohorts} cohorts)")
            return {"path": str(path), "reused": True, "seed_seconds": None, **_rows(path)}
        log(f"seeding {self.config.scale} scale into {path} …")
        path.parent.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        self.run_child(
            "seed-sqlite",
            [*GATEWAY, "seed", "--scale", self.config.scale, "--seed", str(self.config.seed),
             "--database-url", self.sqlite_url],
            env=self.env(),
            timeout_s=900,
            cwd=self.source,
        )  # fmt: skip
        seconds = round(time.perf_counter() - started, 1)
        return {"path": str(path), "reused": False, "seed_seconds": seconds, **_rows(path)}

    # ---------------------------------------------------------------- Redis, manifest

    @property
    def redis_port(self) -> int:
        """0 before start_redis(): the seed and the manifest do not use Redis."""
        return self.redis_server.port if self.redis_server is not None else 0

    def redis(self, db: int = 0) -> redis_sync.Redis:
        return redis_sync.Redis(host=HOST, port=self.redis_port, db=db)

    def start_redis(self) -> None:
        self.redis_server = RedisServer().start()
        log(f"redis-server on port {self.redis_port}")

    def write_manifest(self) -> None:
        self.run_child(
            "manifest",
            [*GATEWAY, "manifest", "build", "--output", str(self.work / "manifest.json")],
            env=self.env(),
            timeout_s=120,
            cwd=self.source,
        )

    def cache_keys(self) -> Any:
        """The gateway's key scheme, at the version the running code writes (read back from
        Redis, so it is right even when --source runs another tree than this one)."""
        from gateway.cache.keys import PREFIX, Keys, cache_version

        store = self.redis(0)
        for pattern in (f"{PREFIX}:*:refresh:last", f"{PREFIX}:*:summary:*"):
            for key in store.scan_iter(match=pattern, count=1000):
                return Keys(key.decode().split(":")[1])
        from resolvers.schema import build_schema

        return Keys(cache_version(build_schema().as_str()))

    # ---------------------------------------------------------------- the gateway's processes

    def start_worker(self) -> WorkerProcess:
        self.worker = WorkerProcess("worker", self.env(), self.work, cwd=self.source)
        self.start_child(self.worker)
        log("arq worker started")
        return self.worker

    def start_gateway(self, workers: int, kind: str) -> Server:
        settings = {
            "fast": {},
            "subtree": {"response_cache_enabled": "false"},
            "nocache": {"cache_enabled": "false"},
        }[kind]
        metrics_dir = Path(tempfile.mkdtemp(prefix=f"metrics-{kind}-", dir=self.work))
        env = self.env(**settings)
        env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
        gateway = GatewayProcess(
            f"gateway-{kind}-{workers}", env, self.work, workers=workers, cwd=self.source
        )
        self.start_child(gateway)
        time.sleep(SETTLE_S)
        plural = "s" if workers > 1 else ""
        log(f"gateway ({kind}, {workers} worker{plural}) on port {gateway.port}")
        return Server(gateway, gateway.port, kind, workers, metrics_dir)

    def start_limit(self, workers: int) -> Server:
        port = free_port()
        env = self.env()
        env["BENCH_LIMIT_REDIS_URL"] = f"redis://{HOST}:{self.redis_port}/2"
        argv = [
            str(BIN / "uvicorn"), "bench.limit_app:app", "--host", HOST, "--port", str(port),
            "--workers", str(workers), "--loop", "uvloop", "--http", "httptools",
            "--no-access-log", "--log-level", "info",
        ]  # fmt: skip
        limit = HttpProcess(
            f"limit-{workers}", argv, env, log_dir=self.work, port=port, workers=workers, cwd=ROOT
        )
        self.start_child(limit)
        time.sleep(SETTLE_S)
        log(f"limit app ({workers} worker{'s' if workers > 1 else ''}) on port {port}")
        return Server(limit, port, "limit", workers)

    def stop_server(self, server: Server) -> None:
        self.stop_child(server.child)

    # ---------------------------------------------------------------- the machine

    def clear_of_cycles(self, seconds: float, what: str) -> float:
        """Waits (bounded) until a window of `seconds` can run with no refresh cycle of the
        bench's own worker on the same cores: none running now (its lease is held) and the
        next cron boundary further away than the window. Closed-loop windows are compared
        with each other; a cycle inside one of them would skew the ratio. Returns the wait."""
        started = time.monotonic()
        if self.worker is None:
            return 0.0
        interval = self.config.refresh_interval
        queue = self.redis(0)
        while time.monotonic() - started < interval + CYCLE_WAIT_S:
            now = time.time()
            since = now % interval
            try:
                running = bool(queue.exists(CYCLE_LEASE_KEY))
            except redis_sync.RedisError:
                running = False
            # Just past a boundary, the cron may not have taken the lease yet.
            if not running and since > CRON_GRACE_S and interval - since > seconds + 5.0:
                break
            if time.monotonic() - started < 1.0:
                log(f"waiting for the worker's refresh cycle to be over before {what} …")
            time.sleep(1.0)
        return round(time.monotonic() - started, 1)

    def wait_quiet(self, what: str) -> dict[str, Any]:
        """Until processes outside the bench use < quiet_threshold cores (bounded wait)."""
        cfg = self.config
        started = time.monotonic()
        load = other_load(1.0)
        while load > cfg.quiet_threshold and time.monotonic() - started < cfg.quiet_wait:
            log(f"other processes use {load:.2f} cores; waiting before {what} …")
            time.sleep(4.0)
            load = other_load(2.0)
        waited = round(time.monotonic() - started, 1)
        return {"waited_s": waited, "other_cores": load, "quiet": load <= cfg.quiet_threshold}


def _count(path: Path, sql: str) -> int:
    if not path.exists():
        return 0
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            return int(db.execute(sql).fetchone()[0])
    except sqlite3.Error:
        return 0


def _rows(path: Path) -> dict[str, Any]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        rows = {t: db.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}
    return {"rows": sum(rows.values()), "users": rows.get("users", 0)}
