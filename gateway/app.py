"""The Starlette application."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route, WebSocketRoute

from gateway.drain import CloseWhileDraining
from gateway.http.access import AccessLog
from gateway.http.dashboard import DashboardPage
from gateway.http.endpoint import GraphQLEndpoint
from gateway.http.errors import error_body
from gateway.http.fastpath import FastPathMiddleware
from gateway.http.internal import HEALTH, METRICS, READY, InternalEndpoints, InternalListener
from gateway.http.request import inbound_request_id
from gateway.http.responses import json_response
from gateway.http.sse import EventStreamOr
from gateway.http.subscriptions import Subscriptions
from gateway.http.webhooks import upstream_event
from gateway.http.websocket import GraphQLWebSocket
from gateway.logs import new_request_id
from gateway.refresh.cycle import embedded_scheduler
from gateway.services import Services, utc_now
from gateway.settings import Settings
from resolvers.errors import BAD_REQUEST, NOT_FOUND

log = logging.getLogger("gateway.app")


def create_app(
    settings: Settings | None = None,
    *,
    clock: Callable[[], datetime] = utc_now,
    services: Services | None = None,
) -> Starlette:
    settings = settings or Settings()
    services = services or Services.build(settings, clock=clock)

    internal = InternalEndpoints(services)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        background = []
        if services.redis is None and settings.embedded_scheduler and services.refresh:
            background.append(asyncio.create_task(embedded_scheduler(services)))
        if services.answers is not None:
            background.append(asyncio.create_task(flush_answer_usage(services)))
        try:
            yield
        finally:
            for task in background:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if services.answers is not None:
                await services.answers.usage.flush()
            await services.close()

    async def http_error(request: Request, exc: Exception) -> Response:
        """Routing's refusals (no such path, a method the route does not take) as JSON
        with a code and the request's id, like every other refusal."""
        assert isinstance(exc, HTTPException)
        request_id = inbound_request_id(request.headers.get("x-request-id")) or new_request_id()
        code = NOT_FOUND if exc.status_code == 404 else BAD_REQUEST
        body = error_body(exc.detail, code, requestId=request_id)
        headers = {**(exc.headers or {}), "X-Request-Id": request_id}
        return json_response(body, exc.status_code, headers)

    async def to_graphiql(request: Request) -> Response:
        return RedirectResponse("/graphql")  # the browser keeps the URL's #fragment

    # Outermost but for tracing: while the process drains, every answer closes its connection.
    middleware = [Middleware(CloseWhileDraining)]
    if settings.access_log:  # outermost: it sees every answer, preflights included
        middleware.append(Middleware(AccessLog))
    if settings.internal_port is not None:  # then each port answers only its own paths
        middleware.append(Middleware(InternalListener, port=settings.internal_port))
    if settings.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=settings.cors_origins,
                allow_methods=["GET", "POST"],
                allow_headers=settings.cors_allow_headers,
                expose_headers=["ETag", "X-Request-Id"],
            )
        )
    # Innermost: persisted-GET hits leave before routing (CORS, when on, still wraps them).
    middleware.append(Middleware(FastPathMiddleware, services=services))
    endpoint = GraphQLEndpoint(services)
    subscriptions = Subscriptions(services, endpoint)
    dashboard = DashboardPage(settings)
    routes = [
        # First: it is the route nearly every request takes. Every method reaches the
        # endpoint, which refuses others with a JSON 405; an event-stream request is a
        # subscription (GraphQL over SSE).
        Route("/graphql", EventStreamOr(endpoint, subscriptions)),
        WebSocketRoute("/graphql", GraphQLWebSocket(subscriptions)),
        Route(HEALTH, internal.health),
        Route(READY, internal.ready),
        Route(METRICS, internal.metrics),
        Route("/webhooks/upstream", upstream_event, methods=["POST"]),
        Route("/dashboard", dashboard.page, methods=["GET"]),
        Route("/dashboard/{name}", dashboard.asset, methods=["GET"]),
    ]
    if settings.graphiql_enabled:
        routes.append(Route("/", to_graphiql))
    if services.tracing is not None:  # outermost: the request's span holds all the rest
        middleware.insert(0, Middleware(services.tracing.asgi))
    app = Starlette(
        routes=routes,
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers={HTTPException: http_error},
    )
    app.state.services = services
    app.state.endpoint = endpoint
    return app


async def flush_answer_usage(services: Services) -> None:
    """Writes when stored answers were asked for, every GATEWAY_ANSWER_USAGE_FLUSH_S."""
    assert services.answers is not None
    while True:
        await asyncio.sleep(services.settings.answer_usage_flush_s)
        await services.answers.usage.flush()
