"""Persisted-GET hits answered in a raw ASGI layer, in front of routing and the endpoint.

A stored answer costs one Redis GET; everything Starlette does around it (a Request
object, query-string parsing into a multidict, routing, exception wrapping, header
objects) cost as much again. So this layer, placed as Starlette middleware (after CORS,
so cross-origin answers keep their headers), answers a hit with:

- the raw query string, parsed once and memoised (the same few thousand strings recur
  for every caller; the memo is bounded);
- the Accept header, classified once per distinct value (gateway/http/media.py): the
  stored bytes go out as application/graphql-response+json or application/json, with
  that representation's ETag; an Accept allowing neither goes on to the endpoint (406);
- the caller from the verifier (verified tokens are remembered until they expire);
- one Redis GET; headers written as bytes.

Everything else — a miss, no or a bad token, a malformed or non-persisted request,
another path or method — goes on to the application unchanged, which answers exactly as
it would without this layer. A miss hands the key it looked up to the endpoint (in the
ASGI scope), so a miss costs no second GET. The answers and headers are the endpoint's
own: tests/test_fast_path.py compares both paths byte for byte.
"""

import time
from typing import Any

from gateway import metrics
from gateway.auth import AuthError
from gateway.cache.answers import AnswerId
from gateway.http.endpoint import FAST_PATH_MISSED_KEY, KNOWN_OPERATIONS
from gateway.http.media import AcceptMemo
from gateway.http.request import RequestError, inbound_request_id, parse_get
from gateway.http.responses import VARY, etag_matches
from gateway.http.scope import GRAPHQL_PATH
from gateway.logs import new_request_id, request_id_var
from gateway.services import Services

MEMO_ENTRIES = 4_096
MEMO_MAX_BYTES = 1_024
_VARY = VARY.encode()


def answer_id_of(query_string: bytes) -> AnswerId | None:
    """What names the stored answer of a well-formed persisted GET with no `query`; None
    for anything the endpoint must look at itself (it then parses the same way)."""
    try:
        return parse_get(query_string).answer_id
    except RequestError:
        return None


class FastPathMiddleware:
    def __init__(self, app: Any, services: Services) -> None:
        self.app = app
        self.services = services
        self.answers = services.answers
        self.verifier = services.verifier
        self.clock = services.clock
        self._parsed: dict[bytes, AnswerId | None] = {}
        self.media = AcceptMemo()
        self._latency = {
            name: metrics.REQUEST_LATENCY.labels(name, "fast")
            for name in (*KNOWN_OPERATIONS, "other")
        }

    def parsed(self, query_string: bytes) -> AnswerId | None:
        """Parsed once per distinct query string; the memo holds at most MEMO_ENTRIES of
        at most MEMO_MAX_BYTES each (called only for authenticated callers)."""
        try:
            return self._parsed[query_string]
        except KeyError:
            pass
        parsed = answer_id_of(query_string)
        if len(query_string) <= MEMO_MAX_BYTES:
            if len(self._parsed) >= MEMO_ENTRIES:
                self._parsed.clear()
            self._parsed[query_string] = parsed
        return parsed

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if (
            self.answers is None
            or scope["type"] != "http"
            or scope["method"] != "GET"
            or scope["path"] != GRAPHQL_PATH
        ):
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        # The first of repeated headers, as the endpoint (Starlette's Headers.get) reads them.
        authorization = if_none_match = request_id = accept = None
        for name, value in scope["headers"]:
            if name == b"authorization" and authorization is None:
                authorization = value.decode("latin-1")
            elif name == b"accept" and accept is None:
                accept = value
            elif name == b"if-none-match" and if_none_match is None:
                if_none_match = value.decode("latin-1")
            elif name == b"x-request-id" and request_id is None:
                request_id = value.decode("latin-1")
        media = self.media[accept]
        if media is None:
            return await self.app(scope, receive, send)  # the endpoint answers the 406
        try:
            caller = self.verifier.verify(authorization)
        except AuthError:
            return await self.app(scope, receive, send)  # the endpoint answers the 401
        answer_id = self.parsed(scope["query_string"])
        if answer_id is None:
            return await self.app(scope, receive, send)
        key = self.answers.key(caller, answer_id)
        stored = await self.answers.get(key)
        if stored is None:
            scope[FAST_PATH_MISSED_KEY] = key
            return await self.app(scope, receive, send)
        request_id = inbound_request_id(request_id) or new_request_id()
        request_id_var.set(request_id)
        now_s = self.clock().timestamp()
        self.answers.usage.touch(caller, key, now_s)
        etag = stored.etag if not media.etag_suffix else media.etag(stored.etag)
        headers = [
            (b"x-request-id", request_id.encode()),
            (b"cache-control", b"private, max-age=%d" % stored.max_age_s(now_s)),
            (b"vary", _VARY),
            (b"etag", etag.encode()),
        ]
        if etag_matches(if_none_match, etag):
            await send({"type": "http.response.start", "status": 304, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
        else:
            headers.append((b"content-length", b"%d" % len(stored.body)))
            headers.append((b"content-type", media.content_type_bytes))
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": stored.body})
        latency = self._latency.get(answer_id.operation_name or "other") or self._latency["other"]
        latency.observe(time.perf_counter() - started)
