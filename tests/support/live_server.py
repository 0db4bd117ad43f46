"""The gateway application served by uvicorn inside the test's event loop, on a loopback
port: real WebSocket and event-stream connections, with the services (and the movable
clock) at hand for the test."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn

from gateway.app import create_app
from gateway.auth import mint_token
from gateway.services import Services
from gateway.settings import Settings
from tests.harness.processes import HOST, free_port

START_TIMEOUT_S = 60.0


@dataclass
class Served:
    url: str
    ws_url: str
    services: Services
    settings: Settings

    def token(self, user_id: int, role: str = "director", ttl_s: int = 3600) -> str:
        return mint_token(self.settings, user_id, role, ttl_s)

    def auth(self, user_id: int, role: str = "director") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user_id, role)}"}


@asynccontextmanager
async def serving(settings: Settings, clock: Any = None) -> AsyncIterator[Served]:
    kwargs = {"clock": clock} if clock is not None else {}
    app = create_app(settings, **kwargs)
    port = free_port()
    from gateway.http.protocol import server_options
    from gateway.supervisor import _uvicorn_options

    # The served options of `gateway serve` (its WebSocket implementation and its bounds
    # included), the bounds taken from `settings`.
    options = {
        **_uvicorn_options(),
        **server_options(settings),
        "loop": "none",
        "log_config": None,
    }
    server = uvicorn.Server(uvicorn.Config(app, host=HOST, port=port, **options))
    # _serve: uvicorn's serve() without taking over the test process's signal handlers.
    task = asyncio.ensure_future(server._serve())
    deadline = asyncio.get_running_loop().time() + START_TIMEOUT_S
    while not server.started:
        if task.done():
            task.result()
        assert asyncio.get_running_loop().time() < deadline, "uvicorn did not start"
        await asyncio.sleep(0.01)
    try:
        yield Served(f"http://{HOST}:{port}", f"ws://{HOST}:{port}", app.state.services, settings)
    finally:
        server.should_exit = True
        await task
