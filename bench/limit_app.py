"""The limit of scenario (a): a bare Starlette endpoint that answers GET /graphql with one
Redis GET of pre-stored answer bytes, keyed by the caller's Authorization header and the
raw query string. No JWT check, no JSON parsing, no metrics: what is left is the HTTP
server, Starlette's routing and one Redis round trip, the floor under any fast path.

Served exactly like the gateway (uvicorn, uvloop, httptools, same worker count):
    BENCH_LIMIT_REDIS_URL=redis://… uvicorn bench.limit_app:app --loop uvloop --http httptools
"""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis.asyncio as aioredis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

KEY_PREFIX = b"bench:limit:"
JSON = "application/json"


def limit_key(authorization: bytes, query_string: bytes) -> bytes:
    """The key the harness stores each answer under (and this app reads)."""
    return KEY_PREFIX + authorization + b"?" + query_string


_client: aioredis.Redis | None = None


async def graphql(request: Request) -> Response:
    assert _client is not None
    body = await _client.get(
        limit_key(request.headers.get("authorization", "").encode(), request.scope["query_string"])
    )
    if body is None:
        return Response(b'{"errors":[{"message":"not stored"}]}', 404, media_type=JSON)
    return Response(body, media_type=JSON)


async def healthz(request: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type=JSON)


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    global _client
    # The gateway's pool settings (gateway.services.make_redis), hiredis parser when present.
    _client = aioredis.Redis.from_url(
        os.environ["BENCH_LIMIT_REDIS_URL"], socket_connect_timeout=0.5, socket_timeout=1.0
    )
    try:
        yield
    finally:
        await _client.aclose(close_connection_pool=True)
        _client = None


app = Starlette(
    routes=[Route("/graphql", graphql), Route("/healthz", healthz)],
    lifespan=lifespan,
)
