"""What one connection, one header, one frame, one caller and one event may cost on the
surfaces added with subscriptions, measured against a real `gateway serve` (and worker):

- connections: 500 connection_init and 500 event streams at once from one director: the
  caller's limit admitted exactly, the rest refused, and the gateway's memory meanwhile;
- frames: one, then three unauthenticated 15 MiB WebSocket frames: closed 1009 while the
  frame's header is read; the gateway's peak memory before and after, /healthz meanwhile;
- heads: a 64 MiB header (431) and 20 heads sent a byte a second (cut at
  GATEWAY_HEADER_TIMEOUT_S), peak memory and /healthz meanwhile;
- variables: a persisted GET whose variable nests 300 levels (once a 500);
- registrations: one director registering 300 documents of 31 KiB: how many are kept and
  what Redis grew by;
- events: a maximal bulk event (GATEWAY_WEBHOOK_MAX_IDS ids) then a demotion: how long until
  the demoted director's WebSocket is closed (goal: 5 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
import websockets
from websockets.exceptions import ConnectionClosed

from gateway.documents.persisted import sha256_hex
from tests.harness.processes import GatewayProcess, WorkerProcess, epoch
from tests.harness.procfs import status_kb
from tests.reliability.harness import (
    OPERATIONS,
    World,
    event_body,
    gateway_env,
    http_client,
    manifest_file,
    percentile,
    refresh_all_sync,
    signed,
    sqlite_url,
    token,
    write_results,
)
from tests.support.raw_http import exchange, get_head, read_response

pytestmark = pytest.mark.reliability

MIB = 1 << 20
PROTOCOL = "graphql-transport-ws"
DASHBOARD = "subscription { dashboard { computedAt } }"
HEADER_TIMEOUT_S = 5.0


def peak_mib(gateway: GatewayProcess) -> float:
    return round(status_kb(gateway.pid, "VmHWM") / 1024, 1)


def rss_mib(gateway: GatewayProcess) -> float:
    return round(gateway.rss_bytes() / MIB, 1)


async def healthz_while(gateway: GatewayProcess, attack: Any) -> tuple[Any, dict[str, float]]:
    """Runs `attack` while another client asks /healthz in a loop: the attack's result and
    the latencies the other client saw (ms)."""
    latencies: list[float] = []
    task = asyncio.ensure_future(attack)
    async with http_client(gateway.url, connections=1) as client:
        while not task.done():
            started = time.perf_counter()
            assert (await client.get("/healthz")).status_code == 200
            latencies.append((time.perf_counter() - started) * 1000)
            await asyncio.wait({task}, timeout=0.05)
    return task.result(), {
        "requests": len(latencies),
        "p50_ms": round(percentile(latencies, 0.5), 1),
        "max_ms": round(max(latencies), 1),
    }


@contextlib.asynccontextmanager
async def ws(url: str):
    async with websockets.connect(
        url.replace("http", "ws") + "/graphql",
        subprotocols=[PROTOCOL],  # type: ignore[list-item]
        open_timeout=60,
        close_timeout=5,
        max_size=None,
    ) as socket:
        yield socket


async def close_of(socket: Any, frame: str | None = None) -> tuple[int, str]:
    """The server's close (code, reason), after sending `frame` if given."""
    try:
        if frame is not None:
            await socket.send(frame)
        async with asyncio.timeout(60):
            while True:
                await socket.recv()
    except ConnectionClosed as closed:
        assert closed.rcvd is not None, "closed without a close frame"
        return closed.rcvd.code, closed.rcvd.reason
    raise AssertionError("unreachable")


@pytest.fixture
def gateway(db_path: Path, redis_url: str, tmp_path: Path):
    env = gateway_env(
        sqlite_url(db_path),
        redis_url,
        manifest_file(tmp_path),
        header_timeout_s=str(HEADER_TIMEOUT_S),
    )
    refresh_all_sync(env, tmp_path)
    with GatewayProcess("gateway", env, tmp_path) as process:
        yield process


async def test_connections_frames_heads_variables_registrations(
    gateway: GatewayProcess, world: World, redis_url: str
) -> None:
    director = next(c for c in world.callers if c.role == "director")
    bearer = f"Bearer {token(director.user_id, director.role)}"
    figures: dict[str, Any] = {}

    # Connections: 500 inits and 500 streams at once, one director (limit 8 together).
    rss_before = rss_mib(gateway)
    async with contextlib.AsyncExitStack() as stack:
        sockets = await asyncio.gather(
            *(stack.enter_async_context(ws(gateway.url)) for _ in range(500))
        )
        client = await stack.enter_async_context(http_client(gateway.url, connections=500))

        async def init(socket: Any) -> Any:
            await socket.send(
                json.dumps({"type": "connection_init", "payload": {"Authorization": bearer}})
            )
            try:
                return json.loads(await asyncio.wait_for(socket.recv(), 60))["type"]
            except ConnectionClosed as closed:
                assert closed.rcvd is not None
                return closed.rcvd.code

        async def stream() -> Any:
            request = client.build_request(
                "POST",
                "/graphql",
                json={"query": DASHBOARD},
                headers={"Authorization": bearer, "Accept": "text/event-stream"},
            )
            response = await client.send(request, stream=True)
            stack.push_async_callback(response.aclose)
            if response.status_code == 200:
                return "stream"
            await response.aread()
            return (response.status_code, response.json()["errors"][0]["extensions"]["code"])

        outcomes = await asyncio.gather(
            *(init(s) for s in sockets), *(stream() for _ in range(500))
        )
        admitted = outcomes.count("connection_ack") + outcomes.count("stream")
        figures["connections"] = {
            "attempts": 1000,
            "admitted": admitted,
            "refused_4429": outcomes.count(4429),
            "refused_429": outcomes.count((429, "TOO_MANY_CONNECTIONS")),
            "rss_mib_before": rss_before,
            "rss_mib_holding": rss_mib(gateway),
        }
        assert admitted == 8
        assert outcomes.count(4429) + outcomes.count((429, "TOO_MANY_CONNECTIONS")) == 992

    # Frames: one, then three at once, 15 MiB each, unauthenticated.
    frame = "x" * (15 * MIB)
    peak_before = peak_mib(gateway)

    async def one_frame() -> tuple[int, str]:
        async with ws(gateway.url) as socket:
            return await close_of(socket, frame)

    single, single_health = await healthz_while(gateway, one_frame())
    peak_single = peak_mib(gateway)
    triple, triple_health = await healthz_while(
        gateway, asyncio.gather(one_frame(), one_frame(), one_frame())
    )
    figures["frames"] = {
        "frame_mib": 15,
        "close": list(single),
        "peak_rss_mib_before": peak_before,
        "peak_rss_mib_after_one": peak_single,
        "peak_rss_mib_after_three": peak_mib(gateway),
        "healthz_during_one": single_health,
        "healthz_during_three": triple_health,
    }
    assert single[0] == 1009 and [c for c, _ in triple] == [1009] * 3

    # Heads: one 64 MiB header, then 20 heads sent a byte a second.
    peak_before = peak_mib(gateway)
    head = get_head("/healthz", {"X-Pad": "x" * (64 * MIB)})
    started = time.perf_counter()
    (status, _, body), health = await healthz_while(gateway, exchange(gateway.url, head))
    figures["header_64_mib"] = {
        "status": status,
        "code": json.loads(body)["errors"][0]["extensions"]["code"],
        "answered_s": round(time.perf_counter() - started, 3),
        "peak_rss_mib_before": peak_before,
        "peak_rss_mib_after": peak_mib(gateway),
        "healthz_meanwhile": health,
    }
    assert status == 431

    async def slow_head() -> tuple[int, float]:
        reader, writer = await asyncio.open_connection(
            gateway.url.split("//")[1].split(":")[0], gateway.port
        )
        began = time.monotonic()

        async def dribble() -> None:
            with contextlib.suppress(ConnectionError):
                for byte in get_head("/healthz", {"X-Slow": "x" * 100}):
                    writer.write(bytes([byte]))
                    await writer.drain()
                    await asyncio.sleep(1.0)  # the attack's pace

        sender = asyncio.ensure_future(dribble())
        try:
            status, _, _ = await asyncio.wait_for(read_response(reader), 120)
        finally:
            sender.cancel()
            writer.close()
        return status, time.monotonic() - began

    cut, health = await healthz_while(gateway, asyncio.gather(*(slow_head() for _ in range(20))))
    figures["slow_heads"] = {
        "sockets": 20,
        "header_timeout_s": HEADER_TIMEOUT_S,
        "statuses": sorted({s for s, _ in cut}),
        "cut_after_s_max": round(max(t for _, t in cut), 2),
        "healthz_meanwhile": health,
    }
    assert {s for s, _ in cut} == {408}

    # Variables: a persisted GET whose undeclared variable nests 300 levels deep.
    summary = OPERATIONS["DirectorSummary"]
    variables = '{"deep":' + "[" * 299 + "1" + "]" * 299 + "}"
    params = {
        "operationName": summary.name,
        "extensions": json.dumps({"persistedQuery": {"version": 1, "sha256Hash": summary.sha256}}),
        "variables": variables,
    }
    async with http_client(gateway.url) as client:
        answers = [
            await client.get("/graphql", params=params, headers={"Authorization": bearer})
            for _ in range(2)
        ]
        figures["variables_300_deep"] = [
            (a.status_code, a.json()["errors"][0]["extensions"]["code"]) for a in answers
        ]
        assert figures["variables_300_deep"] == [(400, "VARIABLES_TOO_LARGE")] * 2

        # Registrations: 300 distinct documents of 31 KiB from one director, 16 at a time.
        redis = aioredis.from_url(redis_url)
        used_before = (await redis.info("memory"))["used_memory"]
        query = "query Me { me { id } }"
        limit = asyncio.Semaphore(16)

        async def register(n: int) -> int:
            text = f"# {n:08d} " + "x" * (31 * 1024) + "\n" + query
            body = {
                "query": text,
                "extensions": {"persistedQuery": {"version": 1, "sha256Hash": sha256_hex(text)}},
            }
            async with limit:
                response = await client.post(
                    "/graphql", json=body, headers={"Authorization": bearer}
                )
            return response.status_code

        started = time.perf_counter()
        statuses = await asyncio.gather(*(register(n) for n in range(300)))
        used_after = (await redis.info("memory"))["used_memory"]
        await redis.aclose()
        figures["apq_registrations"] = {
            "attempts": 300,
            "document_kib": 31,
            "registered": statuses.count(200),
            "refused_429": statuses.count(429),
            "seconds": round(time.perf_counter() - started, 2),
            "redis_grew_mib": round((used_after - used_before) / MIB, 2),
        }
        # The bytes bound binds first: 512 KiB hold 16 documents of 31 KiB (of 50 allowed).
        assert statuses.count(200) == 16 and statuses.count(429) == 284
    write_results("bounds_surfaces", figures)


async def test_a_demotion_after_a_maximal_bulk_event_closes_within_5_s(
    db_path: Path, redis_url: str, tmp_path: Path, world: World
) -> None:
    env = gateway_env(sqlite_url(db_path), redis_url, None, log_level="INFO")
    await asyncio.to_thread(refresh_all_sync, env, tmp_path)
    director = next(c for c in world.callers if c.role == "director")
    cohorts = sorted(world.cohorts)
    # The nastiest event the cap allows: every real cohort, then ids naming nothing.
    bulk_ids = cohorts + list(range(10_000, 10_000 + 10_000 - len(cohorts)))  # in 64 KiB
    with (
        GatewayProcess("gateway", env, tmp_path) as gateway,
        WorkerProcess("worker", env, tmp_path) as worker,
    ):
        async with ws(gateway.url) as socket, http_client(gateway.url) as client:
            bearer = f"Bearer {token(director.user_id, director.role)}"
            await socket.send(
                json.dumps({"type": "connection_init", "payload": {"Authorization": bearer}})
            )
            assert json.loads(await socket.recv())["type"] == "connection_ack"
            await socket.send(
                json.dumps({"id": "1", "type": "subscribe", "payload": {"query": DASHBOARD}})
            )
            assert json.loads(await socket.recv())["type"] == "next"
            bulk = event_body(f"evt_bulk_{uuid.uuid4().hex}", "missions", bulk_ids)
            response = await client.post("/webhooks/upstream", content=bulk, headers=signed(bulk))
            assert response.status_code == 202
            with sqlite3.connect(db_path) as db:
                db.execute("UPDATE users SET role = 'learner' WHERE id = ?", (director.user_id,))
            demotion = event_body(
                f"evt_demote_{uuid.uuid4().hex}", "programs", director_ids=[director.user_id]
            )
            sent = time.monotonic()
            response = await client.post(
                "/webhooks/upstream", content=demotion, headers=signed(demotion)
            )
            assert response.status_code == 202
            code, reason = await close_of(socket)
            closed_after_s = time.monotonic() - sent
            closed_at = time.time()
        # The bulk event's cohorts are refreshed all the same, each once, after or beside.
        await asyncio.to_thread(worker.wait_for_message, "dropped ids naming no cohort", 300.0)
        refreshed = worker.messages("^refreshed cohort$")
    figures = {
        "bulk_event_ids": len(bulk_ids),
        "real_cohorts": len(cohorts),
        "close": [code, reason],
        "demotion_to_close_s": round(closed_after_s, 3),
        "goal_s": 5.0,
        "cohorts_refreshed_before_the_close": sum(1 for r in refreshed if epoch(r) <= closed_at),
    }
    write_results("bounds_demotion_after_bulk_event", figures)
    assert code == 4403
    assert closed_after_s < 5.0
