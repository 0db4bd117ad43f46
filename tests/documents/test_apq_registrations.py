"""APQ registrations are bounded per caller (documents and bytes per window) and in total,
in memory (embedded) and in Redis across replicas: past a bound, the registering request is
answered 429 TOO_MANY_REGISTRATIONS and nothing is kept. The documents are the nastiest
that pass the document limits: distinct, each as long as GATEWAY_MAX_DOCUMENT_CHARS allows
(a comment costs no token), registered all at once."""

import asyncio
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from gateway.documents.persisted import APQ_KEY_PREFIX, sha256_hex
from gateway.settings import Settings
from tests.support.clock import MovableClock
from tests.support.dataset import DANA, DREW, NOW
from tests.support.gateway_client import GatewayClient, fixed_clock, gateway_client
from tests.support.live_server import serving
from tests.support.subscription_clients import ws_session

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

QUERY = "query Me { me { id } }"
DOCUMENT_CHARS = 32_000  # within GATEWAY_MAX_DOCUMENT_CHARS (32,768)


def document(n: int) -> str:
    head = f"# {n:08d} "
    return head + "x" * (DOCUMENT_CHARS - len(head) - len(QUERY) - 1) + "\n" + QUERY


async def register(api: GatewayClient, user: int, text: str) -> httpx.Response:
    body: dict[str, Any] = {
        "query": text,
        "extensions": {"persistedQuery": {"version": 1, "sha256Hash": sha256_hex(text)}},
    }
    return await api.http.post("/graphql", json=body, headers=api.auth(user))


async def known(api: GatewayClient, user: int, text: str) -> bool:
    body = {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": sha256_hex(text)}}}
    answer = (await api.http.post("/graphql", json=body, headers=api.auth(user))).json()
    return "data" in answer and answer["data"] is not None


def outcome(response: httpx.Response) -> str:
    body = response.json()
    if response.status_code == 200 and body.get("data") == {"me": {"id": DANA}}:
        return "registered"
    if response.status_code == 200 and body.get("data") == {"me": {"id": DREW}}:
        return "registered"
    [error] = body["errors"]
    assert response.headers["retry-after"].isdigit(), response.headers
    return f"{response.status_code} {error['extensions']['code']}"


def settings_for(url: str, **overrides: Any) -> Settings:
    return Settings(database_url=url, **overrides)


async def test_one_caller_registers_at_most_its_count_then_429(dataset_url: str) -> None:
    settings = settings_for(dataset_url, apq_max_registrations=5)
    async with gateway_client(settings, fixed_clock(NOW)) as api:
        texts = [document(n) for n in range(40)]
        results = await asyncio.gather(*(register(api, DANA, text) for text in texts))
        outcomes = [outcome(r) for r in results]
        assert outcomes.count("registered") == 5
        assert outcomes.count("429 TOO_MANY_REGISTRATIONS") == 35
        assert results[outcomes.index("429 TOO_MANY_REGISTRATIONS")].json()["errors"][0][
            "message"
        ] == (
            "Too many persisted-query registrations: this caller may register 5 documents and "
            "524288 bytes per 3600 s."
        )
        kept = [text for text in texts if await known(api, DANA, text)]
        assert len(kept) == 5  # nothing refused was kept
        # A document already kept costs nothing; another caller has a quota of its own.
        assert outcome(await register(api, DANA, kept[0])) == "registered"
        assert outcome(await register(api, DREW, document(100))) == "registered"


async def test_one_caller_registers_at_most_its_bytes(dataset_url: str) -> None:
    settings = settings_for(dataset_url, apq_max_registration_bytes=3 * DOCUMENT_CHARS)
    async with gateway_client(settings, fixed_clock(NOW)) as api:
        outcomes = [outcome(await register(api, DANA, document(n))) for n in range(5)]
        assert outcomes == ["registered"] * 3 + ["429 TOO_MANY_REGISTRATIONS"] * 2


async def test_bounds_hold_across_replicas_on_redis(dataset_url: str, redis_url: str) -> None:
    settings = settings_for(
        dataset_url, redis_url=redis_url, apq_max_registrations=10, apq_max_registrations_total=15
    )
    redis = aioredis.from_url(redis_url)
    await redis.flushall()
    try:
        async with (
            gateway_client(settings, fixed_clock(NOW)) as one,
            gateway_client(settings, fixed_clock(NOW)) as two,
        ):
            replicas = [one, two]
            results = await asyncio.gather(
                *(register(replicas[n % 2], DANA, document(n)) for n in range(60)),
                *(register(replicas[n % 2], DREW, document(1000 + n)) for n in range(60)),
            )
            dana = [outcome(r) for r in results[:60]]
            drew = [outcome(r) for r in results[60:]]
            # Each within its own 10, both within the 15 of everyone together.
            assert dana.count("registered") <= 10 and drew.count("registered") <= 10
            assert dana.count("registered") + drew.count("registered") == 15
            assert len([key async for key in redis.scan_iter(f"{APQ_KEY_PREFIX}*")]) == 15
    finally:
        await redis.aclose()


async def test_a_websocket_registration_counts_as_any_other(dataset_url: str) -> None:
    settings = settings_for(dataset_url, apq_max_registrations=1)
    async with serving(settings, MovableClock(NOW)) as live:
        async with httpx.AsyncClient(base_url=live.url) as http:
            api = GatewayClient(http, settings)
            assert outcome(await register(api, DANA, document(1))) == "registered"
        async with ws_session(live.ws_url, live.token(DANA)) as ws:
            text = document(2)
            await ws.subscribe("1", text, extensions=persisted(text))
            reply = await ws.receive()
            assert reply["type"] == "error", reply
            [error] = reply["payload"]
            assert error["extensions"]["code"] == "TOO_MANY_REGISTRATIONS"


def persisted(text: str) -> dict[str, Any]:
    return {"persistedQuery": {"version": 1, "sha256Hash": sha256_hex(text)}}
