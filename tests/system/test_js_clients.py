"""Real JavaScript clients (tests/js), each configured as its own docs show, against a live
`gateway serve`: urql's default client, its persisted exchange (GET for hashed queries) and
its subscription exchange over graphql-ws; graphql-request; Apollo's BatchHttpLink."""

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from gateway.auth import mint_token
from gateway.documents.persisted import sha256_hex
from gateway.settings import Settings
from tests.support.dataset import DANA
from tests.support.live_gateway import live_gateway
from tests.support.node import node_binary, run_node

URQL_ACCEPT = (
    "application/graphql-response+json, application/graphql+json, application/json, "
    "text/event-stream, multipart/mixed"
)
GR_TYPE = "application/graphql-response+json; charset=utf-8"
SUMMARY = {
    "me": {
        "id": DANA,
        "summary": {"totalCohorts": 3, "activeCohorts": 2, "__typename": "DirectorSummary"},
        "__typename": "Director",
    }
}
BATCH_REFUSED = "Batched operations are not accepted: send each operation in a request of its own."


@pytest.fixture(scope="module")
def backend() -> str:
    return "sqlite"


@pytest.fixture(scope="module")
def gateway(dataset_url: str) -> Iterator[tuple[str, str]]:
    """(node, base URL of one `gateway serve` shared by the module's clients)."""
    node = node_binary()
    with live_gateway(dataset_url) as url:
        yield node, url


def run(gateway: tuple[str, str], script: str, *args: str) -> dict[str, Any]:
    node, url = gateway
    token = mint_token(Settings(), DANA, "director", 600)
    return run_node(node, script, *args, GATEWAY_URL=url, GATEWAY_TOKEN=token)  # type: ignore[no-any-return]


def params(exchange: dict[str, Any]) -> dict[str, str]:
    return {k: v for k, [v] in parse_qs(urlsplit(exchange["url"]).query).items()}


def test_urql_default_client(gateway: tuple[str, str]) -> None:
    """urql's default Accept lists text/event-stream: it gets JSON, not the event stream.
    Queries go out as GET (urql's `preferGetMethod: "within-url-limit"`), mutations as POST."""
    out = run(gateway, "urql.mjs", "default")
    assert [(e["method"], e["status"], e["accept"]) for e in out["exchanges"]] == [
        ("GET", 200, URQL_ACCEPT),
        ("GET", 200, URQL_ACCEPT),
        ("POST", 200, URQL_ACCEPT),
    ]
    assert {e["headers"]["content-type"] for e in out["exchanges"]} == {GR_TYPE}
    assert out["results"] == [
        {"data": SUMMARY},
        {"data": SUMMARY},
        {
            "data": {
                "requestRefresh": {
                    "accepted": True,
                    "target": "cohort:101",
                    "__typename": "RefreshRequest",
                }
            }
        },
    ]


def test_urql_persisted_exchange_registers_then_hits(gateway: tuple[str, str]) -> None:
    out = run(gateway, "urql.mjs", "persisted")
    miss, register, *hits = out["exchanges"]
    # 1. The hash alone, by GET: PersistedQueryNotFound, 200 and never cached.
    sha256 = json.loads(params(miss)["extensions"])["persistedQuery"]["sha256Hash"]
    assert "query" not in params(miss)
    assert (miss["method"], miss["status"], miss["headers"]["cache-control"]) == (
        "GET",
        200,
        "no-store",
    )
    assert [e["extensions"]["code"] for e in json.loads(miss["response"])["errors"]] == [
        "PERSISTED_QUERY_NOT_FOUND"
    ]
    # 2. The document with its hash (GET again, within urql's URL limit): registered.
    sent = params(register)
    assert register["method"] == "GET"
    assert sha256_hex(sent["query"]) == sha256
    assert json.loads(sent["extensions"])["persistedQuery"]["sha256Hash"] == sha256
    assert json.loads(register["response"]) == {"data": SUMMARY}
    # 3. Then the hash alone hits, with the cache headers of a persisted GET.
    assert len(hits) == 2
    for hit in hits:
        assert ("query" not in params(hit), hit["status"]) == (True, 200)
        assert hit["headers"]["cache-control"].startswith("private, max-age=")
        assert hit["headers"]["etag"].endswith('-gr"')
        assert json.loads(hit["response"]) == {"data": SUMMARY}
    assert out["results"] == [{"data": SUMMARY}] * 3


def test_urql_subscription_exchange_over_graphql_ws(gateway: tuple[str, str]) -> None:
    out = run(gateway, "urql.mjs", "subscription")
    assert out["exchanges"] == []  # nothing over HTTP
    assert out["results"] == [
        {"data": {"dashboard": {"changedCohortIds": [], "summary": {"totalCohorts": 3}}}}
    ]


def test_graphql_request(gateway: tuple[str, str]) -> None:
    out = run(gateway, "graphql_request.mjs")
    assert [(e["method"], e["status"], e["responseType"]) for e in out["exchanges"]] == [
        ("POST", 200, GR_TYPE),
        ("POST", 400, GR_TYPE),
        ("POST", 200, GR_TYPE),
    ]
    assert {e["accept"] for e in out["exchanges"]} == {
        "application/graphql-response+json, application/json"
    }
    cohort, refused, mutation = out["results"]
    assert cohort == {
        "data": {"cohort": {"id": 101, "name": "Analytics Nov", "seats": {"utilization": 0.75}}}
    }
    # A refusal reaches graphql-request's ClientError with its code.
    assert refused["status"] == 400
    assert [(e["message"], e["extensions"]["code"]) for e in refused["errors"]] == [
        ("The query has 16 aliases; the limit is 15.", "TOO_MANY_ALIASES")
    ]
    assert mutation == {"data": {"requestRefresh": {"accepted": True, "target": "cohort:102"}}}


def test_batch_http_link_reports_batching_disabled_per_operation(
    gateway: tuple[str, str],
) -> None:
    out = run(gateway, "batch.mjs")
    [exchange] = out["exchanges"]
    assert [op["operationName"] for op in exchange["body"]] == ["One", "Two"]
    assert (exchange["status"], exchange["contentType"]) == (400, GR_TYPE)
    assert [[e["extensions"]["code"] for e in r["errors"]] for r in exchange["response"]] == [
        ["BATCHING_DISABLED"],
        ["BATCHING_DISABLED"],
    ]
    # Each operation fails with the gateway's reason, not "results with length 1".
    expected = {
        "data": None,
        "errorClass": "CombinedGraphQLErrors",
        "message": BATCH_REFUSED,
        "errors": [{"message": BATCH_REFUSED, "code": "BATCHING_DISABLED"}],
    }
    assert out["outcomes"] == [expected, expected]
