"""CPU per stored-answer miss when many requests ask for it at once, in process: N
concurrent GETs of the admin's cohort list on a fresh answer key (10 keys), through the
whole application over the demo-sized test dataset, its subtrees refreshed. With the
single-flight (gateway/http/flights.py) one of them executes and the others share its
result; `--each-executes` replaces it by a plain call, as before it.

    .venv/bin/python -m bench.miss_cpu [--concurrent 32] [--each-executes]
"""

import argparse
import asyncio
import json
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
from prometheus_client import REGISTRY

from gateway.app import create_app
from gateway.auth import mint_token
from gateway.documents.dashboard import build_manifest, dashboard_operations
from gateway.settings import Settings
from tests.support import dataset
from tests.support.cycles import refresh_all

KEYS = 10


def _misses(outcome: str) -> float:
    labels = {"outcome": outcome}
    return REGISTRY.get_sample_value("gateway_answer_misses_total", labels) or 0.0


async def measure(tmp: Path, concurrent: int, each_executes: bool) -> float:
    url = f"sqlite+aiosqlite:///{tmp}/upstream.sqlite3"
    await dataset.load(url)
    manifest = tmp / "manifest.json"
    manifest.write_bytes(orjson.dumps(build_manifest(dashboard_operations())))
    settings = Settings(
        database_url=url, embedded_scheduler=False, persisted_manifest=str(manifest)
    )
    app = create_app(settings)
    services = app.state.services
    await refresh_all(services)
    if each_executes:

        async def direct(key: str, execute: Callable[[], Awaitable[Any]]) -> Any:
            return await execute()

        app.state.endpoint.flights.run = direct
    op = dashboard_operations()["CohortList"]
    extensions = json.dumps({"persistedQuery": {"version": 1, "sha256Hash": op.sha256}})
    auth = {"Authorization": f"Bearer {mint_token(settings, 1, 'admin', 3600)}"}
    transport = httpx.ASGITransport(app=app)
    cpu_s = 0.0
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        for first in range(5, 5 + KEYS):  # a fresh answer key each round
            params = {
                "extensions": extensions,
                "operationName": op.name,
                "variables": json.dumps({"first": first}),
            }
            started = time.process_time()
            responses = await asyncio.gather(
                *[client.get("/graphql", params=params, headers=auth) for _ in range(concurrent)]
            )
            cpu_s += time.process_time() - started
            assert {r.status_code for r in responses} == {200}, responses[0].text
            assert len({r.content for r in responses}) == 1
    await services.close()
    return cpu_s / KEYS


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.miss_cpu")
    parser.add_argument("--concurrent", type=int, default=32)
    parser.add_argument("--each-executes", action="store_true", help="no single-flight")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        per_key_s = asyncio.run(measure(Path(tmp), args.concurrent, args.each_executes))
    print(
        f"{per_key_s * 1e3:.1f} ms of CPU per key for {args.concurrent} concurrent misses; "
        f"executed {_misses('executed'):.0f}, shared {_misses('shared'):.0f} ({KEYS} keys)"
    )


if __name__ == "__main__":
    main()
