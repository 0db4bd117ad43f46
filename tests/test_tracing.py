"""OpenTelemetry tracing (GATEWAY_TRACING): one request gives the expected span tree under
the caller's traceparent; a refresh job enqueued by a webhook runs in the webhook
request's trace; the OTel SDK's in-memory exporter in process, a real OTLP/HTTP receiver
for `gateway serve` configured by OTEL_* variables; and off, the fast path loads and calls
no tracing code at all."""

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.app import create_app
from gateway.auth import mint_token
from gateway.documents.dashboard import dashboard_operations
from gateway.services import Services
from gateway.settings import Settings
from gateway.tracing import Tracing, TracingError, exporters_from_environment
from tests.harness.processes import HOST, GatewayProcess, child_env, free_port, running
from tests.harness.waiting import wait_until
from tests.support.dataset import DANA
from tests.support.gateway import EVENT, WEBHOOK_SECRET, queued_jobs, settings_for, signed
from workers.worker import make_worker

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_SPAN_ID = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_SPAN_ID}-01"
ME = "query Me { me { id name } }"
SUMMARY = dashboard_operations()["DirectorSummary"]


@pytest.fixture(scope="module")
def backend() -> str:
    return "sqlite"


@pytest.fixture
def spans() -> Iterator[tuple[Tracing, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield Tracing(provider), exporter
    provider.shutdown()


def tree(spans: tuple[ReadableSpan, ...], root: ReadableSpan) -> tuple:
    """(name, kind, children…) with children in start order; a statement is `SELECT`."""
    children = sorted(
        (s for s in spans if s.parent is not None and s.parent.span_id == root.context.span_id),
        key=lambda s: s.start_time or 0,
    )
    name = "SELECT" if root.name.startswith("SELECT ") else root.name
    return (name, root.kind.name, *(tree(spans, c) for c in children))


def only_root(spans: tuple[ReadableSpan, ...], name: str) -> ReadableSpan:
    [root] = [s for s in spans if s.name == name]
    return root


@pytest.fixture
async def traced(dataset_url: str, spans):
    tracing, exporter = spans
    settings = Settings(database_url=dataset_url)
    services = Services.build(settings, tracing=tracing)
    app = create_app(settings, services=services)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as http:
        yield http, exporter
    await services.close()


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(Settings(), DANA, 'director', 600)}"}


async def test_one_request_gives_the_expected_span_tree(traced) -> None:
    http, exporter = traced
    response = await http.post(
        "/graphql",
        json={"query": ME, "operationName": "Me"},
        headers={**auth(), "traceparent": TRACEPARENT},
    )
    assert response.json() == {"data": {"me": {"id": DANA, "name": "Dana Director"}}}
    spans = exporter.get_finished_spans()
    root = only_root(spans, "POST /graphql")
    assert tree(spans, root) == (
        "POST /graphql",
        "SERVER",
        # The POST's stored answer (keyed by the sha256 of its text), a miss.
        ("cache get response", "INTERNAL"),
        # Who is asking, from the users table (gateway/auth.py), before anything runs: the
        # caller's profile, a miss, computed and stored; `me` then reuses it.
        ("cache get_many user", "INTERNAL"),
        ("SELECT", "CLIENT"),
        ("cache set_many user", "INTERNAL"),
        ("cache invalidate tag", "INTERNAL"),
        (
            "GraphQL Query: Me",
            "INTERNAL",
            ("GraphQL Parsing", "INTERNAL"),
            ("GraphQL Validation", "INTERNAL"),
            ("GraphQL Resolving: me", "INTERNAL"),
        ),
    )
    # Every span in the caller's trace, the request's under the caller's span.
    assert {f"{s.context.trace_id:032x}" for s in spans} == {TRACE_ID}
    assert f"{root.parent.span_id:016x}" == PARENT_SPAN_ID
    assert dict(root.attributes) == {
        "http.request.method": "POST",
        "url.path": "/graphql",
        "http.route": "/graphql",
        "http.response.status_code": 200,
        "graphql.operation.name": "Me",
        "gateway.outcome": "ok",
        "gateway.request_id": response.headers["x-request-id"],
    }
    operation = only_root(spans, "GraphQL Query: Me")
    assert operation.attributes["graphql.operation.type"] == "query"
    cache_read = only_root(spans, "cache get_many user")
    assert dict(cache_read.attributes) == {"cache.kind": "user", "cache.keys": 1, "cache.hits": 0}
    statement = next(s for s in spans if s.name.startswith("SELECT "))
    assert statement.attributes["db.system"] == "sqlite"
    assert "FROM users" in statement.attributes["db.statement"]


async def test_a_fast_path_hit_is_one_cache_read_under_the_request(traced) -> None:
    http, exporter = traced
    params = {
        "extensions": json.dumps({"persistedQuery": {"version": 1, "sha256Hash": SUMMARY.sha256}}),
        "operationName": "DirectorSummary",
    }
    registered = await http.post(
        "/graphql",
        json={"query": SUMMARY.body, "extensions": json.loads(params["extensions"])},
        headers=auth(),
    )
    assert "errors" not in registered.json()
    executed = await http.get("/graphql", params=params, headers=auth())  # stored
    exporter.clear()
    hit = await http.get("/graphql", params=params, headers={**auth(), "traceparent": TRACEPARENT})
    assert hit.content == executed.content
    spans = exporter.get_finished_spans()
    root = only_root(spans, "GET /graphql")
    assert tree(spans, root) == ("GET /graphql", "SERVER", ("cache get response", "INTERNAL"))
    assert (root.attributes["gateway.outcome"], root.attributes["graphql.operation.name"]) == (
        "fast",
        "DirectorSummary",
    )
    assert only_root(spans, "cache get response").attributes["cache.hits"] == 1


async def test_a_job_enqueued_by_a_webhook_carries_the_request_trace(
    dataset_url: str, redis_url: str, spans
) -> None:
    tracing, exporter = spans
    settings = settings_for(dataset_url, redis_url)
    services = Services.build(settings, tracing=tracing)
    app = create_app(settings, services=services)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as http:
            response = await http.post(
                "/webhooks/upstream",
                content=EVENT,
                headers={**signed(EVENT, WEBHOOK_SECRET), "traceparent": TRACEPARENT},
            )
        assert response.status_code == 202, response.text
        assert await queued_jobs(redis_url) == [
            "refresh_director:director:3",
            "refresh_pending:evt_01",
        ]
        worker = make_worker(
            settings, burst=True, poll_delay=0.01, ctx={"settings": settings, "tracing": tracing}
        )
        try:
            await worker.main()
        finally:
            await worker.close()
    finally:
        await services.close()
    finished = exporter.get_finished_spans()
    request = only_root(finished, "POST /webhooks/upstream")
    jobs = {s.attributes["gateway.job_id"]: s for s in finished if s.name.startswith("job ")}
    # The event's two refreshes, and the admin's summary the cohort's job queues in turn.
    assert sorted(jobs) == [
        "refresh_director:admin:1",
        "refresh_director:director:3",
        "refresh_pending:evt_01",
    ]
    for job in jobs.values():
        assert f"{job.context.trace_id:032x}" == TRACE_ID  # the webhook caller's trace
        assert job.kind.name == "CONSUMER"
    cohort_job = jobs["refresh_pending:evt_01"]
    assert cohort_job.parent.span_id == request.context.span_id
    assert jobs["refresh_director:director:3"].parent.span_id == request.context.span_id
    assert jobs["refresh_director:admin:1"].parent.span_id == cohort_job.context.span_id
    assert dict(cohort_job.attributes) == {
        "messaging.system": "arq",
        "messaging.operation.name": "refresh_pending",
        "gateway.job_id": "refresh_pending:evt_01",
    }
    # The job's own work (statements, cache writes) is traced under it.
    under_cohort_job = [
        s for s in finished if s.parent and s.parent.span_id == cohort_job.context.span_id
    ]
    assert {s.name.split(" ")[0] for s in under_cohort_job} >= {"SELECT", "cache"}


def test_exporters_follow_the_otel_variables(monkeypatch) -> None:
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console")
    [console] = exporters_from_environment()
    assert isinstance(console, ConsoleSpanExporter)
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert exporters_from_environment() == []
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "zipkin")
    with pytest.raises(TracingError, match="'zipkin': no such exporter installed"):
        exporters_from_environment()
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    with pytest.raises(TracingError, match="only http/protobuf is installed"):
        exporters_from_environment()


class Receiver:
    """An OTLP/HTTP trace receiver on loopback: what a collector would get."""

    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        received = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.path == "/v1/traces":
                    received.append(ExportTraceServiceRequest.FromString(body))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((HOST, free_port()), Handler)
        self.url = f"http://{HOST}:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def spans(self) -> list[tuple[str, str, str]]:
        """(service.name, trace id, span name) of every span received."""
        out = []
        for request in list(self.requests):
            for resource_spans in request.resource_spans:
                attributes = {
                    a.key: a.value.string_value for a in resource_spans.resource.attributes
                }
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        out.append((attributes.get("service.name"), span.trace_id.hex(), span.name))
        return out

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_gateway_serve_exports_to_the_otlp_endpoint_of_the_environment(
    dataset_url: str, tmp_path: Path
) -> None:
    receiver = Receiver()
    try:
        env = child_env(dataset_url, tracing="true") | {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
            "OTEL_SERVICE_NAME": "gateway-under-test",
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        }
        gateway = GatewayProcess("gateway-traced", env, tmp_path)
        with running(gateway):
            response = httpx.post(
                f"{gateway.url}/graphql",
                json={"query": ME, "operationName": "Me"},
                headers={**auth(), "traceparent": TRACEPARENT},
            )
            assert response.json() == {"data": {"me": {"id": DANA, "name": "Dana Director"}}}
            wanted = ("gateway-under-test", TRACE_ID, "POST /graphql")
            wait_until(lambda: wanted in receiver.spans() or None, "the request's span")
        names = {name for service, trace_id, name in receiver.spans() if trace_id == TRACE_ID}
        assert {"POST /graphql", "GraphQL Query: Me", "GraphQL Resolving: me"} <= names
    finally:
        receiver.close()


def test_tracing_off_loads_no_tracing_code(dataset_url: str) -> None:
    """Off (the default), building the app imports no OpenTelemetry module at all."""
    code = (
        "import sys; from gateway.app import create_app; from gateway.settings import Settings;"
        f" app = create_app(Settings(database_url={dataset_url!r}));"
        " print(sorted(m for m in sys.modules if 'opentelemetry' in m or m == 'gateway.tracing'))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parent.parent,
    )
    assert completed.stdout.strip() == "[]"


async def test_tracing_off_the_fast_path_calls_no_tracing_code(fast) -> None:
    """Hits with tracing off: not one call into OpenTelemetry or gateway/tracing.py (even
    with them loaded in this process by other tests), and no tracing layer in the stack."""
    from tests.support.cycles import prewarm
    from tests.support.fast_path import get, hits
    from tests.support.gateway import services_of

    services = services_of(fast)
    assert services.tracing is None
    await prewarm(services)
    await get(fast, SUMMARY, DANA)  # warm the memos
    calls: list[str] = []

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            calls.append(frame.f_code.co_filename)

    before = hits()
    sys.setprofile(profile)
    try:
        for _ in range(10):
            response = await get(fast, SUMMARY, DANA)
    finally:
        sys.setprofile(None)
    assert (response.status_code, hits()) == (200, before + 10)
    traced = [f for f in calls if "opentelemetry" in f or f.endswith("gateway/tracing.py")]
    assert traced == []
    stack = []
    app = fast.http._transport.app.middleware_stack
    while app is not None:
        stack.append(type(app).__name__)
        app = getattr(app, "app", None)
    assert "RequestSpans" not in stack and "FastPathMiddleware" in stack
    assert orjson.loads(response.content)["data"]["me"]["id"] == DANA
