"""CPU and Python calls per fast-path hit, in process: the FastPathMiddleware alone over
the in-memory store (no network, no server), so a change to the hit's code shows as a
change in these two figures rather than in the noise of a load test.

    .venv/bin/python -m bench.fastpath_cpu [--hits 20000] [--accept 'application/json']
        [--accept-encoding gzip] [--post]

--post: the same request as a POST of the document's text (as urql sends it).
"""

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
from prometheus_client import REGISTRY

from gateway.app import create_app
from gateway.auth import mint_token
from gateway.documents.dashboard import build_manifest, dashboard_operations
from gateway.settings import Settings
from tests.support import dataset


def _hits() -> float:
    labels = {"kind": "response", "result": "hit"}
    return REGISTRY.get_sample_value("gateway_cache_requests_total", labels) or 0.0


async def measure(
    tmp: Path, hits: int, accept: str | None, accept_encoding: str | None = None, post: bool = False
) -> tuple[int, float]:
    url = f"sqlite+aiosqlite:///{tmp}/upstream.sqlite3"
    await dataset.load(url)
    manifest = str(tmp / "manifest.json")
    settings = Settings(database_url=url, embedded_scheduler=False, persisted_manifest=manifest)
    app = create_app(settings)
    op = dashboard_operations()["DirectorSummary"]
    extensions = orjson.dumps({"persistedQuery": {"version": 1, "sha256Hash": op.sha256}})
    query_string = f"extensions={quote(extensions)}&operationName={op.name}".encode()
    headers = [(b"authorization", f"Bearer {mint_token(settings, 2, 'director', 3600)}".encode())]
    if accept is not None:
        headers.append((b"accept", accept.encode()))
    if accept_encoding is not None:
        headers.append((b"accept-encoding", accept_encoding.encode()))
    body = orjson.dumps({"query": op.body, "operationName": op.name})
    if post:
        headers.append((b"content-type", b"application/json"))
        headers.append((b"content-length", b"%d" % len(body)))
    middleware = app.build_middleware_stack()
    while type(middleware).__name__ != "FastPathMiddleware":
        middleware = middleware.app
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body if post else b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    def scope() -> dict[str, Any]:
        return {
            "type": "http",
            "method": "POST" if post else "GET",
            "path": "/graphql",
            "query_string": b"" if post else query_string,
            "headers": headers,
        }

    for _ in range(2):  # executed and stored, then a hit that fills the memos
        sent.clear()
        await middleware(scope(), receive, send)
    assert sent[0]["status"] == 200, sent[0]
    calls = 0

    def profile(frame: Any, event: str, arg: Any) -> None:
        nonlocal calls
        calls += event == "call"

    before = _hits()
    sys.setprofile(profile)
    await middleware(scope(), receive, send)
    sys.setprofile(None)
    assert _hits() == before + 1, "not a fast-path hit"
    started = time.process_time()
    for _ in range(hits):
        await middleware(scope(), receive, send)
    return calls, (time.process_time() - started) / hits


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fastpath_cpu")
    parser.add_argument("--hits", type=int, default=20_000)
    parser.add_argument("--accept", default=None, help="Accept header (default: none)")
    parser.add_argument("--accept-encoding", default=None, help="(default: none)")
    parser.add_argument("--post", action="store_true", help="POST the document's text")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        manifest = Path(tmp) / "manifest.json"
        manifest.write_bytes(orjson.dumps(build_manifest(dashboard_operations())))
        calls, seconds = asyncio.run(
            measure(Path(tmp), args.hits, args.accept, args.accept_encoding, args.post)
        )
    print(f"{calls} Python calls and {seconds * 1e6:.1f} µs of CPU per hit ({args.hits} hits)")


if __name__ == "__main__":
    main()
