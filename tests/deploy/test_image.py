"""The container image (Containerfile), built and run as an operator runs it: `make
image-test` (marker `image`, off in `make test`; it builds the image first with
deploy/image/build.sh).

One image for every process: `seed` fills a PostgreSQL database, `worker` runs the refresh
cycle and passes its liveness check, `serve` answers /healthz, /readyz and a persisted GET
(then a 304), `token` and `refresh` work, configured through environment variables and
files mounted read-only (the database URL and the webhook secret through
GATEWAY_<NAME>_FILE, an RS256 public key, the trusted-documents manifest), as the
image's non-root user on a read-only root filesystem; `podman stop` ends serve and worker
with status 0."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from gateway.documents.dashboard import build_manifest, dashboard_operations
from tests.harness.processes import HOST, free_port
from tests.harness.waiting import wait_until

pytestmark = pytest.mark.image

ROOT = Path(__file__).resolve().parents[2]
IMAGE = os.environ.get("IMAGE", "localhost/director-dashboard-gateway:test")
PODMAN = ["podman", "--storage-driver", "vfs", "--runtime", "runc"]
SECRETS = "/run/secrets/gateway"
USER_ID = "10001"


def podman(*args: str, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CONTAINERS_CONF": str(ROOT / "deploy" / "image" / "containers.conf")}
    return subprocess.run(
        [*PODMAN, *args], capture_output=True, text=True, timeout=timeout_s, env=env
    )


def env_args(env: dict[str, str]) -> list[str]:
    return [part for name, value in env.items() for part in ("-e", f"{name}={value}")]


@pytest.fixture(scope="module")
def image() -> str:
    if shutil.which("podman") is None or podman("image", "exists", IMAGE).returncode != 0:
        pytest.fail(f"no image {IMAGE}: run `make image-test` (it builds it first)")
    return IMAGE


@pytest.fixture(scope="module")
def mounted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What the containers get read-only in /run/secrets/gateway: an RS256 key pair (the
    gateway reads the public key; `gateway token` signs with the private one) and the
    dashboard's manifest of trusted documents."""
    folder = tmp_path_factory.mktemp("mounted")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (folder / "jwt-public.pem").write_bytes(public)
    (folder / "jwt-private.pem").write_bytes(private)
    (folder / "manifest.json").write_text(json.dumps(build_manifest(dashboard_operations())))
    folder.chmod(0o755)  # the image's user (10001) reads them
    for path in folder.iterdir():
        path.chmod(0o644)
    return folder


@pytest.fixture(scope="module")
def stack(image: str, mounted: Path, postgres_url_factory, redis_server) -> Iterator[dict]:
    redis_server.start()
    redis_server.flushall()
    # Secrets from files (GATEWAY_<NAME>_FILE), the database URL as operators write it.
    url = postgres_url_factory("image").replace("postgresql+asyncpg://", "postgresql://")
    (mounted / "database-url").write_text(url + "\n")
    (mounted / "webhook-secret").write_text("image-test-webhook-secret-0123456789abcdef\n")
    for path in mounted.iterdir():
        path.chmod(0o644)
    env = {
        "GATEWAY_ENV": "production",
        "GATEWAY_DATABASE_URL_FILE": f"{SECRETS}/database-url",
        "GATEWAY_REDIS_URL": redis_server.url,
        "GATEWAY_WEBHOOK_SECRET_FILE": f"{SECRETS}/webhook-secret",
        "GATEWAY_JWT_PUBLIC_KEY_FILE": f"{SECRETS}/jwt-public.pem",
        "GATEWAY_PERSISTED_MANIFEST": f"{SECRETS}/manifest.json",
    }
    # As the Kubernetes manifests run it: a read-only root with a writable /tmp, every
    # capability dropped, no privilege escalation.
    hardened = ["--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL"]
    hardened += ["--security-opt", "no-new-privileges"]
    run = ["run", "--network", "host", *hardened, "-v", f"{mounted}:{SECRETS}:ro", *env_args(env)]
    names: list[str] = []

    def start(name: str, *command: str, extra: dict[str, str] | None = None) -> str:
        name = f"gateway-image-test-{name}-{uuid.uuid4().hex[:8]}"
        done = podman(*run, *env_args(extra or {}), "-d", "--name", name, image, *command)
        assert done.returncode == 0, done.stderr
        names.append(name)
        return name

    try:
        done = podman(*run, "--rm", image, "seed", "--scale", "demo")
        assert done.returncode == 0, done.stdout + done.stderr
        admin = int(re.search(r"admin (\d+),", done.stdout).group(1))  # type: ignore[union-attr]
        port, internal = free_port(), free_port()
        serve = start(
            "serve",
            *("serve", "--host", HOST, "--port", str(port)),
            extra={"GATEWAY_INTERNAL_PORT": str(internal)},
        )
        worker = start("worker", "worker")
        yield {
            "serve": serve,
            "worker": worker,
            "public": f"http://{HOST}:{port}",
            "internal": f"http://{HOST}:{internal}",
            "admin": admin,
            "seeded": done.stdout,
        }
    finally:
        for name in names:
            podman("rm", "-f", "-t", "0", name)


def get(url: str, **kwargs) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=10, **kwargs)
    except httpx.TransportError:
        return None


def last_success(internal: str) -> float:
    answer = get(f"{internal}/metrics")
    if answer is None or answer.status_code != 200:
        return 0.0
    found = re.search(
        r"^gateway_refresh_last_success_timestamp_seconds (\S+)$", answer.text, re.MULTILINE
    )
    return float(found.group(1)) if found else 0.0


def test_the_image_runs_the_gateway_cli_as_its_own_user(image: str) -> None:
    config = json.loads(podman("image", "inspect", image, "--format", "{{json .Config}}").stdout)
    assert config["Entrypoint"] == ["gateway"]
    assert config["Cmd"] == ["serve", "--host", "0.0.0.0", "--port", "8000"]
    assert config["User"] == f"{USER_ID}:{USER_ID}"


def test_seed_serve_worker_refresh_and_token_from_one_image(stack: dict) -> None:
    assert "seeded scale=demo" in stack["seeded"]
    worker, serve = stack["worker"], stack["serve"]

    def worker_live() -> bool:
        return podman("exec", worker, "gateway", "worker", "--check").returncode == 0

    wait_until(worker_live, "the worker's liveness check to pass")
    health = wait_until(lambda: get(f"{stack['public']}/healthz"), "serve's /healthz")
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    # (Commands run in the serve container rather than in new ones: a container costs
    # seconds to create on the vfs storage driver.)
    assert podman("exec", serve, "id").stdout.split() == [
        "uid=10001(gateway)",
        "gid=10001(gateway)",
        "groups=10001(gateway)",
    ]
    usage = podman("exec", serve, "gateway", "--help").stdout
    assert "{serve,run,seed,token,worker,refresh" in usage
    version = podman("exec", serve, "gateway", "--version").stdout.split()
    assert version[:2] == ["gateway", metadata.version("director-dashboard-gateway")]
    # The internal port alone answers /readyz and /metrics.
    ready = get(f"{stack['internal']}/readyz")
    assert ready is not None and ready.status_code == 200
    assert ready.json()["status"] == "ready"
    assert get(f"{stack['public']}/readyz").status_code == 404  # type: ignore[union-attr]
    # The worker's cold start runs a cycle; the replica reads its record from Redis.
    wait_until(lambda: last_success(stack["internal"]) > 0, "a complete refresh cycle")

    key = f"GATEWAY_JWT_PRIVATE_KEY_FILE={SECRETS}/jwt-private.pem"
    minted = podman("exec", "-e", key, serve, "gateway", "token", "--user-id", str(stack["admin"]))
    assert minted.returncode == 0, minted.stderr
    token = minted.stdout.strip()
    document_id = dashboard_operations()["DirectorSummary"].sha256
    url = f"{stack['public']}/graphql"
    params = {"documentId": document_id}
    headers = {"Authorization": f"Bearer {token}"}
    first = get(url, params=params, headers=headers)
    assert first is not None and first.status_code == 200, first and first.text
    body = first.json()
    assert "errors" not in body, body
    assert int(body["data"]["me"]["id"]) == stack["admin"]
    assert body["data"]["me"]["summary"]["stale"] is False
    again = get(url, params=params, headers={**headers, "If-None-Match": first.headers["etag"]})
    assert again is not None and again.status_code == 304

    queued = podman("exec", serve, "gateway", "refresh", "--all")
    assert queued.stdout.strip() in ("enqueued refresh_all", "refresh_all is already queued")


def test_stop_ends_serve_and_worker_gracefully(stack: dict) -> None:
    for name in (stack["serve"], stack["worker"]):
        done = podman("stop", "-t", "60", name, timeout_s=120)
        assert done.returncode == 0, done.stderr
        code = podman("inspect", name, "--format", "{{.State.ExitCode}}").stdout.strip()
        assert code == "0", podman("logs", "--tail", "30", name).stderr
