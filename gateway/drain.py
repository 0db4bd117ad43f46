"""Drain: a serve process told to stop (SIGTERM) first leaves the load balancer's rotation.

For GATEWAY_DRAIN_S it answers /readyz 503 `draining` (so load balancers and Kubernetes
stop sending it new work) while it keeps accepting and serving; every response then says
`Connection: close`, so kept-alive clients reconnect, to another replica. Then it stops
accepting and lets its in-flight requests finish (gateway/supervisor.py). One flag per
process: the uvicorn server that received the signal sets it, the application reads it.
"""

import time
from typing import Any

_since: float | None = None


def start() -> None:
    global _since
    if _since is None:
        _since = time.monotonic()


def draining() -> bool:
    return _since is not None


class CloseWhileDraining:
    """Adds `Connection: close` to every HTTP response while the process drains."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if _since is None or scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def closing(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0].lower() != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        return await self.app(scope, receive, closing)
