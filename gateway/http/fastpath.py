"""Stored answers served in a raw ASGI layer, in front of routing and the endpoint: the one
place a hit is answered, for a GET and a POST alike.

A stored answer costs one Redis GET; everything Starlette does around it (a Request
object, query-string parsing into a multidict, routing, exception wrapping, header
objects) cost as much again. So this layer, placed as Starlette middleware (after CORS,
so cross-origin answers keep their headers), answers a hit with:

- the raw query string of a GET, parsed once and memoised (the same few thousand strings
  recur for every caller; the memo is bounded); the JSON body of a POST, read within
  GATEWAY_MAX_BODY_BYTES and parsed once with orjson. A POST names the same stored answer
  as the GET for its document (by hash, `documentId` or the sha256 of its `query` text),
  operation and variables (GraphQLRequest.answer_id);
- the Accept and Accept-Encoding headers, classified once per distinct value
  (gateway/http/media.py, gateway/http/compression.py): the stored bytes, or the gzip bytes
  stored beside them, go out with that representation's ETag;
- the caller from the verifier (verified tokens are remembered until they expire);
- one Redis GET; status, headers and body from `answer_message`, the writer the endpoint
  uses for the answers it executes.

Everything else — a miss, no or a bad token, a malformed, unusual or non-persisted
request, another path or method — goes on to the application, which answers exactly as it
would without this layer, reading nothing twice: what was parsed here (media type,
coding, caller, the request or its error, the key looked up) rides in the ASGI scope
(`FastPathParse`), and a POST body read here is handed on as it was received.
tests/http/test_fast_path.py compares both paths byte for byte.
"""

import time
from dataclasses import replace
from typing import Any

from gateway import metrics
from gateway.auth import AuthError
from gateway.cache.answers import AnswerId
from gateway.documents.persisted import load_manifest
from gateway.http.access import OPERATION
from gateway.http.compression import EncodingMemo
from gateway.http.endpoint import KNOWN_OPERATIONS
from gateway.http.media import (
    ACCEPT_MEMO_ENTRIES,
    ACCEPT_MEMO_MAX_BYTES,
    AcceptMemo,
    prefers_event_stream,
)
from gateway.http.request import (
    FAST_PATH,
    JSON_BODY_TYPES,
    FastPathParse,
    GraphQLRequest,
    RequestError,
    body_content_type,
    inbound_request_id,
    parse_get,
    parse_post_body,
)
from gateway.http.responses import answer_message
from gateway.http.scope import GRAPHQL_PATH
from gateway.logs import new_request_id, request_id_var
from gateway.services import Services

MEMO_ENTRIES = 4_096
MEMO_MAX_BYTES = 1_024

Parsed = tuple[GraphQLRequest, AnswerId | None] | RequestError


def parse_query_string(query_string: bytes) -> Parsed:
    """A GET's request and the stored answer it names, or why it is refused (the endpoint
    then answers with that error, as it would have parsed it the same way)."""
    try:
        gql = parse_get(query_string)
        return gql, gql.answer_id
    except RequestError as exc:
        return exc


def answer_id_of(query_string: bytes) -> AnswerId | None:
    """What names the stored answer of a well-formed persisted GET with no `query`."""
    parsed = parse_query_string(query_string)
    return None if isinstance(parsed, RequestError) else parsed[1]


def replaying(body: bytes, receive: Any) -> Any:
    """`receive` for the application, after this layer read the body: the body first, as
    one message, then whatever the connection says next (a disconnect)."""
    sent = False

    async def replay() -> Any:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class FastPathMiddleware:
    def __init__(self, app: Any, services: Services) -> None:
        settings = services.settings
        self.app = app
        self.services = services
        self.answers = services.answers
        self.verifier = services.verifier
        self.clock = services.clock
        self.max_body_bytes = settings.max_body_bytes
        self.gzip_min_bytes = settings.gzip_min_bytes
        self._parsed: dict[bytes, Parsed] = {}
        self.media = AcceptMemo()
        self.codings = EncodingMemo()
        self._streams: dict[bytes, bool] = {}  # Accept headers naming text/event-stream
        self._latency = {
            name: metrics.REQUEST_LATENCY.labels(name, "fast")
            for name in (*KNOWN_OPERATIONS, "other")
        }
        self._other = self._latency["other"]
        # Which hashes may be answered, where the endpoint would refuse some (it checks the
        # same before anything runs): persisted-only mode, or APQ turned off.
        self.restricted = (
            settings.persisted_only and not settings.persisted_only_log_only
        ) or not settings.apq_enabled
        self.manifest = (
            load_manifest(settings.persisted_manifest)
            if self.restricted and settings.persisted_manifest
            else {}
        )

    def parsed(self, query_string: bytes) -> Parsed:
        """Parsed once per distinct query string; the memo holds at most MEMO_ENTRIES of
        at most MEMO_MAX_BYTES each (called only for authenticated callers)."""
        try:
            return self._parsed[query_string]
        except KeyError:
            pass
        parsed = parse_query_string(query_string)
        if len(query_string) <= MEMO_MAX_BYTES:
            if len(self._parsed) >= MEMO_ENTRIES:
                self._parsed.clear()
            self._parsed[query_string] = parsed
        return parsed

    def streams(self, accept: bytes) -> bool:
        """Whether the event stream is preferred (memoised like the media types)."""
        found = self._streams.get(accept)
        if found is None:
            found = prefers_event_stream(accept.decode("latin-1"))
            if len(accept) <= ACCEPT_MEMO_MAX_BYTES:
                if len(self._streams) >= ACCEPT_MEMO_ENTRIES:
                    self._streams.clear()
                self._streams[accept] = found
        return found

    def servable(self, gql: GraphQLRequest, answer_id: AnswerId) -> bool:
        """False when the endpoint would refuse this document before running it."""
        if not self.restricted or answer_id.sha256 in self.manifest:
            return True
        settings = self.services.settings
        by_hash = gql.persisted_sha256() is not None
        persisted_only = settings.persisted_only and not settings.persisted_only_log_only
        if persisted_only and not (by_hash and settings.persisted_only_allow_apq):
            return False
        # APQ off: a hash the manifest does not hold is refused unless its text came along.
        return settings.apq_enabled or gql.query is not None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.answers is None or scope["type"] != "http" or scope["path"] != GRAPHQL_PATH:
            return await self.app(scope, receive, send)
        method = scope["method"]
        if method != "GET" and method != "POST":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        # The first of repeated headers, as the endpoint (Starlette's Headers.get) reads them.
        authorization = if_none_match = request_id = accept = accept_encoding = None
        content_type = content_length = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                if authorization is None:
                    authorization = value.decode("latin-1")
            elif name == b"accept":
                if accept is None:
                    accept = value
            elif name == b"accept-encoding":
                if accept_encoding is None:
                    accept_encoding = value
            elif name == b"if-none-match":
                if if_none_match is None:
                    if_none_match = value.decode("latin-1")
            elif name == b"x-request-id":
                if request_id is None:
                    request_id = value.decode("latin-1")
            elif name == b"content-type":
                if content_type is None:
                    content_type = value.decode("latin-1")
            elif name == b"content-length" and content_length is None:
                content_length = value
        media = self.media[accept]
        if media is None:
            return await self.app(scope, receive, send)  # the endpoint answers the 406
        if accept is not None and b"event-stream" in accept and self.streams(accept):
            return await self.app(scope, receive, send)  # a subscription (gateway/http/sse.py)
        coding = self.codings[accept_encoding]
        try:
            caller = self.verifier.verify(authorization)
        except AuthError:
            scope[FAST_PATH] = FastPathParse(media, coding)
            return await self.app(scope, receive, send)  # the endpoint answers the 401
        if method == "GET":
            parsed = self.parsed(scope["query_string"])
            if isinstance(parsed, RequestError):
                scope[FAST_PATH] = FastPathParse(media, coding, caller, error=parsed)
                return await self.app(scope, receive, send)
            gql, answer_id = parsed
        else:
            # Only a JSON body of a declared length within the bound is read here; any
            # other goes on unread, and the endpoint answers it as it always did.
            if (
                content_type is None
                or body_content_type(content_type) not in JSON_BODY_TYPES
                or content_length is None
                or not content_length.isdigit()
                or int(content_length) > self.max_body_bytes
            ):
                scope[FAST_PATH] = FastPathParse(media, coding, caller)
                return await self.app(scope, receive, send)
            chunks = []
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return  # the client went away
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    break
            body = b"".join(chunks)
            receive = replaying(body, receive)
            try:
                gql = parse_post_body(body)
                answer_id = gql.answer_id
            except RequestError as exc:
                scope[FAST_PATH] = FastPathParse(media, coding, caller, error=exc)
                return await self.app(scope, receive, send)
        if answer_id is None or not self.servable(gql, answer_id):
            # The endpoint sets fields on the request: its own copy, not the memo's.
            scope[FAST_PATH] = FastPathParse(media, coding, caller, replace(gql))
            return await self.app(scope, receive, send)
        key = self.answers.key(caller, answer_id)
        stored = await self.answers.get(key)
        if stored is None:
            scope[FAST_PATH] = FastPathParse(media, coding, caller, replace(gql), answer_key=key)
            return await self.app(scope, receive, send)
        request_id = inbound_request_id(request_id) or new_request_id()
        request_id_var.set(request_id)
        now_s = self.clock().timestamp()
        self.answers.usage.touch(caller, key, now_s)
        status, headers, body = answer_message(
            stored.body,
            stored.gzip,
            stored.etag,
            stored.max_age_s(now_s) if method == "GET" else None,
            media=media,
            coding=coding,
            request_id=request_id,
            if_none_match=if_none_match,
            gzip_min_bytes=self.gzip_min_bytes,
        )
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        scope[OPERATION] = stored.operation or gql.operation_name
        (self._latency.get(stored.operation) or self._other).observe(time.perf_counter() - started)
