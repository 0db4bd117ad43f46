"""The operator's endpoints: /readyz says which parts are down by name (never an address
or an exception's text) and answers 503 only when nothing can be answered; /readyz and
/metrics may require a bearer token, and may live on an internal port of their own."""

from pathlib import Path

import httpx
import pytest

from gateway.settings import Settings
from gateway.version import VERSION
from tests.harness.processes import HOST, GatewayProcess, child_env, free_port
from tests.support.clock import MovableClock
from tests.support.dataset import DANA, NOW
from tests.support.gateway import settings_for
from tests.support.gateway_client import gateway_client

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

TOKEN = "internal-token-of-thirty-two-bytes!!"
ME = {"query": "{ me { id } }"}


def closed(module: str) -> str:
    """A database URL nobody listens on."""
    return f"postgresql+asyncpg://nobody@{HOST}:{free_port()}/{module}"


async def ready(settings: Settings) -> tuple[int, dict]:
    async with gateway_client(settings, MovableClock(NOW)) as api:
        response = await api.http.get("/readyz")
        return response.status_code, response.json()


async def test_ready_when_every_part_answers(dataset_url: str, redis_url: str) -> None:
    assert await ready(settings_for(dataset_url, redis_url)) == (
        200,
        {"status": "ready", "down": [], "version": VERSION},
    )
    assert await ready(settings_for(dataset_url, None)) == (
        200,
        {"status": "ready", "down": [], "version": VERSION},
    )


async def test_degraded_while_answers_can_still_be_given(dataset_url: str, redis_url: str) -> None:
    billing = settings_for(dataset_url, redis_url, upstream_billing_url=closed("billing"))
    assert await ready(billing) == (
        200,
        {"status": "degraded", "down": ["billing"], "version": VERSION},
    )
    # The core module down: answers come from the cache (Redis, or memory when embedded).
    programs = closed("programs")
    for redis in (redis_url, None):
        settings = settings_for(dataset_url, redis, upstream_programs_url=programs)
        assert await ready(settings) == (
            200,
            {"status": "degraded", "down": ["programs"], "version": VERSION},
        )


async def test_degraded_with_redis_down_and_no_address_shown(
    dataset_url: str, redis_server, redis_url: str
) -> None:
    settings = settings_for(dataset_url, redis_url)
    async with gateway_client(settings, MovableClock(NOW)) as api:
        redis_server.stop()
        try:
            response = await api.http.get("/readyz")
        finally:
            redis_server.start()
        assert (response.status_code, response.json()) == (
            200,
            {"status": "degraded", "down": ["redis"], "version": VERSION},
        )
        assert str(redis_server.port) not in response.text


async def test_unavailable_only_when_nothing_can_be_answered(
    dataset_url: str, redis_server, redis_url: str
) -> None:
    programs = closed("programs")
    no_cache = settings_for(dataset_url, None, upstream_programs_url=programs, cache_enabled=False)
    assert await ready(no_cache) == (
        503,
        {"status": "unavailable", "down": ["programs"], "version": VERSION},
    )
    settings = settings_for(dataset_url, redis_url, upstream_programs_url=programs)
    async with gateway_client(settings, MovableClock(NOW)) as api:
        redis_server.stop()
        try:
            response = await api.http.get("/readyz")
        finally:
            redis_server.start()
    assert (response.status_code, response.json()) == (
        503,
        {"status": "unavailable", "down": ["programs", "redis"], "version": VERSION},
    )
    assert programs.rsplit(":", 1)[1] not in response.text


async def test_readyz_and_metrics_may_require_a_bearer_token(dataset_url: str) -> None:
    settings = settings_for(dataset_url, None, internal_token=TOKEN)
    async with gateway_client(settings, MovableClock(NOW)) as api:
        for path in ("/readyz", "/metrics"):
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
                refused = await api.http.get(path, headers=headers)
                assert refused.status_code == 401
                assert refused.headers["www-authenticate"] == 'Bearer realm="internal"'
                assert refused.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
            allowed = await api.http.get(path, headers={"Authorization": f"Bearer {TOKEN}"})
            assert allowed.status_code == 200
        assert (await api.http.get("/healthz")).json() == {"status": "ok"}


async def test_an_internal_port_serves_only_the_operators_endpoints(dataset_url: str) -> None:
    internal = free_port()
    settings = settings_for(dataset_url, None, internal_port=internal)
    async with gateway_client(settings, MovableClock(NOW)) as api:
        inside = httpx.AsyncClient(
            transport=api.http._transport, base_url=f"http://gateway.test:{internal}"
        )
        async with inside:
            assert (await inside.get("/readyz")).json() == {
                "status": "ready",
                "down": [],
                "version": VERSION,
            }
            assert (await inside.get("/metrics")).status_code == 200
            assert (await inside.get("/healthz")).status_code == 200
            not_here = await inside.post("/graphql", json=ME, headers=api.auth(DANA))
            assert not_here.status_code == 404
            assert (await inside.post("/webhooks/upstream", content=b"{}")).status_code == 404
        for path in ("/readyz", "/metrics"):
            response = await api.http.get(path)
            assert response.status_code == 404
            assert response.json()["errors"][0]["extensions"]["code"] == "NOT_FOUND"
        assert (await api.http.get("/healthz")).status_code == 200
        served = await api.http.post("/graphql", json=ME, headers=api.auth(DANA))
        assert served.json() == {"data": {"me": {"id": DANA}}}


@pytest.mark.parametrize("workers", [1, 2])
def test_gateway_serve_listens_on_the_internal_port(
    dataset_url: str, tmp_path: Path, workers: int
) -> None:
    internal = free_port()
    env = child_env(dataset_url, internal_port=str(internal))
    with GatewayProcess("gateway", env, tmp_path, workers=workers) as gateway:
        inside = f"http://{HOST}:{internal}"
        assert httpx.get(f"{inside}/readyz", timeout=30).json() == {
            "status": "ready",
            "down": [],
            "version": VERSION,
        }
        assert "gateway_request_seconds" in httpx.get(f"{inside}/metrics", timeout=30).text
        assert httpx.get(f"{inside}/graphql", timeout=30).status_code == 404
        assert httpx.get(f"{gateway.url}/readyz", timeout=30).status_code == 404
        assert httpx.get(f"{gateway.url}/metrics", timeout=30).status_code == 404
