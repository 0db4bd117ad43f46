"""The operator's endpoints: /healthz, /readyz and /metrics.

/readyz and /metrics are for the load balancer, the orchestrator and Prometheus, not for
clients: they say what is down and how busy the gateway is. They can require a bearer
token (GATEWAY_INTERNAL_TOKEN) and be served on a port of their own
(GATEWAY_INTERNAL_PORT), which then serves nothing else (the public port answers them 404).
Their bodies name parts, never an address or an exception's text.

/readyz (its body also says the gateway's version): 200 `ready` when every part answers;
200 `degraded` with the parts that do not (an upstream module, or Redis) while the
gateway can still answer — live when Redis is down, sections from the cache or
UPSTREAM_UNAVAILABLE when a module is; 503 `unavailable` only when it cannot answer at
all: the programs module (who is asking, what a cohort is) down with no cache to answer
from; 503 `draining` from the moment the process is told to stop (gateway/drain.py).
"""

import hmac
import logging
from datetime import datetime
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response

from gateway import drain, metrics
from gateway.cache.kv import CacheUnavailable
from gateway.http.errors import error_body
from gateway.http.request import inbound_request_id
from gateway.http.responses import json_response
from gateway.logs import new_request_id
from gateway.services import Services
from gateway.version import VERSION
from resolvers.errors import NOT_FOUND, UNAUTHENTICATED

log = logging.getLogger("gateway.http.internal")

HEALTH, READY, METRICS = "/healthz", "/readyz", "/metrics"
INTERNAL_PATHS = frozenset({HEALTH, READY, METRICS})
REDIS = "redis"
CORE_MODULE = "programs"


async def readiness(services: Services) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body): which parts are down, by name."""
    reasons = {m: r for m, r in (await services.upstream.ping()).items() if r}
    if services.redis is not None:
        try:
            await services.kv.ping()
        except CacheUnavailable as exc:
            reasons[REDIS] = str(exc) or "unreachable"
    if reasons:  # the why stays here: it may hold an address
        log.debug("not ready: %s", reasons)
    down = sorted(reasons)
    cache_usable = services.settings.cache_enabled and REDIS not in reasons
    if CORE_MODULE in reasons and not cache_usable:
        return 503, {"status": "unavailable", "down": down}
    return 200, {"status": "degraded" if down else "ready", "down": down}


class InternalEndpoints:
    def __init__(self, services: Services) -> None:
        self.services = services
        token = services.settings.internal_token
        self.token = token.get_secret_value().encode() if token is not None else None

    def refusal(self, request: Request) -> Response | None:
        if self.token is None:
            return None
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self.token):
            return None
        request_id = _request_id(request.headers.get("x-request-id"))
        message = "This endpoint needs the internal bearer token."
        body = error_body(message, UNAUTHENTICATED, requestId=request_id)
        headers = {"WWW-Authenticate": 'Bearer realm="internal"', "X-Request-Id": request_id}
        return json_response(body, 401, headers)

    async def health(self, request: Request) -> Response:
        return json_response({"status": "ok"})

    async def ready(self, request: Request) -> Response:
        refused = self.refusal(request)
        if refused is not None:
            return refused
        if drain.draining():  # told to stop: out of the rotation while it still serves
            return json_response({"status": "draining", "down": [], "version": VERSION}, 503)
        status, body = await readiness(self.services)
        return json_response({**body, "version": VERSION}, status)

    async def metrics(self, request: Request) -> Response:
        refused = self.refusal(request)
        if refused is not None:
            return refused
        await _observe_refresh_stamp(self.services)
        return Response(
            generate_latest(metrics.registry_for_scrape()), media_type=CONTENT_TYPE_LATEST
        )


class InternalListener:
    """With GATEWAY_INTERNAL_PORT: the internal port serves INTERNAL_PATHS only, and the
    other ports serve everything but /readyz and /metrics. Outermost, so that nothing (the
    persisted-GET fast path included) answers on the wrong port."""

    def __init__(self, app: Any, port: int | None) -> None:
        self.app = app
        self.port = port

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.port is None or scope["type"] != "http":
            return await self.app(scope, receive, send)
        server = scope.get("server") or (None, None)
        internal = server[1] == self.port
        path = scope["path"]
        if (internal and path not in INTERNAL_PATHS) or (not internal and path in (READY, METRICS)):
            given = next((v for k, v in scope["headers"] if k == b"x-request-id"), None)
            request_id = _request_id(given.decode("latin-1") if given is not None else None)
            body = error_body("Not Found", NOT_FOUND, requestId=request_id)
            response = json_response(body, 404, {"X-Request-Id": request_id})
            return await response(scope, receive, send)
        return await self.app(scope, receive, send)


def _request_id(given: str | None) -> str:
    return inbound_request_id(given) or new_request_id()


async def _observe_refresh_stamp(services: Services) -> None:
    """Refresh cycles run in workers: their records are read from the shared store. The
    last cycle's duration; the last complete cycle's end and, from its summaries, the lag."""
    if services.cache is None:
        return
    keys = services.cache.keys
    try:
        last, success = await services.kv.get_many([keys.refresh_stamp(), keys.refresh_success()])
    except CacheUnavailable:
        return
    if last is not None:
        metrics.REFRESH_LAST_DURATION.set(orjson.loads(last)["duration_s"])
    if success is None:
        return
    stamp = orjson.loads(success)
    metrics.REFRESH_LAST_SUCCESS.set(datetime.fromisoformat(stamp["computed_at"]).timestamp())
    if stamp.get("oldest_summary_at"):
        oldest = datetime.fromisoformat(stamp["oldest_summary_at"])
        metrics.REFRESH_LAG.set((services.clock() - oldest).total_seconds())
