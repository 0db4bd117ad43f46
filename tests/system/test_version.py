"""The version, said everywhere an operator looks: `gateway --version`, the build-info
metric, /readyz and the one start-up line (which names hosts, never credentials)."""

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from gateway.cache.keys import Keys, cache_version
from gateway.version import PYTHON, VERSION
from resolvers.schema import build_schema
from tests.harness.processes import HOST, GatewayProcess, child_env, free_port

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


def test_gateway_version(tmp_path: Path, backend: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "--version"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, f"gateway {VERSION}\n", "")
    assert VERSION == "0.1.0"  # pyproject.toml's


def test_a_replica_says_its_version(dataset_url: str, redis_url: str, tmp_path: Path) -> None:
    closed = free_port()
    billing = f"postgresql://bob:hunter2@{HOST}:{closed}/billing"
    env = child_env(dataset_url, redis_url=redis_url, upstream_billing_url=billing)
    with GatewayProcess("gateway", env, tmp_path, workers=2) as gateway:
        ready = httpx.get(f"{gateway.url}/readyz", timeout=30)
        assert (ready.status_code, ready.json()) == (
            200,
            {"status": "degraded", "down": ["billing"], "version": VERSION},
        )
        version = Keys(cache_version(build_schema().as_str())).version
        labels = frozenset({"version": VERSION, "python": PYTHON, "cache_version": version}.items())
        assert gateway.metrics()[("gateway_build_info", labels)] == 1.0
        [started] = gateway.messages("^gateway serve starting$")
    sqlite = dataset_url.removeprefix("sqlite+aiosqlite:///")
    redis = redis_url.removeprefix("redis://")
    assert {k: started[k] for k in ("version", "env", "mode", "host", "port", "workers")} == {
        "version": VERSION,
        "env": "development",
        "mode": "redis",
        "host": HOST,
        "port": gateway.port,
        "workers": 2,
    }
    assert (started["internal_port"], started["redis"], started["queue_redis"]) == (
        None,
        redis,
        redis,
    )
    assert started["databases"] == sorted([f"{HOST}:{closed}/billing", f"sqlite:{sqlite}"])
    assert "hunter2" not in gateway.log() and "bob" not in gateway.log()
