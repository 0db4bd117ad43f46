"""Idle keep-alive: `gateway serve` keeps an idle connection open for
GATEWAY_HTTP_KEEPALIVE_S (75 s by default, above a load balancer's 60 s), then closes it."""

import socket
import time
from urllib.parse import urlsplit

import pytest

from gateway.settings import Settings
from gateway.supervisor import _uvicorn_options
from tests.harness.waiting import CEILING_S
from tests.support.live_gateway import live_gateway

UVICORN_DEFAULT_S = 5  # what the gateway kept before it was a setting
KEEPALIVE_S = 6


@pytest.fixture(scope="module")
def backend() -> str:
    return "sqlite"


def test_the_default_is_longer_than_a_load_balancers_idle_timeout(monkeypatch) -> None:
    monkeypatch.delenv("GATEWAY_HTTP_KEEPALIVE_S", raising=False)
    assert Settings().http_keepalive_s == 75.0
    assert _uvicorn_options()["timeout_keep_alive"] == 75.0
    monkeypatch.setenv("GATEWAY_HTTP_KEEPALIVE_S", "120")
    assert _uvicorn_options()["timeout_keep_alive"] == 120.0


def read_response(sock: socket.socket) -> bytes:
    """One HTTP/1.1 response with a Content-Length, read whole."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head


def test_an_idle_connection_stays_open_for_the_setting_then_closes(dataset_url: str) -> None:
    with live_gateway(dataset_url, http_keepalive_s=str(KEEPALIVE_S)) as url:
        address = urlsplit(url)
        with socket.create_connection((address.hostname, address.port), CEILING_S) as sock:
            request = f"GET /healthz HTTP/1.1\r\nHost: {address.netloc}\r\n\r\n".encode()
            for _ in range(2):  # the connection is reused
                sock.sendall(request)
                assert read_response(sock).startswith(b"HTTP/1.1 200")
            idle_from = time.monotonic()
            assert sock.recv(1) == b""  # until the server closes it (CEILING_S at most)
            idle_s = time.monotonic() - idle_from
    # Open past uvicorn's old default, closed by the server once the setting's time is up.
    assert UVICORN_DEFAULT_S < idle_s < KEEPALIVE_S + CEILING_S
