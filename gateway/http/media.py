"""GraphQL over HTTP media types: which one a request's Accept header asks for.

- `application/graphql-response+json` (the spec's): status codes say what happened — 400
  (or the refusal's own 4xx) with no `data` key when execution did not start, 200 once it
  did.
- `application/json` (legacy): 200 for GraphQL errors, `"data": null` when execution did
  not start. Chosen when Accept is missing, and for `*/*` or `application/*`, as the spec
  recommends for clients that do not say.
- Neither acceptable (e.g. `Accept: text/html` alone): 406.

Both media types carry the same bytes for an answer without errors, so a stored answer
serves either; its ETag differs per media type (`-gr` before the closing quote), so a
validator obtained for one is never answered with a 304 for the other.
"""

from dataclasses import dataclass
from functools import cached_property

GRAPHQL_RESPONSE = "application/graphql-response+json"
JSON = "application/json"
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


def _ranges(accept: str) -> list[tuple[str, float]]:
    """(media range, q) of each part of an Accept header; malformed q values count as 0."""
    out = []
    for part in accept.split(","):
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
    """2 for the type itself, 1 for `application/*`, 0 for `*/*`, -1 when it does not match."""
    if media_range == media_type:
        return 2
    if media_range == "application/*":
        return 1
    return 0 if media_range == "*/*" else -1


def negotiate(accept: str | None) -> Media | None:
    """The media type to answer in, or None when the Accept header allows neither (406).

    Each type takes the q of the most specific range matching it (RFC 9110). The higher q
    wins; on a tie, the one named explicitly; when both are named only by a wildcard, the
    legacy `application/json`."""
    if accept is None or not accept.strip():
        return LEGACY
    best: tuple[float, int, int] | None = None
    chosen = None
    for preference, media_type in enumerate(reversed(SUPPORTED)):
        matches = [
            (specificity, q)
            for media_range, q in _ranges(accept)
            if (specificity := _specificity(media_range, media_type)) >= 0
        ]
        if not matches:
            continue
        specificity, q = max(matches)
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
    of at most ACCEPT_MEMO_MAX_BYTES each are kept."""

    def __missing__(self, accept: bytes | None) -> Media | None:
        media = negotiate(None if accept is None else accept.decode("latin-1"))
        if accept is None or len(accept) <= ACCEPT_MEMO_MAX_BYTES:
            if len(self) >= ACCEPT_MEMO_ENTRIES:
                self.clear()
            self[accept] = media
        return media
