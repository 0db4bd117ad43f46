"""Persisted documents by `documentId` (GET and POST, with or without `sha256:`), and
manifests whose keys carry that prefix."""

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.documents.dashboard import dashboard_operations
from gateway.documents.persisted import load_manifest, sha256_hex
from gateway.settings import Settings
from tests.support.cycles import prewarm
from tests.support.dataset import DANA
from tests.support.fast_path import hits
from tests.support.gateway import StatementCounter, services_of
from tests.support.gateway_client import GatewayClient, gateway_client

DETAIL = dashboard_operations()["CohortDetail"]
SUMMARY = dashboard_operations()["DirectorSummary"]
ME = "query Me { me { id name } }"
ME_HASH = sha256_hex(ME)
DANA_ME = {"me": {"id": DANA, "name": "Dana Director"}}


@pytest.fixture(scope="module")
def backend() -> str:
    """Request parsing does not depend on the database: one backend is enough."""
    return "sqlite"


@pytest.fixture
async def api(dataset_url: str, manifest: str):
    settings = Settings(database_url=dataset_url, persisted_manifest=manifest)
    async with gateway_client(settings) as client:
        yield client


async def by_id(
    api: GatewayClient, method: str, document_id: str, variables: dict | None = None, **more: Any
) -> httpx.Response:
    fields: dict[str, Any] = {"documentId": document_id, **more}
    if variables is not None:
        fields["variables"] = variables
    if method == "GET":
        params = {k: v if isinstance(v, str) else json.dumps(v) for k, v in fields.items()}
        return await api.http.get("/graphql", params=params, headers=api.auth(DANA))
    return await api.http.post("/graphql", json=fields, headers=api.auth(DANA))


def error_of(response: httpx.Response) -> tuple[int, str, str]:
    [error] = response.json()["errors"]
    return response.status_code, error["extensions"]["code"], error["message"]


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("prefix", ["sha256:", ""])
async def test_manifest_documents_by_id(api: GatewayClient, method: str, prefix: str) -> None:
    response = await by_id(api, method, prefix + DETAIL.sha256, {"id": 101})
    assert response.status_code == 200
    body = response.json()
    assert "errors" not in body, body
    cohort = body["data"]["cohort"]
    assert (cohort["id"], cohort["name"], cohort["seats"]["utilization"]) == (
        101,
        "Analytics Nov",
        0.75,
    )


async def test_apq_registered_documents_by_id(api: GatewayClient) -> None:
    unknown = await by_id(api, "GET", f"sha256:{ME_HASH}")
    assert error_of(unknown) == (200, "PERSISTED_QUERY_NOT_FOUND", "PersistedQueryNotFound")
    assert unknown.headers["cache-control"] == "no-store"
    # A document sent with its id is registered, as with APQ.
    registered = await by_id(api, "POST", f"sha256:{ME_HASH}", query=ME)
    assert registered.json() == {"data": DANA_ME}
    for method in ("GET", "POST"):
        assert (await by_id(api, method, ME_HASH)).json() == {"data": DANA_ME}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"documentId": "abc"}, "documentId must be sha256:<64 hex digits> (or the digits)."),
        (
            {"documentId": "sha1:" + "0" * 40},
            "documentId must be sha256:<64 hex digits> (or the digits).",
        ),
        ({"documentId": 12}, "`documentId` must be a string."),
        (
            {
                "documentId": "sha256:" + SUMMARY.sha256,
                "extensions": {"persistedQuery": {"version": 1, "sha256Hash": DETAIL.sha256}},
            },
            "documentId and persistedQuery name different documents.",
        ),
        (
            {"documentId": "sha256:" + ME_HASH, "query": "query Other { me { id } }"},
            "provided sha does not match query",
        ),
    ],
)
async def test_bad_document_ids_are_refused(
    api: GatewayClient, fields: dict[str, Any], message: str
) -> None:
    response = await api.http.post("/graphql", json=fields, headers=api.auth(DANA))
    assert error_of(response) == (400, "BAD_REQUEST", message)


async def test_persisted_only_accepts_manifest_ids_only(dataset_url: str, manifest: str) -> None:
    settings = Settings(database_url=dataset_url, persisted_manifest=manifest, persisted_only=True)
    async with gateway_client(settings) as api:
        ok = await by_id(api, "GET", f"sha256:{SUMMARY.sha256}")
        assert "errors" not in ok.json()
        refused = await by_id(api, "POST", f"sha256:{ME_HASH}", query=ME)
        assert error_of(refused) == (
            400,
            "PERSISTED_QUERY_NOT_IN_LIST",
            "This document is not in the persisted-query list.",
        )


async def test_a_get_by_id_and_by_apq_hash_share_one_stored_answer(fast: GatewayClient) -> None:
    await prewarm(services_of(fast))
    apq = await fast.http.get(
        "/graphql",
        params={
            "extensions": json.dumps(
                {"persistedQuery": {"version": 1, "sha256Hash": SUMMARY.sha256}}
            ),
            "operationName": "DirectorSummary",
        },
        headers=fast.auth(DANA),
    )
    before = hits()
    with StatementCounter(fast) as counter:
        by_document_id = await fast.http.get(
            "/graphql",
            params={"documentId": f"sha256:{SUMMARY.sha256}", "operationName": "DirectorSummary"},
            headers=fast.auth(DANA),
        )
    assert (counter.count, hits()) == (0, before + 1)
    assert by_document_id.content == apq.content
    assert by_document_id.headers["etag"] == apq.headers["etag"]


@pytest.mark.parametrize("prefixed", [True, False])
def test_manifests_with_prefixed_keys(tmp_path: Path, prefixed: bool) -> None:
    key = ("sha256:" if prefixed else "") + ME_HASH
    plain = tmp_path / "persisted-documents.json"
    plain.write_text(json.dumps({key: ME}))
    assert load_manifest(plain) == {ME_HASH: ME}
    apollo = tmp_path / "apollo.json"
    apollo.write_text(
        json.dumps(
            {
                "format": "apollo-persisted-query-manifest",
                "version": 1,
                "operations": [{"id": key, "name": "Me", "type": "query", "body": ME}],
            }
        )
    )
    assert load_manifest(apollo) == {ME_HASH: ME}


async def test_a_persisted_query_hash_may_carry_the_prefix(api: GatewayClient) -> None:
    """Apollo's PersistedQueryLink sends codegen's ids (`generateHash`) as the APQ hash."""
    extensions = {"persistedQuery": {"version": 1, "sha256Hash": f"sha256:{DETAIL.sha256}"}}
    response = await api.http.get(
        "/graphql",
        params={"extensions": json.dumps(extensions), "variables": json.dumps({"id": 101})},
        headers=api.auth(DANA),
    )
    assert response.json()["data"]["cohort"]["name"] == "Analytics Nov"
