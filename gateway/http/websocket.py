"""GraphQL over WebSocket at /graphql: the graphql-transport-ws protocol, what the
`graphql-ws` client, Apollo Client's GraphQLWsLink, urql's subscription exchange and gql's
WebsocketsTransport speak. Subscriptions, and queries and mutations too (one `next` with
the result, then `complete`), as the protocol carries them and these clients send them when
so configured; each under the same rules as over HTTP (gateway/http/subscriptions.py).

Written on Starlette's WebSocket rather than with Strawberry's protocol handler: that
handler belongs to Strawberry's views (their context, their authentication hook) and this
gateway's /graphql is its own endpoint (gateway/http/endpoint.py). A subscription here
passes the very checks of a GET or POST (persisted-only mode, APQ and the manifest, the
document limits) and answers with the same error codes; and the connection needs what the
handler has no place for: the token's expiry (the connection closes then), the caller's
role checked against the users table, connection limits per caller and per process, and
updates that a slow reader gets coalesced (gateway/live/hub.py). The protocol itself is
six message types.

The token travels in connection_init's payload (`{"Authorization": "Bearer …"}`): a
browser cannot set headers on a WebSocket. Close codes:

    4400 a malformed message          4401 no, an invalid or an expired token (also a
    4403 the caller's role is not          subscribe before connection_ack)
         (or no longer) the token's   4406 not the graphql-transport-ws subprotocol
    4408 no connection_init in time   4409 a subscription id already in use
    4429 a second connection_init, or the caller's connection limit
    1013 this process's connection limit (try again later)
    1009 a message over GATEWAY_MAX_BODY_BYTES (the server's own bound, before it is
         buffered), or over GATEWAY_SUBSCRIPTIONS_MAX_INIT_BYTES before connection_ack
    4500 a fault of the gateway
"""

import asyncio
import contextlib
import logging
from typing import Any

import orjson
from graphql import OperationType
from starlette.websockets import WebSocket, WebSocketState

from gateway import metrics
from gateway.auth import AuthError
from gateway.http.request import GraphQLRequest, RequestError, check_shape
from gateway.http.subscriptions import EVERY_OPERATION, Subscriptions, refusal, seconds_until
from gateway.live.hub import Refused
from gateway.live.watch import Connection
from gateway.logs import new_request_id, request_id_var
from resolvers.errors import TOO_MANY_SUBSCRIPTIONS

log = logging.getLogger("gateway.http.websocket")

PROTOCOL = "graphql-transport-ws"
CLOSE_BAD_REQUEST = 4400
CLOSE_UNAUTHORIZED = 4401
CLOSE_SUBPROTOCOL = 4406
CLOSE_INIT_TIMEOUT = 4408
CLOSE_DUPLICATE_ID = 4409
CLOSE_TOO_MANY_INITS = 4429
CLOSE_INTERNAL = 4500
CLOSE_TOO_BIG = 1009  # RFC 6455: a message too big to process
MAX_REASON_BYTES = 123  # RFC 6455: a close frame's reason fits in 123 bytes
MAX_ID_CHARS = 128


class GraphQLWebSocket:
    """ASGI app for WebSocket connections to /graphql."""

    def __init__(self, subscriptions: Subscriptions) -> None:
        self.subscriptions = subscriptions
        self.settings = subscriptions.settings
        hub = subscriptions.services.hub
        assert hub is not None
        self.hub = hub

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await _Session(self, WebSocket(scope, receive, send)).run()


class _Session:
    def __init__(self, app: GraphQLWebSocket, websocket: WebSocket) -> None:
        self.app = app
        self.websocket = websocket
        self.request_id = new_request_id()
        self.connection: Connection | None = None
        self.slot = False  # this socket holds one of the process's connection slots
        self.operations: dict[str, asyncio.Task[None]] = {}
        self.initialised = False
        # Until connection_init, its timeout; then, the token's expiry.
        self.timer: asyncio.TimerHandle | None = None
        self.closing = False
        self.send_lock = asyncio.Lock()
        self.tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        request_id_var.set(self.request_id)
        websocket = self.websocket
        if PROTOCOL not in websocket.scope.get("subprotocols", ()):
            await websocket.accept()
            await self.close(CLOSE_SUBPROTOCOL, "Subprotocol not acceptable")
            return
        try:
            self.app.hub.take_slot()  # before the first await: see Hub.take_slot
        except Refused as refused:
            await websocket.accept(subprotocol=PROTOCOL)
            await self.close(refused.close_code, refused.message)
            return
        self.slot = True
        try:
            await websocket.accept(subprotocol=PROTOCOL)
            await self.serve()
        finally:
            await self.finish()

    async def serve(self) -> None:
        websocket = self.websocket
        max_init_bytes = self.app.settings.subscriptions_max_init_bytes
        self.timer = asyncio.get_running_loop().call_later(
            self.app.settings.subscriptions_init_timeout_s,
            self.close_soon,
            CLOSE_INIT_TIMEOUT,
            "Connection initialisation timeout",
        )
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            if self.closing:
                continue
            text = message.get("text")
            if text is None:
                await self.close(CLOSE_BAD_REQUEST, "Messages must be text frames")
                continue
            # Until connection_init is answered, nothing but a small frame is parsed (the
            # server already bounds every frame: GATEWAY_MAX_BODY_BYTES, close 1009).
            if self.connection is None and len(text.encode()) > max_init_bytes:
                await self.close(CLOSE_TOO_BIG, "Message too big")
                continue
            await self.handle(text)

    async def finish(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        tasks = [*self.operations.values(), *self.tasks]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.connection is not None:
            self.app.hub.close(self.connection)  # gives the slot back
        elif self.slot:
            self.app.hub.give_slot()
        self.slot = False

    async def handle(self, text: str) -> None:
        try:
            message = orjson.loads(text)
        except orjson.JSONDecodeError:
            message = None
        kind = message.get("type") if isinstance(message, dict) else None
        if not isinstance(message, dict) or not isinstance(kind, str):
            await self.close(CLOSE_BAD_REQUEST, "Invalid message received")
        elif kind == "connection_init":
            await self.connection_init(message.get("payload"))
        elif kind == "ping":
            await self.send({"type": "pong"})
        elif kind == "pong":
            pass
        elif kind == "subscribe":
            await self.subscribe(message)
        elif kind == "complete":
            task = self.operations.pop(str(message.get("id")), None)
            if task is not None:
                task.cancel()
        else:
            await self.close(CLOSE_BAD_REQUEST, f"Unknown message type {kind[:40]!r}")

    async def connection_init(self, payload: Any) -> None:
        if self.initialised:
            await self.close(CLOSE_TOO_MANY_INITS, "Too many initialisation requests")
            return
        self.initialised = True
        if self.timer is not None:
            self.timer.cancel()  # the initialisation timeout
            self.timer = None
        if payload is None:
            payload = {}
        if not isinstance(payload, dict):
            await self.close(CLOSE_BAD_REQUEST, "The connection_init payload must be an object")
            return
        authorization = payload.get("Authorization", payload.get("authorization"))
        subscriptions = self.app.subscriptions
        try:
            caller, expires_at = subscriptions.authenticate(
                authorization if isinstance(authorization, str) else None
            )
            self.connection = await self.app.hub.open(
                caller, "websocket", self.close_soon, slot_taken=True
            )
        except AuthError as exc:
            await self.close(CLOSE_UNAUTHORIZED, str(exc))
            return
        except Refused as refused:
            await self.close(refused.close_code, refused.message)
            return
        self.timer = asyncio.get_running_loop().call_later(seconds_until(expires_at), self.expired)
        await self.send({"type": "connection_ack"})

    def expired(self) -> None:
        metrics.LIVE_REFUSALS.labels("expired").inc()
        self.close_soon(CLOSE_UNAUTHORIZED, "Token expired.")

    async def subscribe(self, message: dict[str, Any]) -> None:
        if self.connection is None:
            await self.close(CLOSE_UNAUTHORIZED, "Unauthorized")
            return
        operation_id, payload = message.get("id"), message.get("payload")
        if not isinstance(operation_id, str) or not 0 < len(operation_id) <= MAX_ID_CHARS:
            await self.close(CLOSE_BAD_REQUEST, "A subscribe message needs a string id")
            return
        if not isinstance(payload, dict):
            await self.close(CLOSE_BAD_REQUEST, "A subscribe message needs a payload object")
            return
        if operation_id in self.operations:
            await self.close(CLOSE_DUPLICATE_ID, f"Subscriber for {operation_id} already exists")
            return
        limit = self.app.settings.subscriptions_max_per_connection
        if len(self.operations) >= limit:
            text = f"Too many subscriptions on this connection; the limit is {limit}."
            extensions = {"code": TOO_MANY_SUBSCRIPTIONS, "requestId": self.request_id}
            await self.error(operation_id, [{"message": text, "extensions": extensions}])
            return
        try:
            gql = check_shape(payload, "WS")
        except RequestError as exc:
            errors = [{"message": exc.message, "extensions": {"code": exc.code}}]
            await self.error(operation_id, errors)
            return
        # Reserved before the document is looked up: an id is never run twice.
        task = asyncio.ensure_future(self.operation(operation_id, gql))
        self.operations[operation_id] = task

    async def operation(self, operation_id: str, gql: GraphQLRequest) -> None:
        subscriptions = self.app.subscriptions
        assert self.connection is not None
        try:
            errors = await subscriptions.prepare(
                gql, self.connection.caller, self.request_id, EVERY_OPERATION
            )
            if errors is not None:
                await self.error(operation_id, errors)
                return
            if gql.operation_type == OperationType.SUBSCRIPTION:
                async for body in subscriptions.run(gql, self.connection, self.request_id):
                    await self.send({"id": operation_id, "type": "next", "payload": body})
            else:
                try:
                    raw = await subscriptions.execute(gql, self.connection.caller, self.request_id)
                except RequestError as exc:
                    await self.error(operation_id, [refusal(exc, self.request_id)])
                    return
                await self.send_next(operation_id, raw)
            await self.send({"id": operation_id, "type": "complete"})
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("subscription %s failed", operation_id)
            await self.close(CLOSE_INTERNAL, "Internal server error")
        finally:
            if self.operations.get(operation_id) is asyncio.current_task():
                del self.operations[operation_id]

    async def error(self, operation_id: str, errors: list[dict[str, Any]]) -> None:
        await self.send({"id": operation_id, "type": "error", "payload": errors})

    async def send(self, message: dict[str, Any]) -> None:
        async with self.send_lock:
            if self.closing:
                return
            await self.websocket.send_text(orjson.dumps(message).decode())

    async def send_next(self, operation_id: str, payload: bytes) -> None:
        """A `next` message around a response body's JSON bytes (a stored answer's as they
        are): the bytes `send` would write for that payload."""
        head = b'{"id":%s,"type":"next","payload":' % orjson.dumps(operation_id)
        async with self.send_lock:
            if self.closing:
                return
            await self.websocket.send_text((head + payload + b"}").decode())

    def close_soon(self, code: int, reason: str) -> None:
        """From a timer or the hub: closes in a task of its own."""
        task = asyncio.ensure_future(self.close(code, reason))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def close(self, code: int, reason: str) -> None:
        async with self.send_lock:
            if self.closing:
                return
            self.closing = True
            if self.websocket.application_state != WebSocketState.CONNECTED:
                return
            encoded = reason.encode()[:MAX_REASON_BYTES].decode(errors="ignore")
            with contextlib.suppress(RuntimeError, OSError):  # the peer went away first
                await self.websocket.close(code, encoded)
