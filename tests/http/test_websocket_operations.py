"""Queries and mutations over WebSocket (graphql-transport-ws), as the protocol carries them
and gql, graphql-ws and GraphQLWsLink send them when so configured: one `next` with the
result, then `complete`; under the same token, limits, persisted-only mode, scope,
introspection and rate-limit rules as over HTTP (uvicorn in this process, embedded mode)."""

import asyncio
import json
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from gateway.documents.dashboard import dashboard_operations
from gateway.documents.persisted import sha256_hex
from tests.harness.waiting import CEILING_S
from tests.support.clock import MovableClock
from tests.support.cycles import refresh_all
from tests.support.dataset import DANA, DREW, NOW
from tests.support.fast_path import DETAIL_OP, LIST_OP, params
from tests.support.gateway import settings_for
from tests.support.live_server import Served, serving
from tests.support.subscription_clients import WS, ws_session

ME = "query Me { me { id name } }"
SUMMARY = "query S { me { summary { totalCohorts activeCohorts seats { total used } } } }"
OTHERS_COHORT = "query C { me { id } cohort(id: 103) { id } }"  # 103 is Drew's
REFRESH = "mutation R($c: Int) { requestRefresh(cohortId: $c) { accepted target } }"
INTROSPECTION = "query I { __schema { queryType { name } } }"


async def result(ws: WS, operation_id: str) -> dict[str, Any]:
    """The one `next` payload of a query or mutation, checked to be followed by `complete`."""
    payload = await ws.next(operation_id)
    assert await ws.receive() == {"id": operation_id, "type": "complete"}
    return payload


async def refused(ws: WS, operation_id: str) -> list[tuple[str, str]]:
    message = await ws.receive()
    assert (message["id"], message["type"]) == (operation_id, "error"), message
    return [(e["extensions"]["code"], e["message"]) for e in message["payload"]]


async def over_http(live: Served, query: str, variables: dict | None = None) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=live.url) as http:
        body = {"query": query, "variables": variables}
        response = await http.post("/graphql", json=body, headers=live.auth(DANA))
    return response.json()  # type: ignore[no-any-return]


@pytest.fixture
async def live(db: str):
    async with serving(settings_for(db, None), MovableClock(NOW)) as served:
        await refresh_all(served.services)
        yield served


async def test_a_query_is_one_next_then_complete_as_over_http(live: Served) -> None:
    async with ws_session(live.ws_url, live.token(DANA)) as ws:
        for operation_id, query in [("me", ME), ("summary", SUMMARY)]:
            await ws.subscribe(operation_id, query)
            assert await result(ws, operation_id) == await over_http(live, query)
        # Out of scope: the same NOT_FOUND beside the data, as over HTTP.
        await ws.subscribe("other", OTHERS_COHORT)
        payload, http = await result(ws, "other"), await over_http(live, OTHERS_COHORT)
        assert payload["data"] == http["data"] == None  # noqa: E711  (cohort is non-null)
        assert [(e["extensions"]["code"], e["path"]) for e in payload["errors"]] == [
            ("NOT_FOUND", ["cohort"])
        ]
        assert [e["message"] for e in payload["errors"]] == [e["message"] for e in http["errors"]]
        # The connection stays open for what follows, subscriptions included.
        await ws.subscribe("dash", "subscription D { dashboard { changedCohortIds } }")
        assert await ws.data("dash") == {"dashboard": {"changedCohortIds": []}}


async def test_mutations_are_rate_limited_as_over_http(live: Served) -> None:
    codes = []
    async with ws_session(live.ws_url, live.token(DANA)) as ws:
        for i in range(7):
            await ws.subscribe(f"r{i}", REFRESH, {"c": 101})
            payload = await result(ws, f"r{i}")
            codes.append(
                payload["errors"][0]["extensions"]["code"] if "errors" in payload else "ok"
            )
            if "errors" not in payload:
                assert payload["data"] == {
                    "requestRefresh": {"accepted": True, "target": "cohort:101"}
                }
        # The caller's budget is the same one HTTP spends (6 a minute).
        assert codes == ["ok"] * 6 + ["RATE_LIMITED"]
        http = await over_http(live, REFRESH, {"c": 101})
        assert http["errors"][0]["extensions"]["code"] == "RATE_LIMITED"


async def test_limits_and_validation_refuse_before_execution(db: str) -> None:
    async with (
        serving(settings_for(db, None, max_aliases=1), MovableClock(NOW)) as live,
        ws_session(live.ws_url, live.token(DANA)) as ws,
    ):
        await ws.subscribe("a", "query A { a: me { id } b: me { id } }")
        assert await refused(ws, "a") == [
            ("TOO_MANY_ALIASES", "The query has 2 aliases; the limit is 1.")
        ]
        await ws.subscribe("v", "query V { me { nope } }")
        assert [code for code, _ in await refused(ws, "v")] == ["GRAPHQL_VALIDATION_FAILED"]
        await ws.subscribe("n", ME, extensions=None)
        assert (await result(ws, "n"))["data"] == {"me": {"id": DANA, "name": "Dana Director"}}


@pytest.mark.parametrize("introspection", [True, False])
async def test_introspection_follows_the_setting_as_over_http(db: str, introspection: bool) -> None:
    """Allowed in development, off in production (GATEWAY_INTROSPECTION's default there)."""
    settings = settings_for(db, None, introspection=introspection)
    async with serving(settings, MovableClock(NOW)) as live:
        http = await over_http(live, INTROSPECTION)
        async with ws_session(live.ws_url, live.token(DANA)) as ws:
            await ws.subscribe("i", INTROSPECTION)
            if introspection:
                assert (
                    await result(ws, "i")
                    == http
                    == {"data": {"__schema": {"queryType": {"name": "Query"}}}}
                )
            else:
                errors = await refused(ws, "i")
                assert errors == [(e["extensions"]["code"], e["message"]) for e in http["errors"]]
                assert {code for code, _ in errors} == {"GRAPHQL_VALIDATION_FAILED"}


async def test_persisted_only_mode_and_apq_apply(db: str, manifest: str) -> None:
    summary = dashboard_operations()["DirectorSummary"]
    by_hash = {"persistedQuery": {"version": 1, "sha256Hash": summary.sha256}}
    settings = settings_for(db, None, persisted_manifest=manifest, persisted_only=True)
    async with serving(settings, MovableClock(NOW)) as live:
        await refresh_all(live.services)
        async with ws_session(live.ws_url, live.token(DANA)) as ws:
            await ws.subscribe("x", ME)
            assert await refused(ws, "x") == [
                ("PERSISTED_QUERY_NOT_IN_LIST", "This document is not in the persisted-query list.")
            ]
            await ws.subscribe("m", "", extensions=by_hash)
            payload = await result(ws, "m")
            assert payload == await over_http(live, summary.body)
            assert payload["data"]["me"]["id"] == DANA
    # APQ: an unknown hash is PersistedQueryNotFound; the document with its hash registers
    # it, for HTTP as well.
    me_hash = {"persistedQuery": {"version": 1, "sha256Hash": sha256_hex(ME)}}
    async with (
        serving(settings_for(db, None), MovableClock(NOW)) as live,
        ws_session(live.ws_url, live.token(DANA)) as ws,
    ):
        await ws.subscribe("miss", "", extensions=me_hash)
        assert await refused(ws, "miss") == [
            ("PERSISTED_QUERY_NOT_FOUND", "PersistedQueryNotFound")
        ]
        await ws.subscribe("register", ME, extensions=me_hash)
        assert (await result(ws, "register"))["data"]["me"]["id"] == DANA
        await ws.subscribe("hit", "", extensions=me_hash)
        assert (await result(ws, "hit"))["data"]["me"]["id"] == DANA
        async with httpx.AsyncClient(base_url=live.url) as http:
            response = await http.post(
                "/graphql", json={"extensions": me_hash}, headers=live.auth(DANA)
            )
        assert response.json() == {"data": {"me": {"id": DANA, "name": "Dana Director"}}}


URQL_ACCEPT = (
    "application/graphql-response+json, application/graphql+json, application/json, "
    "text/event-stream, multipart/mixed"
)


@pytest.mark.parametrize(
    "accept",
    [
        URQL_ACCEPT,
        "text/event-stream;q=0, application/json",
        "application/json;q=0.9, text/event-stream;q=0.1",
    ],
)
async def test_an_accept_that_does_not_prefer_the_event_stream_gets_json(
    live: Served, accept: str
) -> None:
    async with httpx.AsyncClient(base_url=live.url) as http:
        response = await http.post(
            "/graphql", json={"query": ME}, headers={**live.auth(DANA), "Accept": accept}
        )
    assert response.status_code == 200
    assert response.headers["content-type"].split(";")[0] in (
        "application/graphql-response+json",
        "application/json",
    )
    assert response.json() == {"data": {"me": {"id": DANA, "name": "Dana Director"}}}


async def test_an_event_stream_at_q_0_is_never_streamed(live: Served) -> None:
    """`text/event-stream;q=0` alone allows no type the gateway serves: 406, in JSON."""
    async with httpx.AsyncClient(base_url=live.url) as http:
        response = await http.post(
            "/graphql",
            json={"query": ME},
            headers={**live.auth(DANA), "Accept": "text/event-stream;q=0"},
        )
    assert (response.status_code, response.headers["content-type"]) == (406, "application/json")
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


async def test_a_query_preferring_the_event_stream_is_told_where_to_go(live: Served) -> None:
    accept = "text/event-stream, application/json;q=0.5"
    async with (
        httpx.AsyncClient(base_url=live.url) as http,
        http.stream(
            "POST", "/graphql", json={"query": ME}, headers={**live.auth(DANA), "Accept": accept}
        ) as response,
    ):
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        body = (await response.aread()).decode()
    event, complete = body.strip().split("\n\n")
    assert event.startswith("event: next\ndata: ")
    [error] = json.loads(event.split("data: ", 1)[1])["errors"]
    assert (error["extensions"]["code"], error["message"]) == (
        "BAD_REQUEST",
        "Only subscriptions are served as an event stream; send queries and mutations with "
        "Accept: application/graphql-response+json, or over WebSocket.",
    )
    assert complete == "event: complete\ndata:"


def answer_misses(outcome: str) -> float:
    value = REGISTRY.get_sample_value("gateway_answer_misses_total", {"outcome": outcome})
    return value or 0.0


async def subscribe_raw(ws: WS, operation_id: str, op, variables: dict | None) -> str:
    """The `next` message of a persisted query, as the exact text received; then `complete`."""
    payload = {
        "operationName": op.name,
        "variables": variables,
        "extensions": {"persistedQuery": {"version": 1, "sha256Hash": op.sha256}},
    }
    await ws.send({"id": operation_id, "type": "subscribe", "payload": payload})
    text = await asyncio.wait_for(ws.socket.recv(), CEILING_S)
    assert await ws.receive() == {"id": operation_id, "type": "complete"}
    return text  # type: ignore[no-any-return]


async def test_a_query_is_answered_from_the_gets_stored_answer_per_caller(
    db: str, redis_url: str, manifest: str
) -> None:
    settings = settings_for(db, redis_url, persisted_manifest=manifest)
    async with serving(settings, MovableClock(NOW)) as live:
        await refresh_all(live.services)
        by_get = {}
        async with httpx.AsyncClient(base_url=live.url) as http:
            for user in (DANA, DREW):
                response = await http.get(
                    "/graphql", params=params(LIST_OP), headers=live.auth(user)
                )
                assert response.status_code == 200
                assert "errors" not in response.json()
                by_get[user] = response.text
        assert by_get[DANA] != by_get[DREW]
        for user in (DANA, DREW):
            executed = answer_misses("executed")
            async with ws_session(live.ws_url, live.token(user)) as ws:
                text = await subscribe_raw(ws, "list", LIST_OP, None)
            # The stored bytes spliced into the message, byte for byte; nothing executed.
            assert text == '{"id":"list","type":"next","payload":' + by_get[user] + "}"
            assert answer_misses("executed") == executed
        # A miss over WebSocket is executed once and stored: the GET is then a hit.
        variables = {"id": 101}
        executed = answer_misses("executed")
        async with ws_session(live.ws_url, live.token(DANA)) as ws:
            text = await subscribe_raw(ws, "detail", DETAIL_OP, variables)
        assert answer_misses("executed") == executed + 1
        async with httpx.AsyncClient(base_url=live.url) as http:
            response = await http.get(
                "/graphql", params=params(DETAIL_OP, variables), headers=live.auth(DANA)
            )
        assert answer_misses("executed") == executed + 1
        assert text == '{"id":"detail","type":"next","payload":' + response.text + "}"
        assert response.json()["data"]["cohort"]["id"] == 101
