"""What every HTTP answer of the gateway shares: JSON bodies and caching headers."""

import math
from datetime import datetime
from typing import Any

import orjson
from starlette.responses import Response

from gateway.cache.answers import expires_at
from gateway.http.media import JSON, Media

NO_STORE = {"Cache-Control": "no-store"}
# A cache must key an answer on the token (it is one caller's) and on the media type.
VARY = "Authorization, Accept"


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=JSON, headers=headers)


def media_response(
    body: Any, status: int, headers: dict[str, str] | None, media: Media
) -> Response:
    """A GraphQL response body in the negotiated media type."""
    return Response(
        orjson.dumps(body), status_code=status, media_type=media.content_type, headers=headers
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
