"""GraphQL over HTTP media types: application/graphql-response+json with the spec's status
codes, application/json for legacy clients, 406 otherwise; the fast path, ETags and 304s
under both; every refusal with its requestId."""

import json
from typing import Any
from unittest.mock import ANY

import httpx
import pytest

from gateway.cache.answers import etag_for
from gateway.http.media import (
    ACCEPT_MEMO_ENTRIES,
    AcceptMemo,
    negotiate,
    prefers_event_stream,
)
from gateway.settings import Settings
from tests.support.cycles import prewarm
from tests.support.dataset import DANA
from tests.support.fast_path import CACHE_HEADERS, SUMMARY_OP, get, hits
from tests.support.gateway import StatementCounter, services_of, settings_for
from tests.support.gateway_client import GatewayClient, gateway_client

GR = "application/graphql-response+json"
GR_TYPE = "application/graphql-response+json; charset=utf-8"
JSON = "application/json"
APOLLO_ACCEPT = "application/graphql-response+json,application/json;q=0.9"
ME = "query Me { me { id name } }"
DANA_ME = {"me": {"id": DANA, "name": "Dana Director"}}


@pytest.mark.parametrize(
    ("accept", "chosen"),
    [
        (None, JSON),
        ("", JSON),
        ("*/*", JSON),
        ("application/*", JSON),
        (JSON, JSON),
        ("application/json; charset=utf-8", JSON),
        (GR, GR),
        (APOLLO_ACCEPT, GR),
        (f"{JSON}, {GR}", GR),
        (f"{GR};q=0.5, {JSON}", JSON),
        (f"{JSON};q=0, */*", GR),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", JSON),
        ("text/html", None),
        (f"{GR};q=0, {JSON};q=0", None),
        ("application/xml, text/*", None),
    ],
)
def test_negotiation(accept: str | None, chosen: str | None) -> None:
    media = negotiate(accept)
    assert (media.name if media else None) == chosen


URQL_ACCEPT = (
    "application/graphql-response+json, application/graphql+json, application/json, "
    "text/event-stream, multipart/mixed"
)
APOLLO_IOS_ACCEPT = (
    "multipart/mixed;deferSpec=20220824,application/graphql-response+json,application/json"
)


@pytest.mark.parametrize(
    ("accept", "stream", "chosen"),
    [
        (URQL_ACCEPT, False, GR),
        ("text/event-stream", True, None),
        ("text/event-stream;q=0", False, None),
        ("text/event-stream;q=0, application/json", False, JSON),
        ("application/json;q=0.9, text/event-stream;q=0.1", False, JSON),
        ("application/json;q=0.1, text/event-stream;q=0.9", True, JSON),
        ("text/event-stream, application/json", False, JSON),  # a tie goes to JSON
        ("text/event-stream, */*;q=0.5", True, JSON),
        ("text/event-stream;q=0.5, */*", False, JSON),
        ("TEXT/EVENT-STREAM", True, None),
        ("text/*", False, None),
        (APOLLO_IOS_ACCEPT, False, GR),
    ],
)
def test_event_stream_only_when_preferred(accept: str, stream: bool, chosen: str | None) -> None:
    """As graphql-sse's server decides: the stream only when preferred to every JSON type the
    client accepts; the fast path's memo hands such a request on (None)."""
    assert prefers_event_stream(accept) is stream
    media = negotiate(accept)
    assert (media.name if media else None) == chosen
    memo = AcceptMemo()[accept.encode()]
    assert (memo.name if memo else None) == (None if stream else chosen)


def test_accept_memo_is_bounded() -> None:
    memo = AcceptMemo()
    for i in range(ACCEPT_MEMO_ENTRIES * 3):
        assert memo[f"application/json, text/x-{i}".encode()].name == JSON
        assert len(memo) <= ACCEPT_MEMO_ENTRIES
    long = b"application/json, " + b"x" * 1000
    assert memo[long].name == JSON
    assert long not in memo
    assert memo[None].name == JSON and None in memo


@pytest.fixture(scope="module")
def backend() -> str:
    """Media types do not depend on the database: one backend is enough."""
    return "sqlite"


@pytest.fixture(scope="module")
async def api(dataset_url: str):
    async with gateway_client(Settings(database_url=dataset_url)) as client:
        yield client


async def post(api: GatewayClient, body: Any, accept: str | None, **headers: str):
    if accept is not None:
        headers["Accept"] = accept
    return await api.http.post("/graphql", json=body, headers={**api.auth(DANA), **headers})


def codes(response: httpx.Response) -> list[str]:
    return [e["extensions"]["code"] for e in response.json()["errors"]]


async def test_the_same_answer_under_both_media_types(api: GatewayClient) -> None:
    for accept, content_type in [(GR, GR_TYPE), (APOLLO_ACCEPT, GR_TYPE), (JSON, JSON)]:
        response = await post(api, {"query": ME}, accept)
        assert (response.status_code, response.headers["content-type"]) == (200, content_type)
        assert response.json() == {"data": DANA_ME}


# (document, variables, code): execution never starts for any of them.
REQUEST_ERRORS = [
    ("{", None, "GRAPHQL_PARSE_FAILED"),
    ("{ noSuchField }", None, "GRAPHQL_VALIDATION_FAILED"),
    ("query C($id: Int!) { cohort(id: $id) { id } }", {"id": "x"}, "BAD_USER_INPUT"),
    ("query C($id: Int!) { cohort(id: $id) { id } }", {}, "BAD_USER_INPUT"),
]


@pytest.mark.parametrize(("query", "variables", "code"), REQUEST_ERRORS)
async def test_request_errors_are_400_without_data_under_graphql_response_json(
    api: GatewayClient, query: str, variables: dict | None, code: str
) -> None:
    body = {"query": query, "variables": variables}
    spec = await post(api, body, GR)
    assert (spec.status_code, spec.headers["content-type"]) == (400, GR_TYPE)
    assert "data" not in spec.json()
    assert codes(spec) == [code]
    legacy = await post(api, body, JSON)
    assert (legacy.status_code, legacy.headers["content-type"]) == (200, JSON)
    assert legacy.json()["data"] is None
    assert codes(legacy) == [code]


async def test_field_errors_keep_200_and_data_under_both(api: GatewayClient) -> None:
    query = "query C { me { id } cohort(id: 103) { id } }"  # 103 is Drew's, not Dana's
    for accept, content_type in [(GR, GR_TYPE), (JSON, JSON)]:
        response = await post(api, {"query": query}, accept)
        assert (response.status_code, response.headers["content-type"]) == (200, content_type)
        assert response.json()["data"] is None  # cohort is non-null: the error bubbles up
        assert codes(response) == ["NOT_FOUND"]
        assert response.json()["errors"][0]["path"] == ["cohort"]


async def test_refusals_carry_their_code_and_request_id_under_both(api: GatewayClient) -> None:
    for accept, content_type in [(GR, GR_TYPE), (JSON, JSON)]:
        headers = {"Accept": accept, "X-Request-Id": "req-1"}
        unauthenticated = await api.http.post("/graphql", json={"query": ME}, headers=headers)
        assert unauthenticated.status_code == 401
        assert unauthenticated.headers["content-type"] == content_type
        assert unauthenticated.json() == {
            "errors": [
                {
                    "message": "Missing Authorization header.",
                    "extensions": {"code": "UNAUTHENTICATED", "requestId": "req-1"},
                }
            ]
        }
        limited = await api.http.post(
            "/graphql",
            json={"query": "{ " + " ".join(f"a{i}: me {{ id }}" for i in range(16)) + " }"},
            headers={**headers, **api.auth(DANA)},
        )
        assert (limited.status_code, limited.headers["content-type"]) == (400, content_type)
        assert limited.json()["errors"][0]["extensions"] == {
            "code": "TOO_MANY_ALIASES",
            "requestId": "req-1",
        }


async def test_405_and_406_carry_a_request_id(api: GatewayClient) -> None:
    for method in ("PUT", "DELETE", "PATCH"):
        response = await api.http.request(method, "/graphql", headers={"X-Request-Id": "r-405"})
        assert (response.status_code, response.headers["allow"]) == (405, "GET, POST")
        assert response.headers["x-request-id"] == "r-405"
        assert response.json() == {
            "errors": [
                {
                    "message": "Use GET or POST.",
                    "extensions": {"code": "BAD_REQUEST", "requestId": "r-405"},
                }
            ]
        }
    for request in (
        api.http.build_request("POST", "/graphql", json={"query": ME}),
        api.http.build_request("GET", "/graphql", params={"query": ME}),
    ):
        request.headers.update({**api.auth(DANA), "Accept": "text/plain", "X-Request-Id": "r-406"})
        response = await api.http.send(request)
        assert (response.status_code, response.headers["content-type"]) == (406, JSON)
        assert response.json() == {
            "errors": [
                {
                    "message": f"Accept must allow {GR} or {JSON}.",
                    "extensions": {"code": "BAD_REQUEST", "requestId": "r-406"},
                }
            ]
        }


KOTLIN_ACCEPT = (
    "multipart/mixed;deferSpec=20220824, application/graphql-response+json, application/json"
)


@pytest.mark.parametrize(
    "accept", [GR, JSON, None, APOLLO_ACCEPT, URQL_ACCEPT, APOLLO_IOS_ACCEPT, KOTLIN_ACCEPT]
)
async def test_unknown_persisted_query_is_200_under_every_accept(
    api: GatewayClient, accept: str | None
) -> None:
    """As Apollo Server answers it: Apollo iOS fails any non-2xx before its APQ interceptor
    can read PersistedQueryNotFound and resend the document (README, Clients)."""
    extensions = json.dumps({"persistedQuery": {"version": 1, "sha256Hash": "0" * 64}})
    headers = {**api.auth(DANA), **({"Accept": accept} if accept is not None else {})}
    get_miss = await api.http.get("/graphql", params={"extensions": extensions}, headers=headers)
    post_miss = await api.http.post(
        "/graphql", json={"extensions": json.loads(extensions)}, headers=headers
    )
    content_type = JSON if accept in (JSON, None) else GR_TYPE
    for response in (get_miss, post_miss):
        assert (response.status_code, response.headers["cache-control"]) == (200, "no-store")
        assert response.headers["content-type"] == content_type
        assert response.json() == {
            "errors": [
                {
                    "message": "PersistedQueryNotFound",
                    "extensions": {"code": "PERSISTED_QUERY_NOT_FOUND", "requestId": ANY},
                }
            ]
        }


async def test_fast_path_answers_in_the_requested_media_type(
    dataset_url: str, redis_url: str, manifest: str, fast: GatewayClient
) -> None:
    await prewarm(services_of(fast))
    settings = settings_for(
        dataset_url, redis_url, persisted_manifest=manifest, response_cache_enabled=False
    )
    async with gateway_client(settings, fast.clock) as executed_api:
        seen: dict[str, httpx.Response] = {}
        for accept, content_type in [(GR, GR_TYPE), (JSON, JSON), (APOLLO_ACCEPT, GR_TYPE)]:
            before = hits()
            with StatementCounter(fast) as counter:
                cached = await get(fast, SUMMARY_OP, DANA, Accept=accept)
            assert (counter.count, hits()) == (0, before + 1)  # the stored bytes
            executed = await get(executed_api, SUMMARY_OP, DANA, Accept=accept)
            assert cached.status_code == executed.status_code == 200
            assert cached.headers["content-type"] == content_type
            assert cached.content == executed.content
            assert {h: cached.headers[h] for h in CACHE_HEADERS} == {
                h: executed.headers[h] for h in CACHE_HEADERS
            }
            assert cached.headers["vary"] == "Authorization, Accept, Accept-Encoding"
            seen[accept] = cached
    json_etag = etag_for(seen[JSON].content)
    assert seen[JSON].headers["etag"] == json_etag
    assert seen[GR].headers["etag"] == json_etag[:-1] + '-gr"'
    assert seen[APOLLO_ACCEPT].headers["etag"] == seen[GR].headers["etag"]
    # A validator answers 304 only for its own representation: never one media type's
    # bytes under the other's content type.
    for accept in (GR, JSON):
        etag = seen[accept].headers["etag"]
        same = await get(fast, SUMMARY_OP, DANA, Accept=accept, **{"If-None-Match": etag})
        assert (same.status_code, same.content, same.headers["etag"]) == (304, b"", etag)
        other = GR if accept == JSON else JSON
        crossed = await get(fast, SUMMARY_OP, DANA, Accept=other, **{"If-None-Match": etag})
        assert crossed.status_code == 200
        assert crossed.headers["content-type"] == seen[other].headers["content-type"]
        assert crossed.content == seen[other].content
    # An Accept the gateway cannot satisfy is not answered from the store.
    refused = await get(fast, SUMMARY_OP, DANA, Accept="text/html")
    assert (refused.status_code, refused.headers["content-type"]) == (406, JSON)
