"""A real Apollo Client 4 (Node, tests/js) against the gateway under uvicorn: the
persisted-queries link with GET for hashed queries works unmodified, and refusals reach it
as GraphQL errors with their code; graphql-http's audit of the GraphQL-over-HTTP spec."""

import json
from pathlib import Path
from typing import Any
from unittest.mock import ANY
from urllib.parse import parse_qs, urlsplit

import pytest

from gateway.auth import mint_token
from gateway.cli import main as gateway_cli
from gateway.documents.dashboard import OPERATIONS_DIR, dashboard_operations
from gateway.settings import Settings
from tests.support.dataset import DANA
from tests.support.live_gateway import access_log, live_gateway
from tests.support.node import node_binary, run_node

SUMMARY = dashboard_operations()["DirectorSummary"]
DETAIL = dashboard_operations()["CohortDetail"]
APOLLO_ACCEPT = "application/graphql-response+json,application/json;q=0.9"
GR_TYPE = "application/graphql-response+json; charset=utf-8"
# graphql-http 1.23.1's server audits (tests/js/package-lock.json pins it).
AUDITS = 61


@pytest.fixture(scope="module")
def backend() -> str:
    """The protocol does not depend on the database: one backend is enough."""
    return "sqlite"


@pytest.fixture(scope="module")
def node() -> str:
    return node_binary()


def dana_token() -> str:
    return mint_token(Settings(), DANA, "director", 600)


def run_apollo(node: str, url: str, operation: str, variables: dict[str, Any]) -> dict[str, Any]:
    path = str(OPERATIONS_DIR / f"{operation}.graphql")
    return run_node(
        node, "apq.mjs", path, json.dumps(variables), GATEWAY_URL=url, GATEWAY_TOKEN=dana_token()
    )


def hashed_get(exchange: dict[str, Any]) -> tuple[str, dict[str, Any], str]:
    """(operationName, variables, sha256) of a GET the link sent with only the hash."""
    assert exchange["method"] == "GET"
    params = {k: v for k, [v] in parse_qs(urlsplit(exchange["url"]).query).items()}
    assert "query" not in params
    extensions = json.loads(params["extensions"])
    assert extensions["persistedQuery"]["version"] == 1
    return (
        params["operationName"],
        json.loads(params["variables"]),
        extensions["persistedQuery"]["sha256Hash"],
    )


def check_summary(data: dict[str, Any]) -> None:
    me = data["me"]
    assert (me["id"], me["name"], me["email"]) == (DANA, "Dana Director", "dana@example.test")
    summary = me["summary"]
    assert (summary["totalCohorts"], summary["activeCohorts"]) == (3, 2)
    assert (me["__typename"], summary["__typename"]) == ("Director", "DirectorSummary")


async def test_apq_miss_register_hit_with_apollo_client(dataset_url: str, node: str) -> None:
    with live_gateway(dataset_url) as url:
        run = run_apollo(node, url, "DirectorSummary", {})
        log = access_log(url)
    miss, register, hit = run["exchanges"]

    # 1. GET with the hash only: unknown, so PersistedQueryNotFound, never cached (200 under
    # application/graphql-response+json too, as Apollo Server answers it: README, Clients).
    assert hashed_get(miss) == ("DirectorSummary", {}, SUMMARY.sha256)
    assert (miss["status"], miss["headers"]["cache-control"]) == (200, "no-store")
    assert miss["headers"]["content-type"] == GR_TYPE
    assert json.loads(miss["response"]) == {
        "errors": [
            {
                "message": "PersistedQueryNotFound",
                "extensions": {"code": "PERSISTED_QUERY_NOT_FOUND", "requestId": ANY},
            }
        ]
    }
    # 2. POST with the document and its hash: registered and answered. Apollo Client
    # sends exactly the manifest's body, so their hashes agree.
    assert register["method"] == "POST"
    body = json.loads(register["body"])
    assert body["query"] == SUMMARY.body
    assert body["extensions"]["persistedQuery"] == {"version": 1, "sha256Hash": SUMMARY.sha256}
    assert register["status"] == 200
    check_summary(json.loads(register["response"])["data"])
    # 3. The second run: a GET with the hash only now hits, cacheable.
    assert hashed_get(hit) == ("DirectorSummary", {}, SUMMARY.sha256)
    assert hit["status"] == 200
    assert hit["headers"]["vary"] == "Authorization, Accept, Accept-Encoding"
    assert hit["headers"]["cache-control"].startswith("private, max-age=")
    assert hit["headers"]["etag"].startswith('"')
    check_summary(json.loads(hit["response"])["data"])

    assert run["results"][0] == run["results"][1]
    check_summary(run["results"][1])
    # The gateway saw the same three requests, and logged each as separate fields.
    assert [(r["method"], r["status"], r["operation"]) for r in log] == [
        ("GET", 200, "DirectorSummary"),
        ("POST", 200, "DirectorSummary"),
        ("GET", 200, "DirectorSummary"),
    ]
    assert [r["request_id"] for r in log] == [
        e["headers"]["x-request-id"] for e in run["exchanges"]
    ]
    assert all(isinstance(r["duration_ms"], float) and r["duration_ms"] > 0 for r in log)


async def test_manifest_hits_without_registration_in_persisted_only_mode(
    dataset_url: str, node: str, tmp_path: Path
) -> None:
    manifest = tmp_path / "manifest.json"
    assert gateway_cli(["manifest", "build", "--output", str(manifest)]) == 0
    with live_gateway(dataset_url, persisted_manifest=str(manifest), persisted_only="true") as url:
        run = run_apollo(node, url, "CohortDetail", {"id": 101})
    assert [(e["method"], e["status"]) for e in run["exchanges"]] == [("GET", 200), ("GET", 200)]
    for exchange in run["exchanges"]:
        assert hashed_get(exchange) == ("CohortDetail", {"id": 101}, DETAIL.sha256)
    cohort = run["results"][1]["cohort"]
    assert (cohort["id"], cohort["name"], cohort["seats"]["utilization"]) == (
        101,
        "Analytics Nov",
        0.75,
    )


ALIASES = "query Aliases { " + " ".join(f"a{i}: me {{ id }}" for i in range(16)) + " }"


async def test_apollo_client_reads_refusals_as_graphql_errors(dataset_url: str, node: str) -> None:
    """Under application/graphql-response+json (what Apollo Client 4 asks for) a 401 or 400
    body is read as GraphQL errors, so the code is in `error.errors`, not in `bodyText`."""
    cases = [
        ("", "query Me { me { id } }", 401, "UNAUTHENTICATED", "Missing Authorization header."),
        (
            "not-a-jwt",
            "query Me { me { id } }",
            401,
            "UNAUTHENTICATED",
            "Invalid token: Not enough segments.",
        ),
        (
            dana_token(),
            ALIASES,
            400,
            "TOO_MANY_ALIASES",
            "The query has 16 aliases; the limit is 15.",
        ),
    ]
    with live_gateway(dataset_url) as url:
        for token, query, status, code, message in cases:
            run = run_node(node, "errors.mjs", query, GATEWAY_URL=url, GATEWAY_TOKEN=token)
            assert run["exchanges"] == [
                {"accept": APOLLO_ACCEPT, "status": status, "contentType": GR_TYPE}
            ]
            assert (run["data"], run["errorClass"]) == (None, "CombinedGraphQLErrors")
            assert run["graphQLErrors"] == [
                {"message": message, "extensions": {"code": code, "requestId": ANY}}
            ]


async def test_graphql_over_http_audit_passes(dataset_url: str, node: str) -> None:
    """graphql-http's auditServer, each request with a director's token: every audit ok
    (no error, no warning, not even a notice)."""
    with live_gateway(dataset_url) as url:
        results = run_node(node, "audit.mjs", GATEWAY_URL=url, GATEWAY_TOKEN=dana_token())
    assert len(results) == AUDITS
    assert [r for r in results if r["status"] != "ok"] == []
