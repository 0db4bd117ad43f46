from __future__ import annotations

from collections.abc import Callable

import redis
import redis.asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.harness.servers import PostgresServer, RedisServer


def test_redis_round_trip(redis_url: str) -> None:
    with redis.Redis.from_url(redis_url) as client:
        client.set("greeting", "hello, director")
        assert client.get("greeting") == b"hello, director"


def test_redis_url_starts_empty(redis_url: str) -> None:
    with redis.Redis.from_url(redis_url) as client:
        assert client.dbsize() == 0


async def test_redis_restarts_on_the_same_port() -> None:
    async def set_then_get(url: str, value: str) -> bytes | None:
        client = redis.asyncio.Redis.from_url(url)
        try:
            before = await client.get("k")
            await client.set("k", value)
            return before
        finally:
            await client.aclose()

    with RedisServer() as server:
        assert await set_then_get(server.url, "v") is None
        server.stop()
        assert server.is_running is False
        server.start()
        assert await set_then_get(server.url, "w") is None  # no persistence: restarts empty
        server.kill()
        server.start()
        assert await set_then_get(server.url, "x") is None


async def test_postgres_select(postgres_url_factory: Callable[[str], str]) -> None:
    url = postgres_url_factory("servers")
    assert url.startswith("postgresql+asyncpg://")
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            assert (await connection.execute(text("SELECT 1 + 1"))).scalar_one() == 2
            database = (await connection.execute(text("SELECT current_database()"))).scalar_one()
            assert url.endswith(f"/{database}")
    finally:
        await engine.dispose()


def test_postgres_server_reports_running(postgres_server: PostgresServer) -> None:
    assert postgres_server.is_running is True
