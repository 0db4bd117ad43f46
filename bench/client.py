"""A minimal keep-alive HTTP/1.1 client for the harness's own requests (first visits,
cold samples): raw requests over asyncio with httptools, no client library overhead."""

import asyncio
import time
from collections.abc import Sequence

from bench.openloop import Connection
from tests.harness.processes import HOST


def raw_get(target: str, token: str | None, port: int) -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return f"GET {target} HTTP/1.1\r\nHost: {HOST}:{port}\r\n{auth}\r\n".encode()


async def _connect(port: int) -> Connection:
    loop = asyncio.get_running_loop()
    _, conn = await loop.create_connection(lambda: Connection(loop, keep_body=True), HOST, port)
    return conn


async def _one(conn: Connection, raw: bytes, timeout_s: float) -> tuple[int, bytes]:
    status, _ = await asyncio.wait_for(conn.request(raw), timeout_s)
    return status, b"".join(conn.body)


async def fetch_all(
    port: int, requests: Sequence[bytes], concurrency: int = 8, timeout_s: float = 60.0
) -> list[tuple[int, bytes]]:
    """Every request once, `concurrency` at a time; (status, body) in request order."""
    results: list[tuple[int, bytes]] = [(0, b"")] * len(requests)
    queue = list(range(len(requests)))[::-1]

    async def worker() -> None:
        conn = await _connect(port)
        try:
            while queue:
                i = queue.pop()
                if conn.closed:
                    conn = await _connect(port)
                results[i] = await _one(conn, requests[i], timeout_s)
        finally:
            conn.close()

    await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, len(requests))))))
    return results


async def timed_sequence(
    port: int, requests: Sequence[bytes], timeout_s: float = 60.0
) -> list[tuple[int, float, bytes]]:
    """One request at a time on one connection: (status, seconds, body) each."""
    out = []
    conn = await _connect(port)
    try:
        for raw in requests:
            if conn.closed:
                conn = await _connect(port)
            started = time.perf_counter()
            status, body = await _one(conn, raw, timeout_s)
            out.append((status, time.perf_counter() - started, body))
    finally:
        conn.close()
    return out
