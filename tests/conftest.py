from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from tests.harness.servers import PostgresServer, RedisServer
from tests.support.node import node_binary


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """An empty Redis; restarted first if an earlier test stopped or killed it."""
    redis_server.start()
    redis_server.flushall()
    return redis_server.url


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """Private cluster, or the server in GATEWAY_TEST_POSTGRES_URL when that is set."""
    with PostgresServer.from_env() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_url_factory(postgres_server: PostgresServer) -> Callable[[str], str]:
    """`factory(prefix)` creates a fresh database named `<prefix>_<random>` and returns its URL."""

    def create(prefix: str = "test") -> str:
        return postgres_server.create_database(f"{prefix}_{uuid.uuid4().hex[:12]}")

    return create


@pytest.fixture
def postgres_url(postgres_url_factory: Callable[[str], str]) -> str:
    """A fresh, empty database for one test."""
    return postgres_url_factory("test")


# --- the gateway on the hand-built dataset --------------------------------------------


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Name of the database the module's dataset lives on."""
    return request.param


@pytest.fixture(scope="module")
async def dataset_url(backend: str, request: pytest.FixtureRequest, tmp_path_factory) -> str:
    from tests.support import dataset

    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'upstream.sqlite3'}"
    else:
        url = request.getfixturevalue("postgres_url_factory")("dataset")
    await dataset.load(url)
    return url


@pytest.fixture
async def db(tmp_path) -> str:
    """The dataset in a SQLite database of this test's own (for tests that change it)."""
    from tests.support import dataset

    url = f"sqlite+aiosqlite:///{tmp_path / 'upstream.sqlite3'}"
    await dataset.load(url)
    return url


@pytest.fixture
def manifest(tmp_path) -> str:
    """The dashboard's operations as a persisted-query manifest file."""
    import json

    from gateway.documents.dashboard import build_manifest, dashboard_operations

    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(build_manifest(dashboard_operations())))
    return str(path)


@pytest.fixture
async def fast(dataset_url: str, redis_url: str, manifest: str):
    """A gateway on the dataset with Redis and the manifest, its subtrees refreshed, on a
    movable clock (`fast.clock`): the response fast path's tests."""
    from tests.support.clock import MovableClock
    from tests.support.cycles import refresh_all
    from tests.support.dataset import NOW
    from tests.support.gateway import services_of, settings_for
    from tests.support.gateway_client import gateway_client

    clock = MovableClock(NOW)
    settings = settings_for(dataset_url, redis_url, persisted_manifest=manifest)
    async with gateway_client(settings, clock) as api:
        api.clock = clock
        await refresh_all(services_of(api))
        yield api


@pytest.fixture(scope="module")
def node() -> str:
    return node_binary()
