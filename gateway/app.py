"""The Starlette application."""

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.graphql_http import GraphQLEndpoint, json_response
from gateway.services import Services, utc_now
from gateway.settings import Settings


def create_app(
    settings: Settings | None = None,
    *,
    clock: Callable[[], datetime] = utc_now,
    services: Services | None = None,
) -> Starlette:
    settings = settings or Settings()
    services = services or Services.build(settings, clock=clock)

    async def healthz(request: Request) -> Response:
        return json_response({"status": "ok"})

    async def readyz(request: Request) -> Response:
        problems = {m: r for m, r in (await services.upstream.ping()).items() if r}
        if problems:
            return json_response({"status": "unavailable", "upstream": problems}, 503)
        return json_response({"status": "ready"})

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await services.close()

    middleware = []
    if settings.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=settings.cors_origins,
                allow_methods=["GET", "POST"],
                allow_headers=["Authorization", "Content-Type", "If-None-Match"],
                expose_headers=["ETag", "X-Request-Id"],
            )
        )
    app = Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/graphql", GraphQLEndpoint(services), methods=["GET", "POST"]),
        ],
        middleware=middleware,
        lifespan=lifespan,
    )
    app.state.services = services
    return app
