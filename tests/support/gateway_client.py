"""An in-process gateway on a given database, with tokens for its users."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import httpx

from gateway.app import create_app
from gateway.auth import mint_token
from gateway.settings import Settings
from tests.harness.waiting import CEILING_S


class GatewayClient:
    def __init__(self, client: httpx.AsyncClient, settings: Settings, services: Any = None) -> None:
        self.http = client
        self.settings = settings
        self.services = services  # the app's, when the client runs one in process

    def token(self, user_id: int, role: str = "director", ttl_s: int = 3600) -> str:
        return mint_token(self.settings, user_id, role, ttl_s)

    def auth(self, user_id: int, role: str = "director") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user_id, role)}"}

    async def post(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        user: int,
        role: str = "director",
    ) -> httpx.Response:
        return await self.http.post(
            "/graphql",
            json={"query": query, "variables": variables or {}},
            headers=self.auth(user, role),
        )

    async def data(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        user: int,
        role: str = "director",
    ) -> dict[str, Any]:
        """POST and return `data`, asserting there were no errors."""
        response = await self.post(query, variables, user=user, role=role)
        assert response.status_code == 200, response.text
        body = response.json()
        assert "errors" not in body, body["errors"]
        return body["data"]


@asynccontextmanager
async def gateway_client(settings: Settings, clock: Any = None) -> AsyncIterator[GatewayClient]:
    kwargs = {"clock": clock} if clock is not None else {}
    app = create_app(settings, **kwargs)
    transport = httpx.ASGITransport(app=app)
    # The plain bytes unless a test asks for gzip (tests/http/test_fast_path.py, compression).
    identity = {"Accept-Encoding": "identity"}
    async with httpx.AsyncClient(
        transport=transport, base_url="http://gateway.test", headers=identity
    ) as client:
        try:
            yield GatewayClient(client, settings, app.state.services)
        finally:
            # Work still running would reopen the closed Redis pool and leak a connection.
            await background_done(app.state.services)
            await app.state.services.close()


async def background_done(services: Any) -> None:
    """Until the work answers started beside them is done: the refreshes they enqueue
    (gateway.cache.subtrees's tasks) and, in embedded mode, the refreshes running in-process."""
    from gateway.cache.source import _background

    while _background:
        await asyncio.wait_for(asyncio.gather(*_background, return_exceptions=True), CEILING_S)
    wait = getattr(services.refresher, "wait", None)
    if wait is not None:
        await asyncio.wait_for(wait(), CEILING_S)


def fixed_clock(now: datetime) -> Any:
    return lambda: now
