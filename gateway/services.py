"""Long-lived parts of one gateway process, built once at start-up."""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import redis.asyncio as aioredis
import strawberry
from strawberry.http.ides import get_graphql_ide_html

from gateway.auth import TokenVerifier
from gateway.settings import Settings
from loaders.engines import Upstream
from loaders.registry import Loaders
from resolvers.context import Context
from resolvers.figures import Thresholds
from resolvers.schema import build_schema
from resolvers.subtrees import Caller, LiveSource


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Services:
    settings: Settings
    upstream: Upstream
    schema: strawberry.Schema
    verifier: TokenVerifier
    thresholds: Thresholds
    clock: Callable[[], datetime] = utc_now
    # None in embedded mode (no GATEWAY_REDIS_URL).
    redis: aioredis.Redis | None = None
    graphiql_html: str = field(default_factory=lambda: get_graphql_ide_html("graphiql"))

    @classmethod
    def build(cls, settings: Settings, *, clock: Callable[[], datetime] = utc_now) -> "Services":
        upstream = Upstream(
            settings.upstream_urls(),
            query_timeout_s=settings.upstream_query_timeout_s,
            pool_size=settings.upstream_pool_size,
        )
        return cls(
            settings=settings,
            upstream=upstream,
            schema=build_schema(),
            verifier=TokenVerifier.from_settings(settings),
            thresholds=settings.thresholds(),
            clock=clock,
            redis=make_redis(settings.redis_url) if settings.redis_url else None,
        )

    def make_context(self, caller: Caller, request_id: str) -> Context:
        # Loaders are built here, per request, inside the running event loop.
        source = LiveSource(Loaders(self.upstream), self.clock(), self.thresholds)
        return Context(
            caller=caller,
            source=source,
            clock=self.clock,
            stale_after_s=self.settings.refresh_interval_s,
            request_id=request_id,
        )

    async def close(self) -> None:
        await self.upstream.dispose()
        if self.redis is not None:
            await self.redis.aclose()


def make_redis(url: str) -> aioredis.Redis:
    # Short timeouts: an unreachable Redis must degrade to live answers, not hang requests.
    return aioredis.Redis.from_url(
        url, socket_connect_timeout=0.5, socket_timeout=1.0, health_check_interval=5
    )
