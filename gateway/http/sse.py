"""GraphQL subscriptions over Server-Sent Events at /graphql: the GraphQL over SSE
protocol in its distinct-connections mode (what the `graphql-sse` client speaks).

A GET or POST to /graphql whose Accept header prefers `text/event-stream` to every JSON
type it accepts (q-values honoured: gateway/http/media.py) is one subscription on one
response: the token in the Authorization header, the request as any GraphQL over HTTP
request, then `event: next` per result and `event: complete` at the end. A request that
cannot be read is answered like any other (a JSON 4xx); a document that may not run
(persisted-only mode, the limits, validation, not a subscription) is reported in the
stream, as the protocol asks: one `next` event with the errors, then `complete`. When the
token expires the stream ends the same way with UNAUTHENTICATED. A comment line every
GATEWAY_SUBSCRIPTIONS_KEEPALIVE_S keeps proxies from cutting an idle stream.
"""

import asyncio
import contextlib
from typing import Any

import orjson
from starlette.requests import Request

from gateway.auth import AuthError
from gateway.http.errors import error_body
from gateway.http.media import prefers_event_stream
from gateway.http.request import RequestError, inbound_request_id, parse_get, parse_post
from gateway.http.responses import json_response
from gateway.http.subscriptions import Subscriptions, seconds_until
from gateway.live.hub import Refused
from gateway.live.watch import Connection
from gateway.logs import new_request_id, request_id_var
from resolvers.errors import BAD_REQUEST, FORBIDDEN, UNAUTHENTICATED

COMPLETE = b"event: complete\ndata: \n\n"
KEEPALIVE = b":\n\n"
CLOSE_UNAUTHORIZED = 4401  # what ended the stream, in the WebSocket's terms (see hub.Refused)


def wants_event_stream(scope: Any) -> bool:
    """The first Accept header, as the endpoint (Starlette's Headers.get) reads it."""
    for name, value in scope["headers"]:
        if name == b"accept":
            return prefers_event_stream(value.decode("latin-1"))
    return False


def next_event(body: dict[str, Any]) -> bytes:
    return b"event: next\ndata: " + orjson.dumps(body) + b"\n\n"


class EventStreamOr:
    """/graphql over HTTP: an event-stream request goes to the subscription stream, any
    other to the GraphQL endpoint."""

    def __init__(self, endpoint: Any, subscriptions: Subscriptions) -> None:
        self.endpoint = endpoint
        self.subscriptions = subscriptions
        hub = subscriptions.services.hub
        assert hub is not None
        self.hub = hub

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and wants_event_stream(scope):
            await self.stream(scope, receive, send)
        else:
            await self.endpoint(scope, receive, send)

    async def stream(self, scope: Any, receive: Any, send: Any) -> None:
        request = Request(scope, receive)
        request_id = inbound_request_id(request.headers.get("x-request-id")) or new_request_id()
        request_id_var.set(request_id)
        headers = {"X-Request-Id": request_id}
        subscriptions = self.subscriptions
        if request.method not in ("GET", "POST"):
            body = error_body("Use GET or POST.", BAD_REQUEST)
            response = json_response(body, 405, {**headers, "Allow": "GET, POST"})
            return await response(scope, receive, send)
        try:
            caller, expires_at = subscriptions.authenticate(request.headers.get("authorization"))
            if request.method == "GET":
                gql = parse_get(scope["query_string"])
            else:
                gql = await parse_post(request, subscriptions.settings.max_body_bytes)
            gql.method = "SSE"
            ended: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()

            def end(code: int, reason: str) -> None:
                if not ended.done():
                    ended.set_result((code, reason))

            connection = await self.hub.open(caller, "sse", end)
        except AuthError as exc:
            body = error_body(str(exc), UNAUTHENTICATED, requestId=request_id)
            auth = {"WWW-Authenticate": 'Bearer realm="gateway"'}
            return await json_response(body, 401, {**headers, **auth})(scope, receive, send)
        except RequestError as exc:
            body = error_body(exc.message, exc.code, requestId=request_id)
            response = json_response(body, exc.status, {**headers, **exc.headers})
            return await response(scope, receive, send)
        except Refused as refused:
            body = error_body(refused.message, refused.code, requestId=request_id)
            return await json_response(body, refused.status, headers)(scope, receive, send)
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"text/event-stream; charset=utf-8"),
                        (b"cache-control", b"no-store"),
                        (b"x-accel-buffering", b"no"),  # proxies: do not buffer the stream
                        (b"x-request-id", request_id.encode()),
                    ],
                }
            )
            timer = asyncio.get_running_loop().call_later(
                seconds_until(expires_at), end, CLOSE_UNAUTHORIZED, "Token expired."
            )
            try:
                await self.events(gql, connection, request_id, receive, send, ended)
            finally:
                timer.cancel()
        finally:
            self.hub.close(connection)

    async def events(
        self,
        gql: Any,
        connection: Connection,
        request_id: str,
        receive: Any,
        send: Any,
        ended: "asyncio.Future[tuple[int, str]]",
    ) -> None:
        async def body(data: bytes, more: bool = True) -> None:
            await send({"type": "http.response.body", "body": data, "more_body": more})

        errors = await self.subscriptions.prepare(gql, connection.caller, request_id)
        if errors is not None:
            await body(next_event({"errors": errors}))
            return await body(COMPLETE, False)
        results = self.subscriptions.run(gql, connection, request_id)
        disconnected: asyncio.Future[Any] = asyncio.ensure_future(_disconnect(receive))
        following: asyncio.Future[Any] = asyncio.ensure_future(anext(results))
        keepalive_s = self.subscriptions.settings.subscriptions_keepalive_s
        try:
            while True:
                done, _ = await asyncio.wait(
                    {following, disconnected, ended},
                    timeout=keepalive_s,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                if disconnected in done:
                    return
                if following in done:
                    try:
                        result = following.result()
                    except StopAsyncIteration:
                        return await body(COMPLETE, False)
                    await body(next_event(result))
                    following = asyncio.ensure_future(anext(results))
                elif ended in done:
                    code, reason = ended.result()
                    error = error_body(
                        reason,
                        UNAUTHENTICATED if code == CLOSE_UNAUTHORIZED else FORBIDDEN,
                        requestId=request_id,
                    )
                    await body(next_event(error))
                    return await body(COMPLETE, False)
                else:
                    await body(KEEPALIVE)
        finally:
            for task in (following, disconnected):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration, Exception):
                await following
            await results.aclose()  # type: ignore[attr-defined]


async def _disconnect(receive: Any) -> None:
    """Until the client goes away (the request body was read before)."""
    while (await receive())["type"] != "http.disconnect":
        pass
