"""GraphQL over HTTP media types: which one a request's Accept header asks for.

- `application/graphql-response+json` (the spec's): status codes say what happened — 400
  (or the refusal's own 4xx) with no `data` key when execution did not start, 200 once it
  did.
- `application/json` (legacy): 200 for GraphQL errors, `"data": null` when execution did
  not start. Chosen when Accept is missing, and for `*/*` or `application/*`, as the spec
  recommends for clients that do not say.
- Neither acceptable (e.g. `Accept: text/html` alone): 406.
- `text/event-stream` (GraphQL over SSE, gateway/http/sse.py): only when the client
  prefers it to every JSON type it accepts, by q-value (as graphql-sse's own server
  decides). urql's default Accept lists it after three JSON types, so urql gets JSON;
  `text/event-stream;q=0` never streams.

Both media types carry the same bytes for an answer without errors, so a stored answer
serves either; its ETag differs per media type (`-gr` before the closing quote), so a
validator obtained for one is never answered with a 304 for the other.
"""

from dataclasses import dataclass
from functools import cached_property

GRAPHQL_RESPONSE = "application/graphql-response+json"
JSON = "application/json"
EVENT_STREAM = "text/event-stream"
SUPPORTED = (GRAPHQL_RESPONSE, JSON)
ACCEPT_MEMO_ENTRIES = 256
ACCEPT_MEMO_MAX_BYTES = 512


@dataclass(frozen=True)
class Media:
    name: str
    content_type: str
    etag_suffix: str  # appended inside the quotes of a stored answer's ETag

    @cached_property
    def content_type_bytes(self) -> bytes:
        return self.content_type.encode("latin-1")

    @property
    def spec_status(self) -> bool:
        """Status codes as the GraphQL-over-HTTP spec gives them for its media type."""
        return self.name == GRAPHQL_RESPONSE

    def etag(self, etag: str) -> str:
        """The ETag of this representation of an answer whose JSON ETag is `etag`."""
        return etag if not self.etag_suffix else etag[:-1] + self.etag_suffix + '"'


MEDIA = {
    GRAPHQL_RESPONSE: Media(GRAPHQL_RESPONSE, f"{GRAPHQL_RESPONSE}; charset=utf-8", "-gr"),
    JSON: Media(JSON, JSON, ""),
}
LEGACY = MEDIA[JSON]


def weighted(header: str) -> list[tuple[str, float]]:
    """(value, q) of each part of an Accept or Accept-Encoding header, values lower-cased,
    in header order; malformed q values count as 0."""
    out = []
    for part in header.split(","):
        media_range, *params = part.split(";")
        media_range = media_range.strip().lower()
        if not media_range:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = 0.0
        out.append((media_range, q))
    return out


def _specificity(media_range: str, media_type: str) -> int:
    """2 for the type itself, 1 for its `type/*`, 0 for `*/*`, -1 when it does not match."""
    if media_range == media_type:
        return 2
    if media_range.endswith("/*") and media_type.startswith(media_range[:-1]):
        return 1
    return 0 if media_range == "*/*" else -1


def _quality(ranges: list[tuple[str, float]], media_type: str) -> tuple[int, float] | None:
    """(specificity, q) of the most specific range matching `media_type` (RFC 9110), or
    None when no range matches it."""
    matches = [
        (specificity, q)
        for media_range, q in ranges
        if (specificity := _specificity(media_range, media_type)) >= 0
    ]
    return max(matches) if matches else None


def prefers_event_stream(accept: str | None) -> bool:
    """True when the client prefers `text/event-stream` to every JSON type it accepts: its q
    is above 0 and above theirs (a tie goes to JSON). A wildcard alone never streams."""
    if accept is None or EVENT_STREAM not in accept.lower():
        return False
    ranges = weighted(accept)
    stream = _quality(ranges, EVENT_STREAM)
    if stream is None or stream[0] < 2 or stream[1] <= 0:
        return False
    json_q = max(
        ((found[1] if (found := _quality(ranges, t)) else 0.0) for t in SUPPORTED), default=0.0
    )
    return stream[1] > json_q


def negotiate(accept: str | None) -> Media | None:
    """The media type to answer in, or None when the Accept header allows neither (406).

    Each type takes the q of the most specific range matching it (RFC 9110). The higher q
    wins; on a tie, the one named explicitly; when both are named only by a wildcard, the
    legacy `application/json`."""
    if accept is None or not accept.strip():
        return LEGACY
    best: tuple[float, int, int] | None = None
    chosen = None
    ranges = weighted(accept)
    for preference, media_type in enumerate(reversed(SUPPORTED)):
        found = _quality(ranges, media_type)
        if found is None:
            continue
        specificity, q = found
        if q <= 0:
            continue
        # graphql-response+json wins ties only when named: a wildcard means legacy JSON.
        rank = (q, specificity, preference if specificity == 2 else -preference)
        if best is None or rank > best:
            best, chosen = rank, MEDIA[media_type]
    return chosen


class AcceptMemo(dict[bytes | None, Media | None]):
    """negotiate() once per distinct Accept header (the same few values recur for every
    request): `memo[accept]` is a plain dict look-up once seen; at most ACCEPT_MEMO_ENTRIES
    of at most ACCEPT_MEMO_MAX_BYTES each are kept. None for an Accept that allows neither
    JSON type (the endpoint answers 406) or that prefers the event stream (gateway/http/sse.py
    answers it): the fast path hands both on."""

    def __missing__(self, accept: bytes | None) -> Media | None:
        text = None if accept is None else accept.decode("latin-1")
        media = None if prefers_event_stream(text) else negotiate(text)
        if accept is None or len(accept) <= ACCEPT_MEMO_MAX_BYTES:
            if len(self) >= ACCEPT_MEMO_ENTRIES:
                self.clear()
            self[accept] = media
        return media
