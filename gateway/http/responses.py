"""What every HTTP answer of the gateway shares: JSON bodies, caching headers, and the
one writer of an answer's status, headers and bytes (`answer_message`), used alike by the
fast path for a stored answer and by the endpoint for an executed one."""

import hashlib
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from starlette.responses import Response

from gateway.cache.answers import expires_at, gzip_answer
from gateway.http.compression import STATIC_LEVEL, Coding, gzip_bytes, gzip_etag
from gateway.http.media import JSON, Media

NO_STORE = {"Cache-Control": "no-store"}
# A cache must key an answer on the token (it is one caller's), on the media type and on
# the content coding.
VARY = "Authorization, Accept, Accept-Encoding"
_VARY = VARY.encode()
# JSON is never to be read as anything else (a browser sniffing an answer as HTML).
NOSNIFF = {"X-Content-Type-Options": "nosniff"}
_NOSNIFF = (b"x-content-type-options", b"nosniff")
Headers = list[tuple[bytes, bytes]]


def answer_message(
    body: bytes,
    gz: bytes | None,
    etag: str,
    max_age_s: int | None,
    *,
    media: Media,
    coding: Coding,
    request_id: str,
    if_none_match: str | None,
    gzip_min_bytes: int | None,
) -> tuple[int, Headers, bytes]:
    """Status, headers and body of an answer without errors.

    `body` is the answer's JSON bytes, `gz` their gzip bytes when they are long enough to
    be compressed (a stored answer's, or an executed one's compressed once for this
    response), `etag` the ETag of `body` as application/json. `max_age_s` None: a POST,
    which carries no ETag and no max-age, and is never answered 304 (see the README)."""
    if gz is None and coding.gzip and not coding.identity and gzip_min_bytes is not None:
        gz = gzip_answer(body)  # only for a client that refuses the plain bytes
    use_gzip = gz is not None and coding.gzip
    headers: Headers = [(b"x-request-id", request_id.encode())]
    if max_age_s is not None:
        if media.etag_suffix:
            etag = media.etag(etag)
        if use_gzip:
            etag = gzip_etag(etag)
        headers.append((b"cache-control", b"private, max-age=%d" % max_age_s))
        headers.append((b"vary", _VARY))
        headers.append((b"etag", etag.encode()))
        if etag_matches(if_none_match, etag):
            return 304, headers, b""
    else:
        headers.append((b"vary", _VARY))
    out = body
    if use_gzip:
        assert gz is not None
        out = gz
        headers.append((b"content-encoding", b"gzip"))
    headers.append((b"content-length", b"%d" % len(out)))
    headers.append((b"content-type", media.content_type_bytes))
    headers.append(_NOSNIFF)
    return 200, headers, out


class RawResponse(Response):
    """A response whose status, headers and body are already made (`answer_message`)."""

    def __init__(self, status: int, headers: Headers, body: bytes) -> None:
        self.status_code = status
        self.raw_headers = headers
        self.body = body
        self.background = None


def compressed(response: Response, coding: Coding, gzip_min_bytes: int | None) -> Response:
    """`response` gzip-encoded when the client accepts it and its body is long enough
    (executed answers with errors, refusals: the answers without errors go through
    `answer_message`)."""
    body = response.body
    if not coding.wants_gzip(len(body), gzip_min_bytes):
        return response
    gz = gzip_answer(bytes(body))
    headers = response.headers
    etag = headers.get("etag")
    if etag is not None:
        headers["etag"] = gzip_etag(etag)
    if "vary" not in headers:
        headers["vary"] = "Accept-Encoding"
    headers["content-encoding"] = "gzip"
    headers["content-length"] = str(len(gz))
    response.body = gz
    return response


@dataclass(frozen=True)
class Precompressed:
    """A static file or page held in memory, plain and gzip: compressed once, at start."""

    body: bytes
    gzip: bytes | None
    etag: str
    media_type: str

    @classmethod
    def of(cls, body: bytes, media_type: str, min_bytes: int | None) -> "Precompressed":
        long_enough = min_bytes is not None and len(body) >= min_bytes
        gz = gzip_bytes(body, STATIC_LEVEL) if long_enough else None
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        return cls(body, gz, etag, media_type)

    def response(
        self, coding: Coding, headers: dict[str, str], if_none_match: str | None = None
    ) -> Response:
        use_gzip = self.gzip is not None and coding.gzip
        etag = gzip_etag(self.etag) if use_gzip else self.etag
        headers = {**headers, "ETag": etag, "Vary": "Accept-Encoding"}
        if etag_matches(if_none_match, etag):
            return Response(status_code=304, headers=headers)
        if use_gzip:
            headers["Content-Encoding"] = "gzip"
        body = self.gzip if use_gzip else self.body
        return Response(body, 200, headers, self.media_type)


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    headers = {**(headers or {}), **NOSNIFF}
    return Response(orjson.dumps(body), status_code=status, media_type=JSON, headers=headers)


def media_response(
    body: Any, status: int, headers: dict[str, str] | None, media: Media
) -> Response:
    """A GraphQL response body in the negotiated media type."""
    return Response(
        orjson.dumps(body),
        status_code=status,
        media_type=media.content_type,
        headers={**(headers or {}), **NOSNIFF},
    )


def cache_headers(max_age_s: int) -> dict[str, str]:
    # private: the answer is one caller's.
    return {"Cache-Control": f"private, max-age={max_age_s}", "Vary": VARY}


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Weak comparison, as RFC 9110 prescribes for If-None-Match."""
    if not if_none_match:
        return False
    tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
    return "*" in tags or etag in tags


def seconds_until_refresh(data: Any, refresh_interval_s: float, now: datetime) -> int:
    """Until the oldest `computedAt` in the answer is refreshed; 0 when there is none.

    The same arithmetic as a stored answer's max-age, so both paths send equal headers."""
    until = expires_at(data, refresh_interval_s)
    return 0 if until is None else max(0, math.floor(until - now.timestamp()))
