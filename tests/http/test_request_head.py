"""The request head is bounded by the server before the application reads it: its size
(GATEWAY_MAX_HEADER_BYTES), its fields (GATEWAY_MAX_HEADERS) and the time it takes to
arrive (GATEWAY_HEADER_TIMEOUT_S). Served by uvicorn in this process with the served
protocol (gateway/http/protocol.py), over bare sockets."""

import asyncio
import time
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support.clock import MovableClock
from tests.support.dataset import NOW
from tests.support.gateway import settings_for
from tests.support.live_server import Served, serving
from tests.support.raw_http import code_of, exchange, get_head, read_response

HEADER_TIMEOUT_S = 2.0


@pytest.fixture
async def live(db: str):
    settings = settings_for(db, None, header_timeout_s=HEADER_TIMEOUT_S)
    async with serving(settings, MovableClock(NOW)) as served:
        yield served


async def test_a_head_within_the_bounds_is_served(live: Served) -> None:
    limit = live.settings.max_header_bytes
    head = get_head("/healthz", {"X-Pad": "x" * (limit - 200)})
    assert len(head) < limit
    status, _, _ = await exchange(live.url, head)
    assert status == 200
    many = {f"X-{i}": "1" for i in range(live.settings.max_headers - 1)}  # and Host
    status, _, _ = await exchange(live.url, get_head("/healthz", many))
    assert status == 200


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"X-Pad": "x" * 16_400}, id="one header just past the bound"),
        pytest.param({"X-Pad": "x" * (64 << 20)}, id="one 64 MiB header"),
        pytest.param({f"X-{i}": "1" for i in range(100)}, id="one field too many"),
        pytest.param({f"X-{i}": "1" for i in range(200_000)}, id="200,000 fields"),
    ],
)
async def test_an_oversized_head_is_refused_431(live: Served, headers: dict[str, str]) -> None:
    status, answered, body = await exchange(live.url, get_head("/healthz", headers))
    assert (status, code_of(body)) == (431, "HEADERS_TOO_LARGE")
    assert answered["connection"] == "close"
    # The server goes on serving.
    async with httpx.AsyncClient(base_url=live.url) as http:
        assert (await http.get("/healthz")).status_code == 200


async def test_a_request_line_past_the_bound_is_refused_431(live: Served) -> None:
    head = get_head("/healthz?" + "a" * (1 << 20), {})
    status, _, body = await exchange(live.url, head)
    assert (status, code_of(body)) == (431, "HEADERS_TOO_LARGE")


async def test_a_head_sent_a_byte_a_second_is_cut_while_others_are_served(
    live: Served,
) -> None:
    parts = urlsplit(live.url)
    head = get_head("/healthz", {"X-Slow": "x" * 100})
    # Before connecting: the server's timer starts when the connection is made.
    started = time.monotonic()
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    served = 0

    async def dribble() -> int:
        sent = 0
        try:
            for byte in head:
                writer.write(bytes([byte]))
                await writer.drain()
                sent += 1
                await asyncio.sleep(1.0)  # the attack's pace, not a wait on the server
        except ConnectionError:
            pass
        return sent

    sender = asyncio.ensure_future(dribble())
    try:
        async with httpx.AsyncClient(base_url=live.url) as http:
            response_task = asyncio.ensure_future(read_response(reader))
            while not response_task.done():
                assert (await http.get("/healthz")).status_code == 200
                served += 1
                await asyncio.wait({response_task}, timeout=0.2)
            status, _, body = response_task.result()
    finally:
        sender.cancel()
        writer.close()
    elapsed = time.monotonic() - started
    assert (status, code_of(body)) == (408, "REQUEST_TIMEOUT")
    assert elapsed >= HEADER_TIMEOUT_S  # never cut before its time
    assert served >= 1
    assert await reader.read() == b""  # and the connection is closed


async def test_an_idle_connection_is_cut_at_the_header_timeout(live: Served) -> None:
    parts = urlsplit(live.url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        status, _, body = await asyncio.wait_for(read_response(reader), 60)
    finally:
        writer.close()
    assert (status, code_of(body)) == (408, "REQUEST_TIMEOUT")
