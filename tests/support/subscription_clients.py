"""Python clients of the two subscription transports, for tests: graphql-transport-ws over
the `websockets` library, and GraphQL over SSE over httpx. Every wait is bounded."""

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import websockets
from websockets.exceptions import ConnectionClosed

PROTOCOL = "graphql-transport-ws"
WAIT_S = 60.0  # generous: CI runs on a busy 2-core machine


class WS:
    def __init__(self, socket: Any) -> None:
        self.socket = socket

    async def send(self, message: dict[str, Any]) -> None:
        await self.socket.send(json.dumps(message))

    async def receive(self, timeout_s: float = WAIT_S) -> dict[str, Any]:
        return json.loads(await asyncio.wait_for(self.socket.recv(), timeout_s))  # type: ignore[no-any-return]

    async def init(self, token: str | None) -> dict[str, Any]:
        payload = {"Authorization": f"Bearer {token}"} if token is not None else {}
        await self.send({"type": "connection_init", "payload": payload})
        return await self.receive()

    async def subscribe(
        self,
        operation_id: str,
        query: str,
        variables: dict[str, Any] | None = None,
        extensions: dict[str, Any] | None = None,
    ) -> None:
        payload: dict[str, Any] = {"query": query}
        if variables is not None:
            payload["variables"] = variables
        if extensions is not None:
            payload["extensions"] = extensions
        await self.send({"id": operation_id, "type": "subscribe", "payload": payload})

    async def next(self, operation_id: str) -> dict[str, Any]:
        """The payload of the next `next` message (of this id; any other message fails)."""
        message = await self.receive()
        assert message.get("id") == operation_id and message["type"] == "next", message
        return message["payload"]  # type: ignore[no-any-return]

    async def data(self, operation_id: str) -> dict[str, Any]:
        payload = await self.next(operation_id)
        assert "errors" not in payload, payload["errors"]
        return payload["data"]  # type: ignore[no-any-return]

    async def closed(self, timeout_s: float = WAIT_S) -> tuple[int, str]:
        """(code, reason) of the server's close; messages before it are skipped."""
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    await self.socket.recv()
        except ConnectionClosed as closed:
            assert closed.rcvd is not None, "closed without a close frame"
            return closed.rcvd.code, closed.rcvd.reason
        raise AssertionError("unreachable")


@asynccontextmanager
async def ws_connect(ws_url: str, protocol: str | None = PROTOCOL) -> AsyncIterator[WS]:
    subprotocols = [protocol] if protocol else None
    async with websockets.connect(
        f"{ws_url}/graphql",
        subprotocols=subprotocols,  # type: ignore[arg-type]
        open_timeout=WAIT_S,
        close_timeout=5,
    ) as socket:
        yield WS(socket)


@asynccontextmanager
async def ws_session(ws_url: str, token: str) -> AsyncIterator[WS]:
    async with ws_connect(ws_url) as ws:
        assert await ws.init(token) == {"type": "connection_ack"}
        yield ws


class SSE:
    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.lines = response.aiter_lines()

    async def event(self, timeout_s: float = WAIT_S) -> tuple[str, Any]:
        """(event name, data) of the next event; comment lines are skipped."""
        name, data = None, None
        async with asyncio.timeout(timeout_s):
            async for line in self.lines:
                if line.startswith(":"):
                    continue
                if line.startswith("event: "):
                    name = line[len("event: ") :]
                elif line.startswith("data: "):
                    data = line[len("data: ") :]
                elif line == "" and name is not None:
                    return name, json.loads(data) if data else None
        raise AssertionError("the stream ended")


@asynccontextmanager
async def sse_stream(url: str, body: dict[str, Any], headers: dict[str, str]) -> AsyncIterator[SSE]:
    async with (
        httpx.AsyncClient(base_url=url, timeout=WAIT_S) as http,
        http.stream(
            "POST", "/graphql", json=body, headers={**headers, "Accept": "text/event-stream"}
        ) as response,
    ):
        yield SSE(response)
