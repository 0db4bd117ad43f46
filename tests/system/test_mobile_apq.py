"""The HTTP exchanges of the mobile apps' APQ interceptors, replayed against a live `gateway
serve`, as their sources (Apollo iOS 1.25 and 2.4, Apollo Kotlin 4.4) build them: their
headers, their GET/POST choices, and their reading of the status code — Apollo iOS fails
any non-2xx response in its ResponseCodeInterceptor before the APQ interceptor can see
PersistedQueryNotFound; Apollo Kotlin parses a non-2xx body only when its type is
application/graphql-response+json. Each registers its document, then hits."""

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from gateway.auth import mint_token
from gateway.documents.dashboard import dashboard_operations
from gateway.settings import Settings
from tests.support.dataset import DANA
from tests.support.live_gateway import access_log, live_gateway
from tests.support.subscription_clients import WAIT_S

OPERATIONS = dashboard_operations()
# Apollo iOS: JSONRequest (1.x: RequestChainNetworkTransport.constructRequest) for queries.
IOS_ACCEPT = "multipart/mixed;deferSpec=20220824,application/graphql-response+json,application/json"
# Apollo Kotlin: DefaultHttpRequestComposer.HEADER_ACCEPT_VALUE_DEFER.
KOTLIN_ACCEPT = (
    "multipart/mixed;deferSpec=20220824, application/graphql-response+json, application/json"
)
NOT_FOUND = "PersistedQueryNotFound"
# What URLComponents leaves unencoded in a query value, less `+` and `;` (Apollo iOS encodes
# those too), `&` and `=`.
IOS_QUERY_SAFE = "!$'()*,/:?@-._~"


class ResponseCodeError(Exception):
    """Apollo iOS's ResponseCodeInterceptor: any status outside 200..<300 fails the request."""


class ApolloHttpException(Exception):
    """Apollo Kotlin's HttpNetworkTransport: a non-2xx body not typed
    application/graphql-response+json is not read."""


def ios_reads(response: httpx.Response) -> dict[str, Any]:
    if not 200 <= response.status_code < 300:
        raise ResponseCodeError(f"Received a {response.status_code} error.")
    return response.json()  # type: ignore[no-any-return]


def kotlin_reads(response: httpx.Response) -> dict[str, Any]:
    graphql_response = (
        response.headers.get("content-type", "")
        .lower()
        .startswith("application/graphql-response+json")
    )
    if not 200 <= response.status_code < 300 and not graphql_response:
        raise ApolloHttpException(f"Http request failed with status code `{response.status_code}`")
    return response.json()  # type: ignore[no-any-return]


def not_found(body: dict[str, Any], ignore_case: bool = False) -> bool:
    """Both interceptors look at the errors' messages, not their codes."""
    messages = [e.get("message", "") for e in body.get("errors") or ()]
    if ignore_case:
        return any(m.lower() == NOT_FOUND.lower() for m in messages)
    return NOT_FOUND in messages


def ios_get_url(body: dict[str, Any]) -> str:
    """URLQueryParameterTransformer: the body's keys sorted, objects as JSON with sorted keys,
    percent-encoded by URLComponents and then `+` and `;` as well."""
    items = []
    for key in sorted(body):
        value = body[key]
        text = (
            json.dumps(value, sort_keys=True, separators=(",", ":"))
            if isinstance(value, dict)
            else value
        )
        items.append(f"{key}={quote(text, safe=IOS_QUERY_SAFE)}")
    return "/graphql?" + "&".join(items)


def kotlin_get_url(params: dict[str, str]) -> str:
    """DefaultHttpRequestComposer.appendQueryParameters: in insertion order, each encoded."""
    return "/graphql?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in params.items())


@pytest.fixture(scope="module")
def backend() -> str:
    return "sqlite"


@pytest.fixture(scope="module")
def gateway(dataset_url: str) -> Iterator[str]:
    with live_gateway(dataset_url) as url:
        yield url


def bearer() -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(Settings(), DANA, 'director', 600)}"}


def fetch_ios_1(http: httpx.Client, name: str) -> tuple[dict[str, Any], list[httpx.Response]]:
    """Apollo iOS 1.25: RequestChainNetworkTransport(autoPersistQueries: true,
    useGETForPersistedQueryRetry: true) — the hash by GET, and the retry by GET too."""
    operation = OPERATIONS[name]
    headers = {
        **bearer(),
        "X-APOLLO-OPERATION-NAME": name,
        "X-APOLLO-OPERATION-TYPE": "query",
        "X-APOLLO-OPERATION-ID": operation.sha256,
        "apollographql-client-version": "3.2+41",
        "apollographql-client-name": "com.example.dashboard-apollo-ios",
        "Accept": IOS_ACCEPT,
    }
    extensions = {
        "persistedQuery": {"sha256Hash": operation.sha256, "version": 1},
        "clientLibrary": {"name": "apollo-ios", "version": "1.25.7"},
    }
    body = {"operationName": name, "extensions": extensions}
    first = http.get(ios_get_url(body), headers=headers)
    result = ios_reads(first)
    if not not_found(result):
        return result, [first]
    retry = http.get(ios_get_url({**body, "query": operation.body}), headers=headers)
    return ios_reads(retry), [first, retry]


def fetch_ios_2(
    http: httpx.Client, name: str, variables: dict[str, Any]
) -> tuple[dict[str, Any], list[httpx.Response]]:
    """Apollo iOS 2.4: JSONRequest with apqConfig(autoPersistQueries: true) and
    useGETForQueries: true, client awareness on — the hash by GET (Apollo-Require-Preflight),
    the retry by POST (useGETForPersistedQueryRetry is false by default)."""
    operation = OPERATIONS[name]
    headers = {
        **bearer(),
        "apollographql-client-name": "com.example.dashboard-apollo-ios",
        "apollographql-client-version": "3.2+41",
        "Accept": IOS_ACCEPT,
    }
    extensions = {
        "persistedQuery": {"sha256Hash": operation.sha256, "version": 1},
        "clientLibrary": {"name": "apollo-ios", "version": "2.4.0"},
    }
    body = {"operationName": name, "variables": variables, "extensions": extensions}
    first = http.get(ios_get_url(body), headers={**headers, "Apollo-Require-Preflight": "true"})
    result = ios_reads(first)
    if not not_found(result):
        return result, [first]
    retry = http.post(
        "/graphql",
        content=json.dumps({**body, "query": operation.body}),
        headers={**headers, "Content-Type": "application/json"},
    )
    return ios_reads(retry), [first, retry]


def fetch_kotlin(
    http: httpx.Client, name: str, variables: dict[str, Any]
) -> tuple[dict[str, Any], list[httpx.Response]]:
    """Apollo Kotlin 4.4: ApolloClient.Builder().autoPersistedQueries() — the hash by GET
    (httpMethodForHashedQueries), the document by POST (httpMethodForDocumentQueries)."""
    operation = OPERATIONS[name]
    headers = {**bearer(), "Accept": KOTLIN_ACCEPT}
    extensions = {
        "persistedQuery": {"version": 1, "sha256Hash": operation.sha256},
        "clientLibrary": {"name": "apollo-kotlin", "version": "4.4.3"},
    }
    params = {
        "operationName": name,
        "variables": json.dumps(variables, separators=(",", ":")),
        "extensions": json.dumps(extensions, separators=(",", ":")),
    }
    first = http.get(
        kotlin_get_url(params), headers={**headers, "Apollo-Require-Preflight": "true"}
    )
    result = kotlin_reads(first)
    if not not_found(result, ignore_case=True):
        return result, [first]
    body = {
        "operationName": name,
        "variables": variables,
        "query": operation.body,
        "extensions": extensions,
    }
    retry = http.post(
        "/graphql",
        content=json.dumps(body),
        headers={**headers, "Content-Type": "application/json"},
    )
    return kotlin_reads(retry), [first, retry]


def check_registered_then_hits(run: Any, expected: dict[str, Any]) -> None:
    result, [miss, register] = run()
    assert result == {"data": expected}
    # The miss: 200 (so iOS reads it), never cached, the message both clients look for.
    assert (miss.status_code, miss.headers["cache-control"]) == (200, "no-store")
    assert miss.headers["content-type"] == "application/graphql-response+json; charset=utf-8"
    assert [(e["message"], e["extensions"]["code"]) for e in miss.json()["errors"]] == [
        (NOT_FOUND, "PERSISTED_QUERY_NOT_FOUND")
    ]
    assert register.status_code == 200
    # Registered: the hash alone now hits, twice, with the same cacheable bytes.
    hits = [run(), run()]
    for result, [hit] in hits:
        assert result == {"data": expected}
        assert hit.status_code == 200
        assert hit.headers["cache-control"].startswith("private, max-age=")
    assert hits[0][1][0].headers["etag"] == hits[1][1][0].headers["etag"]
    assert hits[0][1][0].content == hits[1][1][0].content


def summary_data(http: httpx.Client) -> dict[str, Any]:
    response = http.post(
        "/graphql", json={"query": OPERATIONS["DirectorSummary"].body}, headers=bearer()
    )
    return response.json()["data"]  # type: ignore[no-any-return]


def test_apollo_ios_1_registers_then_hits(gateway: str) -> None:
    with httpx.Client(base_url=gateway, timeout=WAIT_S) as http:
        check_registered_then_hits(lambda: fetch_ios_1(http, "DirectorSummary"), summary_data(http))
    # Every exchange a 200, as the gateway logged them under the operation's name.
    log = access_log(gateway)
    assert [(r["method"], r["status"]) for r in log if r["operation"] == "DirectorSummary"] == [
        ("GET", 200)
    ] * 4


def test_apollo_ios_2_registers_then_hits(gateway: str) -> None:
    variables = {"first": 5}
    with httpx.Client(base_url=gateway, timeout=WAIT_S) as http:
        expected = http.post(
            "/graphql",
            json={"query": OPERATIONS["CohortList"].body, "variables": variables},
            headers=bearer(),
        ).json()["data"]
        assert expected["me"]["cohorts"]["totalCount"] == 3
        check_registered_then_hits(lambda: fetch_ios_2(http, "CohortList", variables), expected)


def test_apollo_kotlin_4_registers_then_hits(gateway: str) -> None:
    variables = {"id": 101}
    with httpx.Client(base_url=gateway, timeout=WAIT_S) as http:
        expected = http.post(
            "/graphql",
            json={"query": OPERATIONS["CohortDetail"].body, "variables": variables},
            headers=bearer(),
        ).json()["data"]
        assert (expected["cohort"]["id"], expected["cohort"]["name"]) == (101, "Analytics Nov")
        check_registered_then_hits(lambda: fetch_kotlin(http, "CohortDetail", variables), expected)


def test_a_404_miss_would_have_stopped_apollo_ios_but_not_kotlin() -> None:
    """Why the miss is a 200: the same body with the spec's 404 fails in iOS's
    ResponseCodeInterceptor, while Kotlin reads it (its type is graphql-response+json)."""
    body = {"errors": [{"message": NOT_FOUND, "extensions": {"code": "PERSISTED_QUERY_NOT_FOUND"}}]}
    spec_miss = httpx.Response(
        404, json=body, headers={"content-type": "application/graphql-response+json"}
    )
    with pytest.raises(ResponseCodeError, match="Received a 404 error."):
        ios_reads(spec_miss)
    assert not_found(kotlin_reads(spec_miss), ignore_case=True)
    legacy_404 = httpx.Response(404, json=body, headers={"content-type": "application/json"})
    with pytest.raises(ApolloHttpException):
        kotlin_reads(legacy_404)
