"""Content coding: gzip, chosen by the request's Accept-Encoding, applied where bytes are made.

Nothing is compressed per hit: a stored answer is compressed once when it is stored (its
gzip bytes kept beside the plain ones, gateway/cache/answers.py), a static file once at
start (gateway/http/responses.py `Precompressed`), an executed answer once when it is
written. Bodies shorter than GATEWAY_COMPRESSION_MIN_BYTES go out as they are (unless the
client refuses `identity`).

Each coding of a representation has its own ETag (`-gz` before the closing quote), so a
validator obtained for the plain bytes never earns a 304 for the gzip bytes, or back.

Brotli is not offered: on the dashboard's answers it saves 7–15 % over gzip (DirectorSummary
723 → 671 B at quality 5, 614 B at quality 11) for 0.2–0.7 ms (quality 5) or 2.6–8 ms
(quality 11) of CPU per answer instead of 0.03–0.1 ms — paid for every answer a refresh
cycle stores — a third copy of each answer in Redis, and one more dependency.
"""

import gzip
from dataclasses import dataclass

from gateway.http.media import weighted

GZIP = b"gzip"
ANSWER_LEVEL = 6  # stored and executed answers: as small as 9 on these bodies, faster
STATIC_LEVEL = 9  # static files: compressed once per process
ENCODING_MEMO_ENTRIES = 256
ENCODING_MEMO_MAX_BYTES = 256


@dataclass(frozen=True)
class Coding:
    """What a request's Accept-Encoding allows."""

    gzip: bool  # gzip is acceptable and not less preferred than the plain bytes
    identity: bool = True  # the plain bytes are acceptable (not `identity;q=0`, `*;q=0`)

    def wants_gzip(self, size: int, min_bytes: int | None) -> bool:
        """Whether a body of `size` bytes goes out gzip-encoded; `min_bytes` None: off."""
        if min_bytes is None or not self.gzip:
            return False
        return size >= min_bytes or not self.identity


PLAIN = Coding(gzip=False)


def negotiate_encoding(accept_encoding: str | None) -> Coding:
    """RFC 9110 §12.5.3: each coding takes its own q, else the q of `*`; `identity` is
    acceptable unless excluded (`identity;q=0`, or `*;q=0` without `identity`). gzip is
    chosen when its q is above 0 and not below identity's, when identity's is given (by
    name or by `*`). No header: the plain bytes.
    When neither is acceptable the plain bytes go out anyway, as most servers do."""
    if accept_encoding is None:
        return PLAIN
    q: dict[str, float] = {}
    for name, value in weighted(accept_encoding):
        q.setdefault(name, value)  # a coding named twice: its first q
    star = q.get("*")
    gzip_q = q.get("gzip", q.get("x-gzip", 0.0 if star is None else star))
    # Unnamed (no `identity`, no `*`), identity is acceptable but no preference of the client.
    identity_q = q.get("identity", star)
    if identity_q is None:
        return Coding(gzip=gzip_q > 0)
    return Coding(gzip=gzip_q > 0 and gzip_q >= identity_q, identity=identity_q > 0)


class EncodingMemo(dict[bytes | None, Coding]):
    """negotiate_encoding() once per distinct header (the same few values recur):
    `memo[accept_encoding]` is a dict look-up once seen; at most ENCODING_MEMO_ENTRIES of
    at most ENCODING_MEMO_MAX_BYTES each are kept."""

    def __missing__(self, header: bytes | None) -> Coding:
        coding = negotiate_encoding(None if header is None else header.decode("latin-1"))
        if header is None or len(header) <= ENCODING_MEMO_MAX_BYTES:
            if len(self) >= ENCODING_MEMO_ENTRIES:
                self.clear()
            self[header] = coding
        return coding


def gzip_bytes(body: bytes, level: int = ANSWER_LEVEL) -> bytes:
    """gzip with no timestamp: the same bytes in every process."""
    return gzip.compress(body, level, mtime=0)


def gzip_etag(etag: str) -> str:
    """The ETag of the gzip coding of the representation whose ETag is `etag`."""
    return etag[:-1] + '-gz"'
