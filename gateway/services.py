"""Long-lived parts of one gateway process, built once at start-up."""

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import strawberry
from arq.connections import ArqRedis
from redis.asyncio import ConnectionPool, Redis, RedisCluster

from gateway import metrics
from gateway.auth import TokenVerifier
from gateway.cache.answers import AnswerStore
from gateway.cache.keys import QUEUE_NAME, Keys, cache_version
from gateway.cache.kv import KV, MemoryKV, RedisKV
from gateway.cache.source import CachedSource
from gateway.cache.subtrees import CachePolicy, Refresher, SubtreeCache
from gateway.live.bus import LocalBus, RedisBus
from gateway.live.hub import Hub
from gateway.refresh.requests import LocalRefresher, QueueRefresher, RateLimitedRefresh
from gateway.refresh.service import RefreshService
from gateway.settings import Settings
from gateway.version import PYTHON, VERSION
from loaders.engines import Upstream
from loaders.registry import Loaders
from resolvers.caller import Caller
from resolvers.context import Context, SubtreeSource
from resolvers.figures import Thresholds
from resolvers.schema import build_schema
from resolvers.subtrees import LiveSource

if TYPE_CHECKING:  # gateway.tracing is imported only when tracing is on
    from gateway.tracing import Tracing

CacheClient = Redis | RedisCluster


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
    # None in embedded mode (no GATEWAY_REDIS_URL). `redis`: the job queue's (and the
    # cycle lease's) standalone Redis; `cache_redis`: the cache's, maybe a Redis Cluster,
    # maybe the same client.
    redis: ArqRedis | None = None
    cache_redis: CacheClient | None = None
    kv: KV = field(default_factory=MemoryKV)
    cache: SubtreeCache | None = None
    refresh: RefreshService | None = None
    refresher: Refresher | None = None
    answers: AnswerStore | None = None
    tracing: "Tracing | None" = None
    # This process's subscriptions (gateway/live); idle unless a connection opens.
    hub: Hub | None = None

    @classmethod
    def build(
        cls,
        settings: Settings,
        *,
        clock: Callable[[], datetime] = utc_now,
        tracing: "Tracing | None" = None,
        command_timeout_s: float | None = None,
    ) -> "Services":
        """`tracing`: a tracer provider of the caller's; else one from the OTEL_* variables
        when GATEWAY_TRACING is on. `command_timeout_s`: how long a Redis command may take
        (default: a request's; REFRESH_COMMAND_TIMEOUT_S for workers and refresh tools)."""
        command_timeout_s = command_timeout_s or COMMAND_TIMEOUT_S
        if tracing is None and settings.tracing:
            from gateway.tracing import Tracing

            tracing = Tracing.from_environment()
        upstream = Upstream(
            settings.upstream_urls(),
            query_timeout_s=settings.upstream_query_timeout_s,
            pool_size=settings.upstream_pool_size,
        )
        upstream.observers.append(metrics.observe_statement)
        upstream.refusal_observers.append(metrics.observe_refusal)
        schema = build_schema([tracing.graphql_extension()] if tracing else None)
        redis = make_redis(settings.queue_url, command_timeout_s) if settings.queue_url else None
        cache_redis = make_cache_redis(settings, redis, command_timeout_s)
        kv: KV = RedisKV(cache_redis) if cache_redis is not None else MemoryKV()
        if tracing is not None:
            tracing.instrument(upstream)
            kv = tracing.wrap(kv)
        thresholds = settings.thresholds()
        keys = Keys(cache_version(schema.as_str()))
        metrics.BUILD_INFO.labels(VERSION, PYTHON, keys.version).set(1)
        cache = SubtreeCache(
            kv,
            keys,
            CachePolicy(
                fresh_s=settings.fresh_s,
                serve_stale_s=settings.cache_ttl_s,
                retention_s=settings.cache_retention_s,
                lock_s=settings.cache_lock_s,
            ),
            distributed=redis is not None,
        )
        refresh = RefreshService(upstream, cache, thresholds, clock)
        refresher: Refresher = (
            QueueRefresher(redis, trace_context=tracing.carrier if tracing else None)
            if redis is not None
            else LocalRefresher(
                refresh,
                concurrency=settings.refresh_concurrency,
                max_pending=settings.refresh_queue_max,
            )
        )
        cache.refresher = refresher
        services = cls(
            settings=settings,
            upstream=upstream,
            schema=schema,
            verifier=TokenVerifier.from_settings(settings),
            thresholds=thresholds,
            clock=clock,
            redis=redis,
            cache_redis=cache_redis,
            kv=kv,
            cache=cache,
            refresh=refresh,
            refresher=refresher,
            answers=(
                AnswerStore(
                    kv,
                    cache.keys,
                    max_per_caller=settings.answer_max_per_caller,
                    index_ttl_s=settings.answer_rebuild_window_s,
                    gzip_min_bytes=settings.gzip_min_bytes,
                )
                if settings.cache_enabled and settings.response_cache_enabled
                else None
            ),
            tracing=tracing,
        )
        hub = Hub(
            cache,
            upstream,
            services.source,
            clock,
            max_connections=settings.subscriptions_max_connections,
            max_connections_per_caller=settings.subscriptions_max_connections_per_caller,
        )
        if redis is not None and settings.redis_url:
            bus = RedisBus(redis, settings.redis_url, cache.keys.rewrites_channel())
            hub.listener = bus.listen
            cache.publisher = bus
        else:
            cache.publisher = LocalBus(hub)
        services.hub = hub
        return services

    def source(self, now: datetime, *, enqueue_refreshes: bool = True) -> SubtreeSource:
        """Where one request (or job) reads subtrees as of `now`: through the cache, or live."""
        # Loaders are built per request, inside the running event loop, when first needed.
        live = LiveSource(functools.partial(Loaders, self.upstream), now, self.thresholds)
        if self.cache is not None and self.settings.cache_enabled:
            return CachedSource(
                self.cache, live, self.thresholds, enqueue_refreshes=enqueue_refreshes
            )
        return live

    def make_context(
        self, caller: Caller, request_id: str, now: datetime, *, enqueue_refreshes: bool = True
    ) -> Context:
        """Everything one request (or one answer a cycle rebuilds) reads, as of `now`."""
        return Context(
            caller=caller,
            source=self.source(now, enqueue_refreshes=enqueue_refreshes),
            now=now,
            stale_after_s=self.settings.fresh_s,
            request_id=request_id,
            refresh=self.refresh_requests,
        )

    @property
    def refresh_requests(self) -> RateLimitedRefresh | None:
        if self.refresher is None or self.cache is None:
            return None
        return RateLimitedRefresh(
            self.kv,
            self.cache.keys,
            self.refresher,
            self.settings.refresh_rate_limit,
            self.clock,
        )

    async def close(self) -> None:
        if isinstance(self.refresher, LocalRefresher):
            await self.refresher.close()
        if self.hub is not None:
            await self.hub.stop()
        await self.upstream.dispose()
        if self.cache_redis is not None and self.cache_redis is not self.redis:
            await self.cache_redis.aclose()
        if self.redis is not None:
            await self.redis.aclose(close_connection_pool=True)
        if self.tracing is not None:
            self.tracing.shutdown()


# Short timeouts: an unreachable Redis must degrade to live answers, not hang requests.
CONNECT_TIMEOUT_S = 0.5
COMMAND_TIMEOUT_S = 1.0
# A refresh writes hundreds of entries per pipeline: on a loaded Redis its answer may take
# longer than a request may wait, and a write wrongly taken for failed is redone.
REFRESH_COMMAND_TIMEOUT_S = 10.0
HEALTH_CHECK_S = 5


def make_redis(url: str, command_timeout_s: float = COMMAND_TIMEOUT_S) -> ArqRedis:
    """A standalone Redis client that can also enqueue arq jobs."""
    pool = ConnectionPool.from_url(
        url,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        socket_timeout=command_timeout_s,
        health_check_interval=HEALTH_CHECK_S,
    )
    return ArqRedis(pool, default_queue_name=QUEUE_NAME)


def make_cache_redis(
    settings: Settings, queue: ArqRedis | None, command_timeout_s: float = COMMAND_TIMEOUT_S
) -> CacheClient | None:
    """The cache's client: the cluster client, a second standalone one, or the queue's."""
    if not settings.redis_url:
        return None
    if settings.redis_cluster:
        # The cache issues single-key commands only (pipelined, never a transaction), so
        # its keys may live on any node; the client routes each command by slot.
        return RedisCluster.from_url(
            settings.redis_url,
            socket_connect_timeout=CONNECT_TIMEOUT_S,
            socket_timeout=command_timeout_s,
            health_check_interval=HEALTH_CHECK_S,
        )
    if queue is not None and settings.redis_url == settings.queue_url:
        return queue
    return make_redis(settings.redis_url, command_timeout_s)
