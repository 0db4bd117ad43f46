"""`make bench`: the gateway under load on this machine, in one run, into one report.

    .venv/bin/python -m bench.run [--duration 20] [--workers 1,2] …   (see --help)

Every option also reads BENCH_<OPTION> from the environment (flags win). Steps:

 1. bench-scale SQLite at var/bench.sqlite3 (seeded only when missing or incomplete); a
    private redis-server; the persisted-query manifest; a token for each of the directors;
 2. full prewarm (`gateway refresh --all --sync`: every subtree, then every director's
    DirectorSummary and CohortList answer) on SQLite and on a private PostgreSQL;
 3. the gateway (`gateway serve`, production profile) and an arq worker (`gateway worker`);
 4. closed-loop load with wrk + bench/requests.lua: (a) the limit, bench/limit_app.py;
    (b) the response fast path; (c) subtree cache + execution; (d) no cache;
 5. the fast path at a fixed open-loop rate (bench/openloop.py);
 6. hit rate, cold cohort detail, upstream statements per request, RSS, Redis memory;
 7. bench/results/<timestamp>.json and BENCHMARKS.md.

Every process it starts runs in its own process group and is stopped on exit, on error
and on Ctrl-C.
"""

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import redis as redis_sync

from bench import client, profile, promfiles
from bench.cpu import CpuWindow, other_load
from bench.limit_app import limit_key
from bench.procs import HOST, Child, Processes, free_port, memory_of_session, wait_for

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
LUA = Path(__file__).resolve().parent / "requests.lua"
# `python -m gateway.cli` rather than the `gateway` script: PYTHONPATH picks the source tree.
GATEWAY = [str(BIN / "python"), "-m", "gateway.cli"]
JWT_SECRET = "bench-jwt-secret-0123456789abcdef0123456789abcdef"
WEBHOOK_SECRET = "bench-webhook-secret-0123456789abcdef0123456789"
OPERATIONS = ("DirectorSummary", "CohortList", "CohortDetail")

TARGETS = {
    "fast_path_vs_limit": 0.5,
    "open_loop_p95_ms": 10.0,
    "open_loop_p99_ms": 25.0,
    "hit_rate": 0.995,
    "prewarm_sqlite_s": 20.0,
    "prewarm_postgres_s": 15.0,
    "cold_detail_p95_ms": 50.0,
    "gateway_rss_mb": 250.0,
    "redis_mb": 250.0,
}


# --------------------------------------------------------------------------- config


@dataclass
class Config:
    scale: str = "bench"
    database: str = "var/bench.sqlite3"
    duration: float = 20.0  # measured seconds per closed-loop scenario
    warmup: float = 5.0  # seconds of load before each measured window, discarded
    connections: int = 64
    threads: int = 1  # wrk threads (the generator shares the 2 cores with the server)
    workers: str = "1,2"  # uvicorn worker counts to compare for (a) and (b)
    rate: float = 1000.0  # open-loop requests per second
    # 0 = auto: long enough to include the moment the last refresh cycle's entries turn
    # stale (its start + refresh_interval) and 90 s after it, as production traffic does.
    open_loop_duration: float = 0.0
    open_loop_warmup: float = 5.0
    cold_samples: int = 200
    prewarm_runs: int = 3
    postgres: bool = True
    profile: str = "auto"  # auto: fast path always, and whatever misses a target; off
    profile_seconds: float = 10.0
    mix: str = "DirectorSummary=0.4,CohortList=0.3,CohortDetail=0.3"
    requests: int = 30_000  # lines of the request file (cycled through)
    refresh_interval: float = 300.0
    quiet_threshold: float = 0.2  # cores used by processes outside the bench
    quiet_wait: float = 45.0  # longest wait for the machine to be that quiet, per window
    retries: int = 1  # re-runs of a window during which other processes used the CPU
    seed: int = 7
    results_dir: str = "bench/results"
    markdown: str = "BENCHMARKS.md"  # empty: do not write
    keep_logs: bool = False
    scenarios: str = "a,b,c,d"
    source: str = ""  # gateway source tree to run (default: this work tree)

    @property
    def worker_counts(self) -> list[int]:
        return [int(w) for w in str(self.workers).split(",") if w.strip()]

    @property
    def scenario_set(self) -> set[str]:
        return {x.strip() for x in self.scenarios.split(",") if x.strip()}

    @property
    def weights(self) -> dict[str, float]:
        out = {}
        for part in self.mix.split(","):
            name, _, weight = part.partition("=")
            if name.strip() not in OPERATIONS:
                raise SystemExit(f"--mix: unknown operation {name!r}")
            out[name.strip()] = float(weight)
        return out


def _parse_bool(text: str) -> bool:
    return text.strip().lower() in ("1", "true", "yes", "on")


def parse_config(argv: list[str] | None = None) -> tuple[Config, dict[str, str]]:
    """Defaults < BENCH_* environment < flags. Returns the config and what was overridden."""
    defaults = Config()
    parser = argparse.ArgumentParser(prog="python -m bench.run", description="make bench")
    overrides: dict[str, str] = {}
    for name, value in asdict(defaults).items():
        env_name = f"BENCH_{name.upper()}"
        kind = type(value)
        if env_name in os.environ:
            overrides[env_name] = os.environ[env_name]
            value = (
                _parse_bool(os.environ[env_name]) if kind is bool else kind(os.environ[env_name])
            )
        flag = "--" + name.replace("_", "-")
        if kind is bool:
            parser.add_argument(flag, type=_parse_bool, default=value, metavar="BOOL")
        else:
            parser.add_argument(flag, type=kind, default=value)
    args = parser.parse_args(argv)
    config = Config(**vars(args))
    for name, value in vars(args).items():
        if argv and any(a.startswith("--" + name.replace("_", "-")) for a in argv):
            overrides["--" + name.replace("_", "-")] = str(value)
    return config, overrides


# --------------------------------------------------------------------------- helpers


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float:
    """Nearest rank, as bench.openloop."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(1, min(len(ordered), math.ceil(q * len(ordered) / 100))) - 1]


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    versions = {}
    for dist in ("uvicorn", "uvloop", "httptools", "starlette", "strawberry-graphql", "redis",
                 "hiredis", "orjson", "SQLAlchemy", "aiosqlite", "asyncpg", "arq",
                 "prometheus-client", "PyJWT"):  # fmt: skip
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            versions[dist] = version(dist)
    tools = {}
    for tool, argv in (
        ("wrk", ["wrk", "--version"]),
        ("redis-server", ["redis-server", "--version"]),
    ):
        with contextlib.suppress(OSError):
            out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            tools[tool] = (out.stdout or out.stderr).strip().splitlines()[0][:100]
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu,
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "os": _os_name(),
        "python": platform.python_version(),
        "packages": versions,
        "tools": tools,
    }


def _os_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    return platform.system()


def code_fingerprint(source: Path) -> str:
    """Read-only: a digest of the gateway's code as it is now (files, not git state), to
    tell whether other people's edits landed while the benchmark ran."""
    import hashlib

    digest = hashlib.sha256()
    for package in ("gateway", "resolvers", "loaders", "workers"):
        for path in sorted((source / package).rglob("*")):
            if path.is_file() and path.suffix in (".py", ".graphql"):
                digest.update(str(path.relative_to(source)).encode() + b"\0")
                digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def git_revision() -> dict[str, Any]:
    """Read-only: the commit and whether the work tree had changes."""
    out: dict[str, Any] = {}
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        )
        out["commit"] = rev.stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        out["modified_files"] = [line[3:] for line in status.stdout.splitlines()]
    return out


# --------------------------------------------------------------------------- the run


@dataclass
class Server:
    child: Child
    port: int
    kind: str  # limit, fast, subtree, nocache
    workers: int
    metrics_dir: Path | None = None
    started: float = field(default_factory=time.time)


class Bench:
    def __init__(self, config: Config, overrides: dict[str, str]) -> None:
        self.config = config
        self.overrides = overrides
        self.procs = Processes()
        self.work = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
        self.postgres: Any = None
        self.redis_port = 0
        self.results: dict[str, Any] = {}
        self.requests_file = self.work / "requests.tsv"
        self.tokens: dict[int, str] = {}
        self.directors: list[int] = []
        self.scopes: dict[int, list[int]] = {}
        self.windows: list[dict[str, Any]] = []
        self.source = Path(config.source).resolve() if config.source else ROOT

    # ---------------------------------------------------------------- lifecycle

    def run(self) -> dict[str, Any]:
        started = time.time()
        ok = False
        try:
            self._run(started)
            ok = True
            return self.results
        finally:
            self.procs.stop_all()
            if self.postgres is not None:
                with contextlib.suppress(Exception):
                    self.postgres.stop()
            if ok and not self.config.keep_logs:
                shutil.rmtree(self.work, ignore_errors=True)
            else:
                log(f"logs kept in {self.work}")

    def _run(self, started: float) -> None:
        cfg = self.config
        self.results = {
            "started_at": datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds"),
            "command": self.command(),
            "config": asdict(cfg),
            "machine": machine(),
            "revision": {**git_revision(), "code_at_start": code_fingerprint(self.source)},
            "targets": TARGETS,
        }
        self.results["dataset"] = self.ensure_database()
        self.start_redis()
        self.write_manifest()
        self.results["prewarm"] = {}
        if cfg.postgres:
            self.results["prewarm"]["postgres"] = self.prewarm_postgres()
        self.results["prewarm"]["sqlite"] = self.prewarm_sqlite()
        self.worker = self.start_worker()
        self.load_dataset()
        self.write_requests()
        self.results["scenarios"] = self.closed_loop()
        best = self.results["best_workers"]
        fast = self.start_gateway(best, "fast")
        try:
            self.results["open_loop"] = self.open_loop(fast)
            self.results["profiles"] = self.profiles(fast)
            self.results["cold_detail"] = self.cold_detail(fast)
            self.results["memory"] = self.final_memory(fast)
        finally:
            self.stop_server(fast)
        self.results["refresh_cycles"] = self.refresh_cycles()
        self.results["open_loop"]["by_time"] = analyze_open_loop(
            self.results["open_loop"], self.results["refresh_cycles"]
        )
        self.results["hit_rate"] = self.hit_rate_over_run()
        self.results["revision"]["code_at_end"] = code_fingerprint(self.source)
        self.results["revision"]["source"] = str(self.source)
        self.results["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        self.results["total_seconds"] = round(time.time() - started, 1)
        self.results["evaluation"] = evaluate(self.results)

    def command(self) -> str:
        parts = [f"{k}={v}" for k, v in self.overrides.items() if k.startswith("BENCH_")]
        flags = [f"{k}={v}" for k, v in self.overrides.items() if k.startswith("--")]
        base = "make bench" if not flags else ".venv/bin/python -m bench.run " + " ".join(flags)
        return " ".join([*parts, base])

    def env(self, **settings: str) -> dict[str, str]:
        """The children's environment: GATEWAY_* only from here (never the caller's shell)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        env.update(
            {
                "GATEWAY_ENV": "production",
                "GATEWAY_DATABASE_URL": self.sqlite_url,
                "GATEWAY_REDIS_URL": f"redis://{HOST}:{self.redis_port}/0",
                "GATEWAY_PERSISTED_MANIFEST": str(self.work / "manifest.json"),
                "GATEWAY_JWT_SECRET": JWT_SECRET,
                "GATEWAY_WEBHOOK_SECRET": WEBHOOK_SECRET,
                "GATEWAY_REFRESH_INTERVAL_S": str(int(self.config.refresh_interval)),
                # The gateway's code from `source` (default: this work tree), bench from here.
                "PYTHONPATH": os.pathsep.join(dict.fromkeys([str(self.source), str(ROOT)])),
            }
        )
        env.update({f"GATEWAY_{k.upper()}": v for k, v in settings.items()})
        return env

    @property
    def sqlite_path(self) -> Path:
        path = Path(self.config.database)
        return path if path.is_absolute() else ROOT / path

    @property
    def sqlite_url(self) -> str:
        return f"sqlite+aiosqlite:///{self.sqlite_path}"

    def redis(self, db: int = 0) -> redis_sync.Redis:
        return redis_sync.Redis(host=HOST, port=self.redis_port, db=db)

    # ---------------------------------------------------------------- 1. setup

    def ensure_database(self) -> dict[str, Any]:
        from gateway.seed import SCALES

        scale = SCALES[self.config.scale]
        path = self.sqlite_path
        directors = _count(path, "SELECT count(*) FROM users WHERE role = 'director'")
        cohorts = _count(path, "SELECT count(*) FROM cohorts")
        if directors == scale.directors and cohorts == scale.cohorts:
            log(f"reusing {path} ({directors} directors, {cohorts} cohorts)")
            return {"path": str(path), "reused": True, "seed_seconds": None, **self._rows(path)}
        log(f"seeding {self.config.scale} scale into {path} …")
        path.parent.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        status = self.procs.run(
            "seed",
            [
                *GATEWAY,
                "seed",
                "--scale",
                self.config.scale,
                "--seed",
                str(self.config.seed),
                "--database-url",
                self.sqlite_url,
            ],  # fmt: skip
            env=self.env(),
            log=self.work / "seed-sqlite.log",
            timeout_s=900,
            cwd=self.source,
        )
        if status != 0:
            raise RuntimeError(f"seed failed:\n{_tail(self.work / 'seed-sqlite.log')}")
        seconds = round(time.perf_counter() - started, 1)
        return {"path": str(path), "reused": False, "seed_seconds": seconds, **self._rows(path)}

    @staticmethod
    def _rows(path: Path) -> dict[str, Any]:
        with contextlib.closing(sqlite3.connect(path)) as db:
            tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            rows = {t: db.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}
        return {"rows": sum(rows.values()), "users": rows.get("users", 0)}

    def start_redis(self) -> None:
        self.redis_port = free_port()
        directory = self.work / "redis"
        directory.mkdir()
        child = self.redis_child = self.procs.start(
            "redis",
            [
                "redis-server",
                "--port",
                str(self.redis_port),
                "--bind",
                HOST,
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(directory),
            ],  # fmt: skip
            log=self.work / "redis.log",
        )

        def up() -> bool:
            with contextlib.suppress(redis_sync.RedisError):
                return bool(self.redis().ping())
            return False

        wait_for(up, 30, "redis-server", child)
        log(f"redis-server on port {self.redis_port}")

    def write_manifest(self) -> None:
        status = self.procs.run(
            "manifest",
            [
                *GATEWAY,
                "manifest",
                "build",
                "--output",
                str(self.work / "manifest.json"),
            ],
            env=self.env(),
            log=self.work / "manifest.log",
            timeout_s=120,
            cwd=self.source,
        )
        if status != 0:
            raise RuntimeError(f"manifest build failed:\n{_tail(self.work / 'manifest.log')}")

    # ---------------------------------------------------------------- 2. prewarm

    def _prewarm(self, label: str, env: dict[str, str], runs: int) -> dict[str, Any]:
        """`gateway refresh --all --sync` until `runs` runs were not disturbed by other
        processes (at most runs + retries attempts); medians of the undisturbed ones."""
        out: list[dict[str, Any]] = []
        for i in range(max(1, runs) + max(0, self.config.retries)):
            logfile = self.work / f"prewarm-{label}-{i}.log"
            quiet = self.wait_quiet(f"prewarm {label}")
            cpu = CpuWindow().start()
            started = time.perf_counter()
            status = self.procs.run(
                f"prewarm-{label}",
                [*GATEWAY, "refresh", "--all", "--sync"],
                env=env,
                log=logfile,
                timeout_s=900,
                cwd=self.source,
            )
            wall = time.perf_counter() - started
            usage = cpu.stop()
            if status != 0:
                raise RuntimeError(f"prewarm on {label} failed:\n{_tail(logfile)}")
            run = {
                **parse_refresh_output(logfile.read_text(errors="replace")),
                "process_wall_s": round(wall, 2),
                "clean": usage["other_cores"] <= self.config.quiet_threshold,
                "cpu": usage,
                "quiet_wait": quiet,
            }
            out.append(run)
            log(
                f"prewarm {label} #{i + 1}: {run['total_s']} s (subtrees {run['subtrees_s']} s, "
                f"answers {run['responses_s']} s), other load {usage['other_cores']} cores"
            )
            if sum(r["clean"] for r in out) >= runs:
                break
        used = [r for r in out if r["clean"]] or out
        return {
            "runs": out,
            "runs_used": len(used),
            "median_total_s": round(statistics.median(r["total_s"] for r in used), 2),
            "median_subtrees_s": round(statistics.median(r["subtrees_s"] for r in used), 2),
            "median_responses_s": round(statistics.median(r["responses_s"] for r in used), 2),
        }

    def prewarm_sqlite(self) -> dict[str, Any]:
        result = self._prewarm("sqlite", self.env(), self.config.prewarm_runs)
        if self._profiling() and result["median_total_s"] > TARGETS["prewarm_sqlite_s"]:
            result["profile"] = self.profile_prewarm("sqlite", self.env())
        return result

    def prewarm_postgres(self) -> dict[str, Any]:
        from tests.harness.servers import PostgresServer

        log("starting a private PostgreSQL …")
        self.postgres = PostgresServer().start()
        try:
            url = self.postgres.create_database("bench")
            started = time.perf_counter()
            status = self.procs.run(
                "seed-postgres",
                [
                    *GATEWAY,
                    "seed",
                    "--scale",
                    self.config.scale,
                    "--seed",
                    str(self.config.seed),
                    "--database-url",
                    url,
                ],  # fmt: skip
                env=self.env(),
                log=self.work / "seed-postgres.log",
                timeout_s=900,
                cwd=self.source,
            )
            if status != 0:
                raise RuntimeError(
                    f"seed on PostgreSQL failed:\n{_tail(self.work / 'seed-postgres.log')}"
                )
            seed_s = round(time.perf_counter() - started, 1)
            log(f"seeded PostgreSQL in {seed_s} s")
            env = self.env(database_url=url, redis_url=f"redis://{HOST}:{self.redis_port}/1")
            result = self._prewarm("postgres", env, self.config.prewarm_runs)
            result["seed_s"] = seed_s
            result["server"] = _postgres_version(self.postgres)
            if self._profiling() and result["median_total_s"] > TARGETS["prewarm_postgres_s"]:
                result["profile"] = self.profile_prewarm("postgres", env)
            return result
        finally:
            with contextlib.suppress(redis_sync.RedisError):
                self.redis(1).flushdb()
            self.postgres.stop()
            self.postgres = None

    def profile_prewarm(self, label: str, env: dict[str, str]) -> dict[str, Any]:
        if profile.py_spy() is None:
            return {"error": "py-spy not found"}
        raw = self.work / f"profile-prewarm-{label}.txt"
        argv = profile.record_command_argv(
            [str(BIN / "python"), "-m", "gateway.cli", "refresh", "--all", "--sync"], raw, rate=100
        )
        status = self.procs.run(
            f"profile-prewarm-{label}", argv, env=env, log=self.work / f"{raw.stem}.log",
            timeout_s=900, cwd=self.source,
        )  # fmt: skip
        if status != 0 or not raw.exists():
            return {"error": _tail(self.work / f"{raw.stem}.log")}
        log(f"profiled a prewarm on {label}")
        return {"what": f"gateway refresh --all --sync on {label} (one extra run)",
                **profile.summarize(raw)}  # fmt: skip

    def _profiling(self) -> bool:
        return self.config.profile != "off" and profile.py_spy() is not None

    # ---------------------------------------------------------------- 3. processes

    def start_worker(self) -> Child:
        child = self.procs.start(
            "worker", [*GATEWAY, "worker"], env=self.env(),
            log=self.work / "worker.log", cwd=self.source,
        )  # fmt: skip
        time.sleep(1.0)
        if not child.running():
            raise RuntimeError(f"gateway worker exited:\n{child.log_tail()}")
        log("arq worker started")
        return child

    def start_gateway(self, workers: int, kind: str) -> Server:
        settings = {
            "fast": {},
            "subtree": {"response_cache_enabled": "false"},
            "nocache": {"cache_enabled": "false"},
        }[kind]
        port = free_port()
        metrics_dir = Path(tempfile.mkdtemp(prefix=f"metrics-{kind}-", dir=self.work))
        env = self.env(**settings)
        env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
        logfile = self.work / f"gateway-{kind}-{workers}.log"
        child = self.procs.start(
            f"gateway-{kind}",
            [
                *GATEWAY,
                "serve",
                "--host",
                HOST,
                "--port",
                str(port),
                "--workers",
                str(workers),
            ],  # fmt: skip
            env=env,
            log=logfile,
            cwd=self.source,
        )
        server = Server(child, port, kind, workers, metrics_dir)
        self._wait_up(server, logfile)
        log(f"gateway ({kind}, {workers} worker{'s' if workers > 1 else ''}) on port {port}")
        return server

    def start_limit(self, workers: int) -> Server:
        port = free_port()
        env = self.env()
        env["BENCH_LIMIT_REDIS_URL"] = f"redis://{HOST}:{self.redis_port}/2"
        logfile = self.work / f"limit-{workers}.log"
        child = self.procs.start(
            "limit",
            [
                str(BIN / "uvicorn"),
                "bench.limit_app:app",
                "--host",
                HOST,
                "--port",
                str(port),
                "--workers",
                str(workers),
                "--loop",
                "uvloop",
                "--http",
                "httptools",
                "--no-access-log",
                "--log-level",
                "info",
            ],  # fmt: skip
            env=env,
            log=logfile,
            cwd=ROOT,
        )
        server = Server(child, port, "limit", workers)
        self._wait_up(server, logfile)
        log(f"limit app ({workers} worker{'s' if workers > 1 else ''}) on port {port}")
        return server

    def _wait_up(self, server: Server, logfile: Path) -> None:
        def healthy() -> bool:
            with contextlib.suppress(OSError, asyncio.TimeoutError):
                status, _ = asyncio.run(client.get(server.port, "/healthz"))
                return status == 200
            return False

        def all_workers_started() -> bool:
            text = logfile.read_text(errors="replace") if logfile.exists() else ""
            return text.count("Application startup complete") >= server.workers

        wait_for(healthy, 60, f"{server.kind} on port {server.port}", server.child)
        wait_for(
            all_workers_started, 60, f"{server.workers} workers of {server.kind}", server.child
        )
        time.sleep(0.5)

    def stop_server(self, server: Server) -> None:
        self.procs.stop(server.child)

    # ---------------------------------------------------------------- 4. requests

    def load_dataset(self) -> None:
        with contextlib.closing(sqlite3.connect(self.sqlite_path)) as db:
            self.directors = [
                r[0] for r in db.execute("SELECT id FROM users WHERE role = 'director' ORDER BY id")
            ]
            scopes: dict[int, set[int]] = defaultdict(set)
            for director, cohort in db.execute(
                "SELECT td.director_id, c.id FROM track_directors td "
                "JOIN cohorts c ON c.track_id = td.track_id"
            ):
                scopes[director].add(cohort)
        self.scopes = {d: sorted(scopes[d]) for d in self.directors}
        from gateway.auth import mint_token
        from gateway.settings import Settings

        settings = Settings(_env_file=None, jwt_secret=JWT_SECRET)  # type: ignore[call-arg]
        ttl_s = 4 * 3600
        self.tokens = {d: mint_token(settings, d, "director", ttl_s) for d in self.directors}
        sizes = [len(s) for s in self.scopes.values()]
        self.results["directors"] = {
            "count": len(self.directors),
            "scope_cohorts_min": min(sizes),
            "scope_cohorts_median": statistics.median(sizes),
            "scope_cohorts_max": max(sizes),
        }

    def write_requests(self) -> None:
        """The load: directors in a shuffled round robin, each request its own director's
        token, the operation drawn by the mix, CohortDetail ids from the director's scope."""
        from gateway.persisted import dashboard_operations

        operations = dashboard_operations()
        rng = random.Random(self.config.seed)
        names = list(self.config.weights)
        weights = [self.config.weights[n] for n in names]
        order = list(self.directors)
        lines: list[str] = []
        mix: dict[str, int] = defaultdict(int)
        while len(lines) < self.config.requests:
            rng.shuffle(order)
            for director in order:
                name = rng.choices(names, weights)[0]
                variables = None
                if name == "CohortDetail":
                    if not self.scopes[director]:
                        name = "DirectorSummary"
                    else:
                        variables = {"id": rng.choice(self.scopes[director])}
                mix[name] += 1
                target = persisted_get(name, operations[name].sha256, variables)
                lines.append(f"{target}\t{self.tokens[director]}")
                if len(lines) >= self.config.requests:
                    break
        self.requests_file.write_text("\n".join(lines) + "\n")
        self.distinct = sorted(set(lines))
        self.results["load"] = {
            "requests_in_file": len(lines),
            "distinct_requests": len(self.distinct),
            "mix": dict(mix),
            "directors": len(self.directors),
        }

    def first_visits(self, server: Server) -> dict[str, Any]:
        """Every distinct request once through the fast path: the first visit of each
        CohortDetail page stores its answer (the prewarm covers the two pages without
        arguments); the answers are copied for the limit app, keyed as it reads them."""
        started = time.perf_counter()
        before = promfiles.read_counters(server.metrics_dir)  # type: ignore[arg-type]
        raws = []
        for line in self.distinct:
            target, token = line.split("\t")
            raws.append(client.raw_get(target, token, server.port))
        answers = asyncio.run(client.fetch_all(server.port, raws, concurrency=8))
        bad = [
            (line.split("\t")[0][:80], status, body[:200])
            for line, (status, body) in zip(self.distinct, answers, strict=True)
            if status != 200 or body.startswith(b'{"errors"') or b'"errors":' in body[:40]
        ]
        if bad:
            raise RuntimeError(f"{len(bad)} first visits failed, e.g. {bad[:3]}")
        limit = self.redis(2)
        limit.flushdb()
        with limit.pipeline(transaction=False) as pipe:
            for line, (_, body) in zip(self.distinct, answers, strict=True):
                target, token = line.split("\t")
                query = target.split("?", 1)[1].encode()
                pipe.set(limit_key(f"Bearer {token}".encode(), query), body)
            pipe.execute()
        after = promfiles.read_counters(server.metrics_dir)  # type: ignore[arg-type]
        cache = promfiles.cache_summary(promfiles.delta(after, before))
        result = {
            "requests": len(raws),
            "seconds": round(time.perf_counter() - started, 2),
            "response_cache": cache["response"],
            "answer_bytes_median": statistics.median(len(b) for _, b in answers),
        }
        log(f"first visits: {result}")
        return result

    # ---------------------------------------------------------------- 5. load

    def wrk(self, server: Server, seconds: float, label: str) -> dict[str, Any]:
        out = self.work / f"wrk-{label}.json"
        out.unlink(missing_ok=True)
        cfg = self.config
        env = {**os.environ, "BENCH_REQUESTS": str(self.requests_file), "BENCH_WRK_OUT": str(out)}
        argv = [
            "wrk", "-t", str(cfg.threads), "-c", str(max(cfg.connections, cfg.threads)),
            "-d", f"{max(1, round(seconds))}s", "--timeout", "30s", "-s", str(LUA),
            f"http://{HOST}:{server.port}",
        ]  # fmt: skip
        status = self.procs.run(
            f"wrk-{label}", argv, env=env, log=self.work / f"wrk-{label}.log",
            timeout_s=seconds + 60,
        )  # fmt: skip
        if status != 0 or not out.exists():
            raise RuntimeError(f"wrk failed ({status}):\n{_tail(self.work / f'wrk-{label}.log')}")
        return json.loads(out.read_text())

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

    def measure(self, server: Server, scenario: str) -> dict[str, Any]:
        attempts = []
        for attempt in range(1 + max(0, self.config.retries)):
            result = self._measure_once(server, scenario, attempt)
            attempts.append(
                {
                    "throughput": result["throughput"],
                    "cpu": result["cpu"],
                    "quiet_wait": result["quiet_wait"],
                }  # fmt: skip
            )
            if result["cpu"]["other_cores"] <= self.config.quiet_threshold:
                break
            again = "measuring again" if attempt < self.config.retries else "kept, flagged"
            log(f"{scenario}: other processes used {result['cpu']['other_cores']} cores; {again}")
        result["attempts"] = attempts
        self.windows.append(result)
        return result

    def _measure_once(self, server: Server, scenario: str, attempt: int) -> dict[str, Any]:
        label = f"{scenario}-{server.workers}-{attempt}"
        quiet = self.wait_quiet(f"scenario ({scenario})")
        if self.config.warmup > 0:
            self.wrk(server, self.config.warmup, label + "-warmup")
        before = promfiles.read_counters(server.metrics_dir) if server.metrics_dir else None
        cpu = CpuWindow({"server": server.child.pid, "redis": self.redis_child.pid}).start()
        t0 = time.time()
        raw = self.wrk(server, self.config.duration, label)
        t1 = time.time()
        usage = cpu.stop()
        after = promfiles.read_counters(server.metrics_dir) if server.metrics_dir else None
        seconds = raw["duration_us"] / 1e6
        pct = raw["latency_us"]["percentiles"]
        errors = raw["errors"]
        result: dict[str, Any] = {
            "scenario": scenario,
            "server": server.kind,
            "workers": server.workers,
            "window": [t0, t1],
            "requests": raw["requests"],
            "seconds": round(seconds, 2),
            "throughput": round(raw["requests"] / seconds, 1),
            "p50_ms": pct["50"] / 1000,
            "p95_ms": pct["95"] / 1000,
            "p99_ms": pct["99"] / 1000,
            "max_ms": raw["latency_us"]["max"] / 1000,
            "non_2xx": errors["status"],
            "socket_errors": errors["connect"]
            + errors["read"]
            + errors["write"]
            + errors["timeout"],
            "errors_detail": errors,
            "mb_per_s": round(raw["bytes"] / seconds / 1e6, 2),
            "memory": memory_of_session(server.child.pid),
            "cpu": usage,
            "quiet_wait": quiet,
            # CPU the server's processes spent per answered request: unlike throughput,
            # this does not depend on what else the machine's cores were doing.
            "server_cpu_us_per_request": round(
                usage["groups_cpu_s"]["server"] * 1e6 / max(1, raw["requests"]), 1
            ),
            "redis_cpu_us_per_request": round(
                usage["groups_cpu_s"]["redis"] * 1e6 / max(1, raw["requests"]), 1
            ),
        }
        if before is not None and after is not None:
            counters = promfiles.delta(after, before)
            cache = promfiles.cache_summary(counters)
            statements = promfiles.total(counters, promfiles.STATEMENTS)
            result["cache"] = cache
            result["response_hit_rate"] = promfiles.hit_rate(cache, ("response",))
            result["subtree_hit_rate"] = promfiles.hit_rate(cache, promfiles.SUBTREE_KINDS)
            result["statements"] = statements
            result["statements_per_request"] = (
                statements / raw["requests"] if raw["requests"] else None
            )
        log(
            f"{scenario} ({server.workers}w): {result['throughput']:.0f} req/s, "
            f"p50 {result['p50_ms']:.2f} p95 {result['p95_ms']:.2f} p99 {result['p99_ms']:.2f} ms, "
            f"errors {result['non_2xx']}+{result['socket_errors']}, "
            f"hit {result.get('response_hit_rate')}, "
            f"stmts/req {result.get('statements_per_request')}, "
            f"server CPU {result['server_cpu_us_per_request']} µs/request, "
            f"other load {usage['other_cores']} cores"
        )
        return result

    def closed_loop(self) -> list[dict[str, Any]]:
        wanted = self.config.scenario_set
        rows: list[dict[str, Any]] = []
        for i, workers in enumerate(self.config.worker_counts):
            if i == 0 or "b" in wanted:
                fast = self.start_gateway(workers, "fast")
                try:
                    if i == 0:
                        self.results["first_visits"] = self.first_visits(fast)
                    if "b" in wanted:
                        rows.append(self.measure(fast, "b"))
                finally:
                    self.stop_server(fast)
            if "a" in wanted:
                limit = self.start_limit(workers)
                try:
                    rows.append(self.measure(limit, "a"))
                finally:
                    self.stop_server(limit)
        fast_rows = [r for r in rows if r["scenario"] == "b"]
        best = (
            max(fast_rows, key=lambda r: r["throughput"])["workers"]
            if fast_rows
            else self.config.worker_counts[-1]
        )
        self.results["best_workers"] = best
        log(f"worker count for the rest: {best}")
        for kind, scenario in (("subtree", "c"), ("nocache", "d")):
            if scenario not in wanted:
                continue
            server = self.start_gateway(best, kind)
            try:
                rows.append(self.measure(server, scenario))
            finally:
                self.stop_server(server)
        with contextlib.suppress(redis_sync.RedisError):
            self.redis(2).flushdb()  # the limit's copies are not the gateway's memory
        return rows

    def cache_keys(self) -> Any:
        """The gateway's key scheme, at the version the running code writes (read back from
        Redis, so it is right even when --source runs another tree than this one)."""
        from gateway.keys import PREFIX, Keys, cache_version

        store = self.redis(0)
        for pattern in (f"{PREFIX}:*:refresh:last", f"{PREFIX}:*:summary:*"):
            for key in store.scan_iter(match=pattern, count=1000):
                return Keys(key.decode().split(":")[1])
        from resolvers.schema import build_schema

        return Keys(cache_version(build_schema().as_str()))

    def open_loop_seconds(self) -> tuple[float, dict[str, Any]]:
        """The open-loop run's measured length: fixed, or (auto) until 90 s after the entries
        of the last refresh cycle turn stale: the moment the next cycle must replace them."""
        cfg = self.config
        if cfg.open_loop_duration > 0:
            return cfg.open_loop_duration, {"mode": "fixed"}
        raw = self.redis(0).get(self.cache_keys().refresh_stamp())
        now = time.time() + cfg.open_loop_warmup
        if raw is None:
            return cfg.refresh_interval + 60, {"mode": "auto", "note": "no refresh stamp"}
        stamp = json.loads(raw)  # type: ignore[arg-type]
        cycle_start = datetime.fromisoformat(stamp["computed_at"]).timestamp() - float(
            stamp["duration_s"]
        )
        expires = cycle_start + cfg.refresh_interval
        while expires < now - 30:
            expires += cfg.refresh_interval
        seconds = min(max(120.0, expires - now + 90.0), cfg.refresh_interval + 150.0)
        info = {
            "mode": "auto",
            "last_cycle_start": datetime.fromtimestamp(cycle_start, UTC).isoformat(),
            "entries_turn_stale_at": datetime.fromtimestamp(expires, UTC).isoformat(),
        }
        return round(seconds), info

    def open_loop(self, server: Server) -> dict[str, Any]:
        cfg = self.config
        out = self.work / "openloop.json"
        samples = self.work / "openloop-samples.json"
        quiet = self.wait_quiet("the open-loop run")
        duration, duration_info = self.open_loop_seconds()
        log(f"open loop at {cfg.rate:.0f}/s for {duration:.0f} s ({duration_info})")
        before = promfiles.read_counters(server.metrics_dir)  # type: ignore[arg-type]
        sampler = Sampler(server.metrics_dir)  # type: ignore[arg-type]
        sampler.start()
        cpu = CpuWindow().start()
        t0 = time.time()
        argv = [
            str(BIN / "python"), "-m", "bench.openloop", "--port", str(server.port),
            "--requests", str(self.requests_file), "--rate", str(cfg.rate),
            "--duration", str(duration), "--warmup", str(cfg.open_loop_warmup),
            "--out", str(out), "--samples", str(samples),
        ]  # fmt: skip
        try:
            status = self.procs.run(
                "openloop", argv, env={**os.environ, "PYTHONPATH": str(ROOT)},
                log=self.work / "openloop.log",
                timeout_s=duration + cfg.open_loop_warmup + 90, cwd=ROOT,
            )  # fmt: skip
        finally:
            sampler.stop()
            usage = cpu.stop()
        t1 = time.time()
        if status != 0 or not out.exists():
            raise RuntimeError(f"open-loop generator failed:\n{_tail(self.work / 'openloop.log')}")
        after = promfiles.read_counters(server.metrics_dir)  # type: ignore[arg-type]
        report = json.loads(out.read_text())
        counters = promfiles.delta(after, before)
        cache = promfiles.cache_summary(counters)
        measured_from = report["t0_wall"] + cfg.open_loop_warmup
        result = {
            **report,
            "workers": server.workers,
            "window": [measured_from, t1],
            "errors": report["non_2xx"] + report["socket_errors"] + report["unanswered"],
            # Counters cover warm-up and measured seconds alike.
            "cache": cache,
            "response_hit_rate": promfiles.hit_rate(cache, ("response",)),
            "statements": promfiles.total(counters, promfiles.STATEMENTS),
            "duration_rule": duration_info,
            "per_second": sampler.series,
            "samples_file": None,
            "cpu": usage,
            "quiet_wait": quiet,
        }
        result["_samples"] = json.loads(samples.read_text()) if samples.exists() else []
        self.windows.append({"scenario": "open-loop", **result, "window": [t0, t1]})
        log(
            f"open loop {cfg.rate:.0f}/s: achieved {report['achieved_rate']:.1f}/s, "
            f"p50 {report['latency_ms']['50']:.2f} p95 {report['latency_ms']['95']:.2f} "
            f"p99 {report['latency_ms']['99']:.2f} ms, errors {result['errors']}, "
            f"send lag p99 {report['send_lag_ms']['99']:.2f} ms, hit {result['response_hit_rate']}"
        )
        return result

    def profiles(self, server: Server) -> dict[str, Any]:
        """py-spy on the fast path's workers under wrk load (after the measured windows)."""
        if not self._profiling():
            return {}
        seconds = self.config.profile_seconds
        pids = _worker_pids(server)
        raws = [self.work / f"profile-fast-{pid}.txt" for pid in pids]
        spies = [
            self.procs.start(
                f"py-spy-{pid}",
                profile.record_pid_argv(pid, seconds, raw),
                log=self.work / f"py-spy-{pid}.log",
            )  # fmt: skip
            for pid, raw in zip(pids, raws, strict=True)
        ]
        try:
            time.sleep(0.5)
            self.wrk(server, seconds + 2, "profile")
            for spy in spies:
                spy.process.wait(30)
        finally:
            for spy in spies:
                self.procs.stop(spy)
        merged = self.work / "profile-fast.txt"
        merged.write_text("".join(r.read_text() for r in raws if r.exists()))
        log("profiled the fast path")
        return {
            "fast_path": {
                "what": f"py-spy on {len(pids)} uvicorn worker(s) under wrk load, {seconds:.0f} s",
                **profile.summarize(merged),
            }
        }

    def cold_detail(self, server: Server) -> dict[str, Any]:
        """CohortDetail with both the answer and the cohort subtree absent, one at a time."""
        from gateway.persisted import dashboard_operations
        from gateway.responses import ResponseCache
        from resolvers.subtrees import Caller

        keys = self.cache_keys()
        responses = ResponseCache(None, keys)  # type: ignore[arg-type]
        detail = dashboard_operations()["CohortDetail"]
        rng = random.Random(self.config.seed + 1)
        owner: dict[int, int] = {}
        for director in self.directors:
            for cohort in self.scopes[director]:
                owner.setdefault(cohort, director)
        cohorts = rng.sample(sorted(owner), min(self.config.cold_samples, len(owner)))
        store = self.redis(0)
        quiet = self.wait_quiet("the cold cohort details")
        before = promfiles.read_counters(server.metrics_dir)  # type: ignore[arg-type]
        cpu = CpuWindow().start()
        timings: list[float] = []
        statuses: dict[int, int] = defaultdict(int)
        for cohort in cohorts:
            director = owner[cohort]
            variables = {"id": cohort}
            key = responses.key(
                Caller(director, "director"), detail.sha256, "CohortDetail",
                orjson.dumps(variables, option=orjson.OPT_SORT_KEYS),
            )  # fmt: skip
            store.delete(keys.cohort(cohort), key)
            raw = client.raw_get(
                persisted_get("CohortDetail", detail.sha256, variables),
                self.tokens[director],
                server.port,
            )
            [(status, seconds, body)] = asyncio.run(client.timed_sequence(server.port, [raw]))
            statuses[status] += 1
            if status == 200 and b'"errors"' not in body[:20]:
                timings.append(seconds * 1000)
        usage = cpu.stop()
        after = promfiles.read_counters(server.metrics_dir)  # type: ignore[arg-type]
        counters = promfiles.delta(after, before)
        cache = promfiles.cache_summary(counters)
        result = {
            "cpu": usage,
            "quiet_wait": quiet,
            "samples": len(cohorts),
            "ok": len(timings),
            "statuses": dict(statuses),
            "p50_ms": percentile(timings, 50),
            "p95_ms": percentile(timings, 95),
            "p99_ms": percentile(timings, 99),
            "max_ms": max(timings) if timings else float("nan"),
            "response_misses": cache["response"]["miss"],
            "cohort_misses": cache["cohort"]["miss"],
            "statements_per_request": promfiles.total(counters, promfiles.STATEMENTS)
            / max(1, len(cohorts)),
        }
        log(f"cold cohort detail: {result}")
        return result

    def final_memory(self, server: Server) -> dict[str, Any]:
        info: dict[str, Any] = self.redis(0).info("memory")  # type: ignore[assignment]
        keyspace: dict[str, Any] = self.redis(0).info("keyspace")  # type: ignore[assignment]
        result = {
            "gateway": memory_of_session(server.child.pid),
            "gateway_workers": server.workers,
            "redis_used_memory_mb": round(info["used_memory"] / 1024 / 1024, 1),
            "redis_used_memory_rss_mb": round(info["used_memory_rss"] / 1024 / 1024, 1),
            "redis_keys": {db: v.get("keys") for db, v in keyspace.items()},
        }
        log(
            f"memory: gateway RSS {result['gateway']['rss_mb']} MB "
            f"(PSS {result['gateway']['pss_mb']} MB), Redis {result['redis_used_memory_mb']} MB"
        )
        return result

    # ---------------------------------------------------------------- 6. the run's totals

    def refresh_cycles(self) -> list[dict[str, Any]]:
        """The worker's refresh cycles (from its JSON log lines) during the run."""
        path = self.work / "worker.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return parse_cycles(text)

    def hit_rate_over_run(self) -> dict[str, Any]:
        """Response fast-path look-ups over every measured fast-path window of the run."""
        cycles = self.results.get("refresh_cycles", [])
        totals: dict[str, float] = defaultdict(float)
        windows = []
        for w in self.windows:
            if w.get("scenario") not in ("b", "open-loop") or "cache" not in w:
                continue
            for result, count in w["cache"]["response"].items():
                totals[result] += count
            start, end = w["window"]
            overlapping = [c for c in cycles if c["start"] < end and c["end"] > start]
            windows.append(
                {
                    "scenario": w["scenario"],
                    "workers": w.get("workers"),
                    "response": w["cache"]["response"],
                    "hit_rate": w.get("response_hit_rate"),
                    "refresh_cycles_overlapping": len(overlapping),
                }
            )
        looked = sum(totals.values())
        return {
            "response": dict(totals),
            "rate": totals["hit"] / looked if looked else None,
            "windows": windows,
        }


class Sampler:
    """Per-second response cache counters while a window runs (from the metrics files)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.series: list[list[float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(Exception):
                cache = promfiles.cache_summary(promfiles.read_counters(self.directory))
                r = cache["response"]
                self.series.append(
                    [round(time.time(), 2), r["hit"], r["miss"], r["stale"], r["error"]]
                )
            self._stop.wait(1.0)


# --------------------------------------------------------------------------- parsing


_REFRESHED = re.compile(r"refreshed (\d+) directors, (\d+) cohorts in ([\d.]+) s")
_PREWARMED = re.compile(r"prewarmed (\d+) answers for (\d+) callers in ([\d.]+) s")


def parse_refresh_output(text: str) -> dict[str, Any]:
    """The timings `gateway refresh --all --sync` prints: the whole command (subtrees, then
    the response prewarm) and the response prewarm alone."""
    refreshed = _REFRESHED.search(text)
    prewarmed = _PREWARMED.search(text)
    if refreshed is None:
        raise RuntimeError(f"unexpected `gateway refresh` output:\n{text[-2000:]}")
    total_s = float(refreshed.group(3))
    responses_s = float(prewarmed.group(3)) if prewarmed else 0.0
    return {
        "directors": int(refreshed.group(1)),
        "cohorts": int(refreshed.group(2)),
        "answers": int(prewarmed.group(1)) if prewarmed else 0,
        "total_s": total_s,
        "responses_s": responses_s,
        "subtrees_s": round(total_s - responses_s, 2),
    }


def parse_cycles(text: str) -> list[dict[str, Any]]:
    """Refresh cycles from the worker's JSON lines: `refresh cycle done` (its duration)
    followed by `prewarmed responses`."""
    cycles: list[dict[str, Any]] = []
    for line in text.splitlines():
        if not line.startswith("{"):
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        message = entry.get("message")
        ts = entry.get("ts")
        if not ts or message not in ("refresh cycle done", "prewarmed responses"):
            continue
        at = datetime.fromisoformat(ts).timestamp()
        if message == "refresh cycle done":
            duration = float(entry.get("duration_s", 0))
            cycles.append(
                {"start": at - duration, "subtrees_s": duration, "end": at, "responses_s": None}
            )
        elif cycles and cycles[-1]["responses_s"] is None:
            cycles[-1]["responses_s"] = float(entry.get("duration_s", 0))
            cycles[-1]["end"] = at
    for c in cycles:
        c["started_at"] = datetime.fromtimestamp(c["start"], UTC).isoformat(timespec="seconds")
        c["total_s"] = round(c["end"] - c["start"], 2)
    return cycles


def analyze_open_loop(open_loop: dict[str, Any], cycles: list[dict[str, Any]]) -> dict[str, Any]:
    """Open-loop latencies split by time: before the last cycle's entries turned stale,
    from that moment on, and during worker refresh cycles; plus a 10-second timeline."""
    t0 = open_loop.get("t0_wall")
    samples = open_loop.get("_samples") or []
    if t0 is None or not samples:
        return {}
    stale_at_text = (open_loop.get("duration_rule") or {}).get("entries_turn_stale_at")
    stale_at = datetime.fromisoformat(stale_at_text).timestamp() if stale_at_text else None
    inf = float("inf")
    before: list[float] = []
    after: list[float] = []
    during: list[float] = []
    buckets: dict[int, list[float]] = defaultdict(list)
    first = t0 + samples[0][0]
    for offset, latency in samples:
        at = t0 + offset
        value = latency if latency is not None else inf
        (after if stale_at is not None and at >= stale_at else before).append(value)
        if any(c["start"] <= at <= c["end"] for c in cycles):
            during.append(value)
        buckets[int((at - first) // 10)].append(value)

    def stats(values: list[float]) -> dict[str, Any] | None:
        if not values:
            return None
        return {
            "count": len(values),
            "p50_ms": percentile(values, 50),
            "p95_ms": percentile(values, 95),
            "p99_ms": percentile(values, 99),
            "max_ms": max(values),
        }

    return {
        "stale_at": stale_at_text,
        "before_stale": stats(before),
        "from_stale": stats(after),
        "during_cycles": stats(during),
        "timeline_10s": [
            [
                k * 10,
                len(v),
                round(percentile(v, 50), 2),
                round(percentile(v, 99), 2),
                round(max(v), 2),
            ]
            for k, v in sorted(buckets.items())
        ],
    }


def persisted_get(name: str, sha256: str, variables: dict[str, Any] | None) -> str:
    """The path and query of a persisted GET, as Apollo Client sends it."""
    params = [("operationName", name)]
    if variables is not None:
        params.append(("variables", json.dumps(variables, separators=(",", ":"))))
    extensions = {"persistedQuery": {"version": 1, "sha256Hash": sha256}}
    params.append(("extensions", json.dumps(extensions, separators=(",", ":"))))
    return "/graphql?" + urllib.parse.urlencode(params, quote_via=urllib.parse.quote)


def _count(path: Path, sql: str) -> int:
    if not path.exists():
        return 0
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            return int(db.execute(sql).fetchone()[0])
    except sqlite3.Error:
        return 0


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _postgres_version(server: Any) -> str:
    with contextlib.suppress(Exception):
        out = subprocess.run(
            [str(server.bindir / "postgres"), "--version"], capture_output=True, text=True
        )
        return out.stdout.strip()
    return "PostgreSQL"


def _worker_pids(server: Server) -> list[int]:
    """The processes that serve requests: the workers under the gateway's supervisor or
    uvicorn's (the limit app), or the single process."""
    procs = memory_of_session(server.child.pid)["processes"]
    workers = [p["pid"] for p in procs if "spawn_main" in p["cmd"] or "--worker" in p["cmd"]]
    return workers or [server.child.pid]


# --------------------------------------------------------------------------- targets


def evaluate(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target: the measured value, met or not, and by how much."""
    rows: list[dict[str, Any]] = []

    def add(name: str, target: float, value: float | None, higher_is_better: bool, unit: str,
            note: str = "") -> None:  # fmt: skip
        if value is None or (isinstance(value, float) and math.isnan(value)):
            rows.append({"target": name, "goal": target, "value": None, "met": False,
                         "unit": unit, "note": note or "not measured"})  # fmt: skip
            return
        met = value >= target if higher_is_better else value <= target
        margin = (value / target - 1) * 100 if target else 0.0
        rows.append({"target": name, "goal": target, "value": value, "met": met, "unit": unit,
                     "margin_pct": round(margin, 1), "note": note})  # fmt: skip

    scenarios = results.get("scenarios", [])
    best = results.get("best_workers")

    def row(scenario: str, workers: int | None) -> dict[str, Any] | None:
        return next(
            (r for r in scenarios if r["scenario"] == scenario and r["workers"] == workers), None
        )

    a, b = row("a", best), row("b", best)
    ratio = b["throughput"] / a["throughput"] if a and b and a["throughput"] else None
    add("fast path ≥ 0.5 × limit throughput", TARGETS["fast_path_vs_limit"], ratio, True, "×",
        f"{best} worker(s)")  # fmt: skip
    ol = results.get("open_loop") or {}
    lat = ol.get("latency_ms", {})
    errors = ol.get("errors")
    add("open-loop p95 ≤ 10 ms", TARGETS["open_loop_p95_ms"], lat.get("95"), False, "ms")
    add("open-loop p99 ≤ 25 ms", TARGETS["open_loop_p99_ms"], lat.get("99"), False, "ms")
    rows.append({"target": "open-loop: zero errors", "goal": 0, "value": errors,
                 "met": errors == 0, "unit": "errors", "note": ""})  # fmt: skip
    hit = (results.get("hit_rate") or {}).get("rate")
    add("hit rate ≥ 99.5 %", TARGETS["hit_rate"], hit, True, "")
    prewarm = results.get("prewarm", {})
    add("full prewarm, SQLite ≤ 20 s", TARGETS["prewarm_sqlite_s"],
        prewarm.get("sqlite", {}).get("median_total_s"), False, "s", "median")  # fmt: skip
    add("full prewarm, PostgreSQL ≤ 15 s", TARGETS["prewarm_postgres_s"],
        prewarm.get("postgres", {}).get("median_total_s"), False, "s", "median")  # fmt: skip
    add("cold cohort detail p95 ≤ 50 ms", TARGETS["cold_detail_p95_ms"],
        (results.get("cold_detail") or {}).get("p95_ms"), False, "ms")  # fmt: skip
    memory = results.get("memory") or {}
    add("gateway RSS ≤ 250 MB", TARGETS["gateway_rss_mb"],
        (memory.get("gateway") or {}).get("rss_mb"), False, "MB",
        f"RSS summed over {len((memory.get('gateway') or {}).get('processes', []))} "
        "processes")  # fmt: skip
    add("Redis ≤ 250 MB", TARGETS["redis_mb"], memory.get("redis_used_memory_mb"), False, "MB",
        "used_memory")  # fmt: skip
    return rows


# --------------------------------------------------------------------------- main


def write_results(results: dict[str, Any], config: Config) -> Path:
    directory = Path(config.results_dir)
    directory = directory if directory.is_absolute() else ROOT / directory
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = directory / f"{stamp}.json"
    ol = results.get("open_loop")
    if ol and "_samples" in ol:
        samples = ol.pop("_samples")
        samples_path = directory / f"{stamp}-openloop-samples.json"
        samples_path.write_text(json.dumps(samples))
        ol["samples_file"] = str(samples_path)
    path.write_text(json.dumps(results, indent=2, default=str))
    return path


def _raise_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    config, overrides = parse_config(argv)
    if shutil.which("wrk") is None:
        print("bench: wrk not found (apt-get install wrk)", file=sys.stderr)
        return 2
    if shutil.which("redis-server") is None:
        print("bench: redis-server not found", file=sys.stderr)
        return 2
    # The bench sets every GATEWAY_* variable of its children itself; none from the shell.
    for name in [n for n in os.environ if n.startswith("GATEWAY_")]:
        del os.environ[name]
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    signal.signal(signal.SIGHUP, _raise_on_sigterm)
    os.chdir(ROOT)
    bench = Bench(config, overrides)
    results = bench.run()
    path = write_results(results, config)
    log(f"results: {path}")
    if config.markdown:
        from bench.report import render

        target = Path(config.markdown)
        target = target if target.is_absolute() else ROOT / target
        target.write_text(render(results, path))
        log(f"wrote {target}")
    from bench.report import summary_table

    print(summary_table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
