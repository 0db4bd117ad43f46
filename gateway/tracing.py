"""OpenTelemetry tracing: on with GATEWAY_TRACING=true, off by default.

Off, this module is never imported: no layer in the ASGI stack, no wrapper around the
cache, no listener on an engine, no extension on the schema — the fast path runs exactly
the code it runs without tracing (tests/test_tracing.py checks that no OpenTelemetry code
is even loaded).

On, one trace per request:

    {method} /graphql                 SERVER; parent: the request's W3C `traceparent`
      cache get response              the fast path's look-up (a hit ends the trace here)
      GraphQL Query: <operation>      Strawberry's OpenTelemetryExtension (INTERNAL here)
        GraphQL Parsing / Validation
        GraphQL Resolving: <field>    fields with resolvers of their own
          cache get_many <kind>       every cache call (TracedKV)
          SELECT <database>           every upstream statement (SQLAlchemy instrumentation)

A refresh job enqueued while a span is current carries its trace context (the job's
`trace` argument, a W3C carrier); the worker runs the job in a CONSUMER span under it, so a
webhook's refreshes land in the webhook request's trace.

Where spans go is the standard OTEL_* variables' business: OTEL_TRACES_EXPORTER (`otlp`,
the default: OTLP over HTTP/protobuf to OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT, with its
HEADERS, TIMEOUT…; `console`; `none`), OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES,
OTEL_TRACES_SAMPLER[_ARG], OTEL_BSP_* (batching), OTEL_PROPAGATORS.
"""

import os
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from importlib.metadata import entry_points
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode
from strawberry.extensions import LifecycleStep
from strawberry.extensions.tracing import OpenTelemetryExtension

from gateway.cache.keys import kind_of
from gateway.cache.kv import KV
from gateway.http.access import operation_of
from gateway.http.scope import GRAPHQL_PATH, OBSERVED
from loaders.engines import Upstream

SERVICE_NAME = "director-dashboard-gateway"
EXPORTER_GROUP = "opentelemetry_traces_exporter"
# OTEL_TRACES_EXPORTER names → the entry points the installed exporters register.
EXPORTER_ALIASES = {"otlp": "otlp_proto_http"}
# Span names use the route, never a raw path (paths outside the app are unbounded).
ROUTES = frozenset({GRAPHQL_PATH, "/healthz", "/readyz", "/metrics", "/webhooks/upstream", "/"})


class TracingError(ValueError):
    pass


def exporters_from_environment() -> list[SpanExporter]:
    """The exporters OTEL_TRACES_EXPORTER names (default `otlp`), each configured by its
    own OTEL_EXPORTER_* variables."""
    protocol = os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    )
    if protocol not in (None, "http/protobuf"):
        raise TracingError(f"OTLP protocol {protocol!r}: only http/protobuf is installed")
    names = [n.strip() for n in os.environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")]
    exporters = []
    for name in filter(None, names):
        if name == "none":
            continue
        found = entry_points(group=EXPORTER_GROUP, name=EXPORTER_ALIASES.get(name, name))
        if not found:
            raise TracingError(f"OTEL_TRACES_EXPORTER={name!r}: no such exporter installed")
        exporters.append(next(iter(found)).load()())
    return exporters


class Tracing:
    """The tracer provider of one process and what hooks it into the gateway."""

    def __init__(self, provider: TracerProvider, *, owned: bool = False) -> None:
        self.provider = provider
        self.tracer = provider.get_tracer("gateway")
        self.owned = owned  # shut down with the services that built it
        self._engine_tracers: list[EngineTracer] = []

    @classmethod
    def from_environment(cls) -> "Tracing":
        resource = Resource.create(
            {"service.name": os.environ.get("OTEL_SERVICE_NAME", SERVICE_NAME)}
        )
        provider = TracerProvider(resource=resource)  # the sampler from OTEL_TRACES_SAMPLER
        for exporter in exporters_from_environment():
            provider.add_span_processor(BatchSpanProcessor(exporter))
        # Global too, so that libraries tracing on their own report into the same traces.
        trace.set_tracer_provider(provider)
        return cls(provider, owned=True)

    def graphql_extension(self) -> Any:
        provider = self.provider
        return lambda: GraphQLSpans(tracer_provider=provider)

    def instrument(self, upstream: Upstream) -> None:
        """A span per upstream statement, on each distinct engine."""
        tracer = self.provider.get_tracer("opentelemetry.instrumentation.sqlalchemy")
        usage = (
            NoOpMeterProvider()
            .get_meter("gateway")
            .create_up_down_counter("db.client.connections.usage")
        )
        for engine in {id(e): e for e in upstream.engines.values()}.values():
            self._engine_tracers.append(EngineTracer(tracer, engine.sync_engine, usage))

    def wrap(self, kv: KV) -> KV:
        return TracedKV(kv, self.tracer)

    def asgi(self, app: Any) -> Any:
        return RequestSpans(app, self.tracer)

    def carrier(self) -> dict[str, str]:
        """The current trace context as W3C headers (empty when no span is current)."""
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        return carrier

    @contextmanager
    def job(
        self, name: str, carrier: Mapping[str, str] | None, **attributes: Any
    ) -> Iterator[None]:
        """A refresh job's span, under the trace that enqueued it when it carries one."""
        parent = propagate.extract(dict(carrier or {}))
        with self.tracer.start_as_current_span(
            f"job {name}", context=parent, kind=SpanKind.CONSUMER
        ) as span:
            span.set_attribute("messaging.system", "arq")
            span.set_attribute("messaging.operation.name", name)
            for key, value in attributes.items():
                span.set_attribute(f"gateway.{key}", value)
            yield

    def shutdown(self) -> None:
        """Flushes what is still batched (owned providers only)."""
        if self.owned:
            self.provider.shutdown()


class GraphQLSpans(OpenTelemetryExtension):
    """Strawberry's spans for parsing, validation and resolvers; the operation's span is an
    INTERNAL child of the request's SERVER span (the extension would open a second SERVER
    span) and carries the operation's name and type."""

    def on_operation(self) -> Iterator[None]:  # type: ignore[override]
        context = self.execution_context
        span = self._tracer.start_span("GraphQL Query", kind=SpanKind.INTERNAL)
        self._span_holder[LifecycleStep.OPERATION] = span
        span.set_attribute("component", "graphql")
        yield
        if context.operation_name:
            span.update_name(f"GraphQL Query: {context.operation_name}")
            span.set_attribute("graphql.operation.name", context.operation_name)
        with suppress(RuntimeError):  # the document did not parse: there is no operation
            span.set_attribute("graphql.operation.type", context.operation_type.value)
        span.end()


def _headers(scope: Mapping[str, Any]) -> dict[str, str]:
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}


class RequestSpans:
    """The outermost ASGI layer: one SERVER span per HTTP request."""

    def __init__(self, app: Any, tracer: trace.Tracer) -> None:
        self.app = app
        self.tracer = tracer

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        parent: Context = propagate.extract(_headers(scope))
        method, path = scope["method"], scope["path"]
        route = path if path in ROUTES else None
        name = f"{method} {route}" if route else method
        with self.tracer.start_as_current_span(
            name, context=parent, kind=SpanKind.SERVER, record_exception=True
        ) as span:
            span.set_attribute("http.request.method", method)
            span.set_attribute("url.path", path)
            if route:
                span.set_attribute("http.route", route)
            status = 500

            async def observing_send(message: Any) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                    for header, value in message.get("headers", ()):
                        if header.lower() == b"x-request-id":
                            span.set_attribute("gateway.request_id", value.decode("latin-1"))
                await send(message)

            try:
                await self.app(scope, receive, observing_send)
            finally:
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))
                operation = operation_of(scope)
                if operation:
                    span.set_attribute("graphql.operation.name", operation)
                if path == GRAPHQL_PATH:
                    # No outcome from the endpoint: the fast path answered from the store.
                    outcome = scope.get(OBSERVED, (None, "fast"))[1]
                    span.set_attribute("gateway.outcome", outcome)


class TracedKV:
    """A span around every call to the cache: `cache <call> <kind>`, with the number of
    keys and, for reads, of hits."""

    def __init__(self, kv: KV, tracer: trace.Tracer) -> None:
        self.kv = kv
        self.tracer = tracer

    @contextmanager
    def _span(self, call: str, keys: Sequence[str]) -> Iterator[trace.Span]:
        kind = kind_of(keys[0]) if keys else "none"
        with self.tracer.start_as_current_span(f"cache {call} {kind}") as span:
            span.set_attribute("cache.kind", kind)
            span.set_attribute("cache.keys", len(keys))
            yield span

    async def get(self, key: str) -> bytes | None:
        with self._span("get", [key]) as span:
            value = await self.kv.get(key)
            span.set_attribute("cache.hits", int(value is not None))
            return value

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        with self._span("get_many", keys) as span:
            values = await self.kv.get_many(keys)
            span.set_attribute("cache.hits", sum(v is not None for v in values))
            return values

    async def set_many(self, items: Mapping[str, bytes], ttl_s: float) -> None:
        with self._span("set_many", list(items)):
            await self.kv.set_many(items, ttl_s)

    async def set_nx(self, key: str, value: bytes, ttl_s: float) -> bool:
        with self._span("set_nx", [key]):
            return await self.kv.set_nx(key, value, ttl_s)

    async def delete(self, *keys: str) -> None:
        with self._span("delete", keys):
            await self.kv.delete(*keys)

    async def incr(self, key: str, ttl_s: float) -> int:
        with self._span("incr", [key]):
            return await self.kv.incr(key, ttl_s)

    async def set_nx_many(self, keys: Sequence[str], value: bytes, ttl_s: float) -> list[bool]:
        with self._span("set_nx_many", keys):
            return await self.kv.set_nx_many(keys, value, ttl_s)

    async def tag(self, tag_keys: Sequence[str], member: str, ttl_s: float) -> None:
        with self._span("tag", tag_keys):
            await self.kv.tag(tag_keys, member, ttl_s)

    async def invalidate(self, tag_keys: Sequence[str]) -> int:
        with self._span("invalidate", tag_keys):
            return await self.kv.invalidate(tag_keys)

    async def members(self, tag_keys: Sequence[str]) -> dict[str, set[str]]:
        with self._span("members", tag_keys):
            return await self.kv.members(tag_keys)

    async def add_members(self, sets: Mapping[str, Collection[str]], ttl_s: float) -> None:
        with self._span("add_members", list(sets)):
            await self.kv.add_members(sets, ttl_s)

    async def untag(self, removals: Mapping[str, set[str]]) -> None:
        with self._span("untag", list(removals)):
            await self.kv.untag(removals)

    async def rank_add(
        self, key: str, member: str, score: float, ttl_s: float, keep: int
    ) -> list[str]:
        with self._span("rank_add", [key]):
            return await self.kv.rank_add(key, member, score, ttl_s, keep)

    async def rank_touch(self, scores: Mapping[str, Mapping[str, float]]) -> None:
        with self._span("rank_touch", list(scores)):
            await self.kv.rank_touch(scores)

    async def rank_scores(self, pairs: Sequence[tuple[str, str]]) -> list[float | None]:
        with self._span("rank_scores", [key for key, _ in pairs]):
            return await self.kv.rank_scores(pairs)

    async def rank_remove(self, removals: Mapping[str, Collection[str]]) -> None:
        with self._span("rank_remove", list(removals)):
            await self.kv.rank_remove(removals)

    async def ping(self) -> None:
        await self.kv.ping()
