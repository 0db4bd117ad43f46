"""The options of a `make bench` run and the targets it is judged against.

Every option also reads BENCH_<OPTION> from the environment (flags win)."""

import argparse
import os
from dataclasses import asdict, dataclass

OPERATIONS = ("DirectorSummary", "CohortList", "CohortDetail")
JWT_SECRET = "bench-jwt-secret-0123456789abcdef0123456789abcdef"
WEBHOOK_SECRET = "bench-webhook-secret-0123456789abcdef0123456789"
# Production refuses public /metrics and /readyz: the bench never reads them.
INTERNAL_TOKEN = "bench-internal-token-0123456789abcdef0123456789"

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
    "subscription_delay_p95_s": 1.0,
    "subscription_idle_kb": 50.0,
    "fast_path_with_subscribers": 0.9,
    "post_vs_get": 0.8,
    "gzip_vs_plain": 0.9,
}


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
    cycles: bool = True  # per-cohort cost against `baseline`, 1 vs 2 workers (bench/cycles.py)
    cycle_runs: int = 3
    baseline: str = "d5c0887"
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
    # s: subscriptions (bench/scenarios/subscriptions.py); p, z, x: POST, gzip and the
    # admins' CohortList by GET and POST, beside (b) (bench/scenarios/closed_loop.py);
    # e: executed CPU per operation (bench/scenarios/execution.py)
    scenarios: str = "a,b,p,z,x,c,d,s,e"
    subscribers: int = 1000  # connections of scenario s, two per director
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
