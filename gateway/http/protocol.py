"""uvicorn's httptools protocol with bounds on the request head, and what else the server
must bound before the application sees a byte.

httptools (llhttp) reads a header of any size: it joins the pieces of a value as they
arrive, so a 64 MiB header is held whole (and copied over and over) before the
application is called, and uvicorn gives a connection that sends its head slowly all the
time it takes. Here, per request head (request line and headers):

- its bytes are counted as they arrive: past GATEWAY_MAX_HEADER_BYTES the connection is
  answered 431 and closed, whatever the parser holds so far (so at most that plus one read
  of the socket is ever buffered); so is a head with more than GATEWAY_MAX_HEADERS fields;
- it must be complete within GATEWAY_HEADER_TIMEOUT_S of its first byte (of the connection
  for the first request): else 408 and the connection is closed. Between requests,
  uvicorn's keep-alive timeout applies.

h11 bounds the head too (`h11_max_incomplete_event_size`) but has no read timeout either and
answers 400; it is also slower on the fast path. WebSocket messages are bounded by
websockets itself while it reads a frame's header (`ws_max_size`, close 1009), before the
frame is buffered: `server_options` sets it to GATEWAY_MAX_BODY_BYTES.
"""

import asyncio
from typing import Any

import httptools
import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from gateway.http.errors import error_body
from gateway.settings import Settings
from resolvers.errors import HEADERS_TOO_LARGE, REQUEST_TIMEOUT

LINGER_S = 2.0


class _HeadTooLarge(Exception):
    pass


def server_options(settings: Settings | None = None) -> dict[str, Any]:
    """uvicorn options carrying the bounds of `settings` (read from the environment when
    not given, as gateway.main does)."""
    bounds = settings or Settings()

    class Protocol(BoundedHttpToolsProtocol):
        max_head_bytes = bounds.max_header_bytes
        max_headers = bounds.max_headers
        head_timeout_s = bounds.header_timeout_s

    return {"http": Protocol, "ws_max_size": bounds.max_body_bytes}


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    max_head_bytes = 16_384
    max_headers = 100
    head_timeout_s = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._lingering = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._begin_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._end_head()
        super().connection_lost(exc)

    def _begin_head(self) -> None:
        self._in_head = True
        self._head_bytes = 0
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_timed_out)

    def _end_head(self) -> None:
        self._in_head = False
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._in_head and not self.transport.is_closing():
            self._refuse(408, "Request header timeout.")

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return  # refused: what follows is read and dropped until the close
        if self._in_head:
            self._head_bytes += len(data)
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _HeadTooLarge):
                self._refuse(431, "Request header fields too large.")
            else:
                self._bad_request()
            return
        except httptools.HttpParserError:
            self._bad_request()
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        if self._in_head and self._head_bytes > self.max_head_bytes:
            self._refuse(431, "Request header fields too large.")

    def _bad_request(self) -> None:
        msg = "Invalid HTTP request received."
        self.logger.warning(msg)
        self.send_400_response(msg)
        self._end_head()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._in_head:
            self._begin_head()

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > self.max_head_bytes:
            raise _HeadTooLarge

    def on_header(self, name: bytes, value: bytes) -> None:
        if len(self.headers) >= self.max_headers:
            raise _HeadTooLarge
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._end_head()
        # Exact, whatever the reads' boundaries: the line, each field with ": " and CRLF.
        size = len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers)
        if size > self.max_head_bytes:
            raise _HeadTooLarge
        super().on_headers_complete()

    def _refuse(self, status: int, message: str) -> None:
        """Answers `status` with a JSON body and closes: the request never reaches the
        application (so no request id: nothing of it is logged but this)."""
        self._end_head()
        self.logger.warning("%s (%d)", message, status)
        code = HEADERS_TOO_LARGE if status == 431 else REQUEST_TIMEOUT
        body = orjson.dumps(error_body(message, code))
        content = [
            STATUS_LINE[status],
            *(name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers),
            b"content-type: application/json\r\n",
            b"content-length: " + str(len(body)).encode() + b"\r\n",
            b"connection: close\r\n\r\n",
            body,
        ]
        self.transport.write(b"".join(content))
        # A lingering close (as nginx's): closed at once with unread input, the socket
        # would send a reset that can destroy the answer before the client reads it. So
        # the answer is sent, then EOF, then input is dropped unread for LINGER_S at most.
        self._lingering = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_S, self.transport.close)
