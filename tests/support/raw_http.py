"""HTTP/1.1 over a bare socket, for requests no client library sends: request lines and
heads of any size, heads sent a byte at a time. Every wait is bounded."""

import asyncio
import contextlib
import json
from typing import Any
from urllib.parse import urlsplit

WAIT_S = 60.0


async def exchange(url: str, head: bytes, body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """Sends `head` (with its final CRLF CRLF) and `body`, reads one response: status,
    headers (lower-case names), body. The server may answer and close before reading it
    all: what it answered is returned."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)

    async def send() -> None:
        # The server may answer and close while this is still being sent.
        with contextlib.suppress(ConnectionError):
            writer.write(head + body)
            await writer.drain()

    sending = asyncio.ensure_future(send())
    try:
        return await asyncio.wait_for(read_response(reader), WAIT_S)
    finally:
        sending.cancel()
        writer.close()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    status_line = await reader.readline()
    status = int(status_line.split()[1])
    headers: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers, body


def get_head(target: str, headers: dict[str, str], host: str = "gateway") -> bytes:
    lines = [f"GET {target} HTTP/1.1", f"Host: {host}", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def code_of(body: bytes) -> Any:
    return json.loads(body)["errors"][0]["extensions"]["code"]
