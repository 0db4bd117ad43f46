"""The access log (GATEWAY_ACCESS_LOG): one structured record per HTTP request, its fields
separate — method, path (never the query string: it holds variables), status, duration_ms,
operation (the GraphQL operation name, when the request named a valid one) and request_id
(the X-Request-Id the answer carries) — so log pipelines filter on them without parsing.

Off by default: a line per request costs more than a stored answer does. When off, this
layer is not in the stack at all.
"""

import logging
import re
import time
from typing import Any
from urllib.parse import parse_qsl

log = logging.getLogger("gateway.access")

# ASGI scope key: the operation name the endpoint parsed from the request.
OPERATION = "gateway.operation"
_NAME = re.compile(r"[_A-Za-z][_0-9A-Za-z]{0,99}")


def operation_of(scope: dict[str, Any]) -> str | None:
    """The request's GraphQL operation name, when it named a valid one."""
    name = scope.get(OPERATION)
    if name is None and scope.get("method") == "GET" and b"operationName" in scope["query_string"]:
        # A stored answer leaves before the endpoint: read the name as the fast path did.
        params = parse_qsl(scope["query_string"].decode("latin-1"))
        name = next((v for k, v in reversed(params) if k == "operationName"), None)
    return name if isinstance(name, str) and _NAME.fullmatch(name) else None


class AccessLog:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        status = 500  # unless the application answers
        request_id = None

        async def observing_send(message: Any) -> None:
            nonlocal status, request_id
            if message["type"] == "http.response.start":
                status = message["status"]
                for name, value in message.get("headers", ()):
                    if name.lower() == b"x-request-id":
                        request_id = value.decode("latin-1")
            await send(message)

        try:
            await self.app(scope, receive, observing_send)
        finally:
            log.info(
                "%s %s %d",
                scope["method"],
                scope["path"],
                status,
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                    "operation": operation_of(scope),
                    "request_id": request_id,
                },
            )
