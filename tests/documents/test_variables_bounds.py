"""Variables are bounded (depth, values, characters) before any use, on every path: a
persisted GET (the fast path builds its stored-answer key from them), a POST, a
WebSocket subscribe and an event stream. The nastiest shapes answer a 4xx with a stable
code, never a 500; served by uvicorn in this process, with the served bounds."""

import json
from urllib.parse import urlencode

import httpx
import pytest

from gateway.documents.dashboard import dashboard_operations
from gateway.http.request import MAX_VARIABLES_CHARS, MAX_VARIABLES_DEPTH, MAX_VARIABLES_VALUES
from tests.support.clock import MovableClock
from tests.support.cycles import refresh_all
from tests.support.dataset import DANA, NOW
from tests.support.gateway import settings_for
from tests.support.live_server import Served, serving
from tests.support.raw_http import code_of, exchange, get_head
from tests.support.subscription_clients import ws_session

SUMMARY = dashboard_operations()["DirectorSummary"]
DASHBOARD = "subscription { dashboard { computedAt } }"


def nested(levels: int) -> str:
    """`{"deep": [[…[1]…]]}`, `levels` containers deep, as text (json.dumps would reach
    Python's recursion limit); 2 bytes a level, so 100,000 levels fit in a body."""
    return '{"deep":' + "[" * (levels - 1) + "1" + "]" * (levels - 1) + "}"


SHAPES = {
    # An undeclared variable 300 levels deep: the stored-answer key once answered 500.
    "300 deep": nested(300),
    # Past orjson's own limit (1,024): not even JSON the gateway reads.
    "100,000 deep": nested(100_000),
    "one level too deep": nested(MAX_VARIABLES_DEPTH + 1),
    # Within GATEWAY_MAX_BODY_BYTES (else 413 first).
    "a huge array": json.dumps({"ids": [0] * 100_000}, separators=(",", ":")),
    "many keys": json.dumps({f"k{i}": i for i in range(15_000)}, separators=(",", ":")),
    "one value too many": json.dumps({"ids": [0] * MAX_VARIABLES_VALUES}),
    "long strings": json.dumps({"s": "x" * (MAX_VARIABLES_CHARS + 1)}),
}
# What each answers over HTTP, before anything else reads the variables.
TOO_LARGE = (400, "VARIABLES_TOO_LARGE")
EXPECTED = {
    "300 deep": TOO_LARGE,
    "100,000 deep": (400, "BAD_REQUEST"),
    "one level too deep": TOO_LARGE,
    "a huge array": TOO_LARGE,
    "many keys": TOO_LARGE,
    "one value too many": TOO_LARGE,
    "long strings": TOO_LARGE,
}
# A GET carries its variables in the request line: past GATEWAY_MAX_HEADER_BYTES the
# server refuses the head before the application sees it.
HEAD_TOO_LARGE = (431, "HEADERS_TOO_LARGE")


@pytest.fixture
async def live(db: str):
    async with serving(settings_for(db, None), MovableClock(NOW)) as served:
        await refresh_all(served.services)
        yield served


def subscribe(operation_id: str, variables: str) -> str:
    payload = '{"query":' + json.dumps(DASHBOARD) + ',"variables":' + variables + "}"
    return '{"id":"' + operation_id + '","type":"subscribe","payload":' + payload + "}"


def coded(response: httpx.Response) -> tuple[int, str]:
    body = response.json()
    return response.status_code, body["errors"][0]["extensions"]["code"]


async def test_every_path_refuses_oversized_variables_with_a_code(live: Served) -> None:
    persisted = {"version": 1, "sha256Hash": SUMMARY.sha256}
    async with httpx.AsyncClient(base_url=live.url, timeout=60) as http:
        for name, variables in SHAPES.items():
            expected = EXPECTED[name]
            query = urlencode(
                {
                    "operationName": SUMMARY.name,
                    "extensions": json.dumps(persisted),
                    "variables": variables,
                }
            )
            # Twice: a miss goes on to the endpoint, a second ask is the fast path's.
            for _ in range(2):
                head = get_head(f"/graphql?{query}", live.auth(DANA))
                status, _, answer = await exchange(live.url, head)
                head_too_large = len(head) > live.settings.max_header_bytes
                wanted = HEAD_TOO_LARGE if head_too_large else expected
                assert (status, code_of(answer)) == wanted, name
            body = '{"query":' + json.dumps(SUMMARY.body) + ',"variables":' + variables + "}"
            headers = {**live.auth(DANA), "Content-Type": "application/json"}
            response = await http.post("/graphql", content=body, headers=headers)
            assert coded(response) == expected, name
            stream = {**headers, "Accept": "text/event-stream"}
            body = '{"query":' + json.dumps(DASHBOARD) + ',"variables":' + variables + "}"
            response = await http.post("/graphql", content=body, headers=stream)
            assert coded(response) == expected, name
        # Within every bound, the same request runs (an undeclared variable is ignored).
        fine = nested(MAX_VARIABLES_DEPTH)
        query = urlencode({"query": SUMMARY.body, "variables": fine})
        response = await http.get(f"/graphql?{query}", headers=live.auth(DANA))
        body = response.json()
        assert (response.status_code, body.get("errors")) == (200, None), body


async def test_a_websocket_subscribe_refuses_oversized_variables(live: Served) -> None:
    async with ws_session(live.ws_url, live.token(DANA)) as ws:
        for number, (name, variables) in enumerate(SHAPES.items()):
            operation_id = str(number)
            message = subscribe(operation_id, variables)
            if EXPECTED[name] != TOO_LARGE:
                continue  # not JSON the gateway reads: it closes the socket (tried below)
            await ws.socket.send(message)
            reply = await ws.receive()
            assert reply["id"] == operation_id and reply["type"] == "error", name
            assert reply["payload"][0]["extensions"]["code"] == "VARIABLES_TOO_LARGE", name
    async with ws_session(live.ws_url, live.token(DANA)) as ws:
        message = subscribe("x", SHAPES["100,000 deep"])
        await ws.socket.send(message)
        assert await ws.closed() == (4400, "Invalid message received")
