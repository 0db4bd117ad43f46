"""Automatic Persisted Queries, the trusted-documents manifest, persisted-only mode, and
cacheable GET answers (ETag, 304, max-age, Vary), on SQLite and PostgreSQL."""

import json
import logging
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import httpx
import pytest

from gateway.cache.answers import etag_for
from gateway.cli import main as gateway_cli
from gateway.documents.dashboard import dashboard_operations
from gateway.documents.persisted import APQ_KEY_PREFIX, ManifestError, load_manifest, sha256_hex
from gateway.http.responses import seconds_until_refresh
from gateway.settings import Settings
from tests.harness.processes import free_port
from tests.support.dataset import DANA, DREW, NOW
from tests.support.gateway_client import GatewayClient, fixed_clock, gateway_client
from tests.support.pathological import fan_out

ME = "query Me { me { id name summary { totalCohorts computedAt } } }"
ME_HASH = sha256_hex(ME)
COMPUTED_AT = "2026-11-24T12:00:00.000000Z"
DANA_ME = {
    "me": {
        "id": DANA,
        "name": "Dana Director",
        "summary": {"totalCohorts": 3, "computedAt": COMPUTED_AT},
    }
}
DREW_ME = {
    "me": {
        "id": DREW,
        "name": "Drew Director",
        "summary": {"totalCohorts": 2, "computedAt": COMPUTED_AT},
    }
}
COHORT = "query C($id: Int!) { cohort(id: $id) { id name computedAt } }"
NAMES = "query Names { me { cohorts(first: 2) { edges { node { name } } } } }"
UNKNOWN_HASH = "0" * 64
# The fixed clock makes every computedAt equal NOW: the next refresh is a full interval away.
FULL_INTERVAL_S = 300


def persisted(sha256: str) -> dict[str, Any]:
    return {"persistedQuery": {"version": 1, "sha256Hash": sha256}}


def get_params(sha256: str, variables: dict | None = None, **extra: str) -> dict[str, str]:
    params = {"extensions": json.dumps(persisted(sha256)), **extra}
    if variables is not None:
        params["variables"] = json.dumps(variables)
    return params


async def apq_get(
    api: GatewayClient, sha256: str, user: int, variables: dict | None = None, **headers: str
) -> httpx.Response:
    return await api.http.get(
        "/graphql", params=get_params(sha256, variables), headers={**api.auth(user), **headers}
    )


async def apq_post(
    api: GatewayClient, sha256: str, user: int, query: str | None = None, variables=None
) -> httpx.Response:
    body: dict[str, Any] = {"extensions": persisted(sha256), "variables": variables or {}}
    if query is not None:
        body["query"] = query
    return await api.http.post("/graphql", json=body, headers=api.auth(user))


def assert_not_found(response: httpx.Response) -> None:
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert response.json() == {
        "errors": [
            {
                "message": "PersistedQueryNotFound",
                "extensions": {"code": "PERSISTED_QUERY_NOT_FOUND", "requestId": ANY},
            }
        ]
    }


def error_of(response: httpx.Response) -> tuple[int, str, str]:
    [error] = response.json()["errors"]
    return response.status_code, error["extensions"]["code"], error["message"]


def settings_for(url: str, **overrides: Any) -> Settings:
    return Settings(database_url=url, **overrides)


@pytest.fixture(scope="module")
async def api(dataset_url: str):
    async with gateway_client(settings_for(dataset_url), fixed_clock(NOW)) as client:
        yield client


@pytest.fixture
def manifest_file(tmp_path: Path) -> Path:
    path = tmp_path / "manifest.json"
    assert gateway_cli(["manifest", "build", "--output", str(path)]) == 0
    return path


# --- APQ --------------------------------------------------------------------------------


async def test_apq_over_post_miss_register_hit(dataset_url: str) -> None:
    async with gateway_client(settings_for(dataset_url), fixed_clock(NOW)) as api:
        assert_not_found(await apq_post(api, ME_HASH, DANA))
        registered = await apq_post(api, ME_HASH, DANA, query=ME)
        assert registered.status_code == 200
        assert registered.json() == {"data": DANA_ME}
        hit = await apq_post(api, ME_HASH, DREW)
        assert hit.json() == {"data": DREW_ME}
        # POST answers are not cacheable: no ETag.
        assert "etag" not in hit.headers


async def test_apq_over_get_miss_register_hit(dataset_url: str) -> None:
    async with gateway_client(settings_for(dataset_url), fixed_clock(NOW)) as api:
        assert_not_found(await apq_get(api, ME_HASH, DANA))
        # Registration over GET, as a client without POST would do it.
        params = {**get_params(ME_HASH), "query": ME}
        registered = await api.http.get("/graphql", params=params, headers=api.auth(DANA))
        assert registered.json() == {"data": DANA_ME}
        hit = await apq_get(api, ME_HASH, DANA)
        assert hit.status_code == 200
        assert hit.json() == {"data": DANA_ME}


async def test_apq_registers_only_documents_within_the_limits(dataset_url: str) -> None:
    """A registration goes through the limits and validation first: a refused or invalid
    document is never stored, so its hash stays unknown."""
    bomb, invalid = fan_out(24), "{ me { nope } }"
    async with gateway_client(settings_for(dataset_url), fixed_clock(NOW)) as api:
        for document, status, code in (
            (bomb, 400, "TOO_MANY_FIELDS"),
            (invalid, 200, "GRAPHQL_VALIDATION_FAILED"),
        ):
            sha256 = sha256_hex(document)
            for register in (
                apq_post(api, sha256, DANA, query=document),
                api.http.get(
                    "/graphql",
                    params={**get_params(sha256), "query": document},
                    headers=api.auth(DANA),
                ),
            ):
                refused = await register
                assert refused.status_code == status
                assert [e["extensions"]["code"] for e in refused.json()["errors"]][:1] == [code]
                assert_not_found(await apq_get(api, sha256, DANA))
                assert_not_found(await apq_post(api, sha256, DANA))


async def test_manifest_documents_go_through_the_same_limits(
    dataset_url: str, tmp_path: Path
) -> None:
    bomb = fan_out(24)
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({sha256_hex(bomb): bomb}))
    settings = settings_for(dataset_url, persisted_manifest=path)
    async with gateway_client(settings, fixed_clock(NOW)) as api:
        for response in (
            await apq_get(api, sha256_hex(bomb), DANA),
            await apq_post(api, sha256_hex(bomb), DANA),
        ):
            assert response.status_code == 400
            assert response.json()["errors"][0]["extensions"]["code"] == "TOO_MANY_FIELDS"


async def test_apq_hash_mismatch_is_bad_request(api: GatewayClient) -> None:
    for response in (
        await apq_post(api, UNKNOWN_HASH, DANA, query=ME),
        await api.http.get(
            "/graphql",
            params={**get_params(UNKNOWN_HASH), "query": ME},
            headers=api.auth(DANA),
        ),
    ):
        assert error_of(response) == (400, "BAD_REQUEST", "provided sha does not match query")
    # Nothing was registered under the wrong hash.
    assert_not_found(await apq_get(api, UNKNOWN_HASH, DANA))


async def test_malformed_persisted_query_extension(api: GatewayClient) -> None:
    cases = [
        ({"persistedQuery": {"version": 2, "sha256Hash": ME_HASH}}, "use version 1"),
        ({"persistedQuery": {"version": 1, "sha256Hash": "abc"}}, "sha256 hex"),
        ({"persistedQuery": "yes"}, "use version 1"),
    ]
    for extensions, phrase in cases:
        response = await api.http.post(
            "/graphql", json={"extensions": extensions}, headers=api.auth(DANA)
        )
        status, code, message = error_of(response)
        assert (status, code) == (400, "BAD_REQUEST")
        assert phrase in message


async def test_apq_with_variables_over_get(api: GatewayClient) -> None:
    await apq_post(api, sha256_hex(COHORT), DANA, query=COHORT, variables={"id": 101})
    response = await apq_get(api, sha256_hex(COHORT), DANA, {"id": 102})
    assert response.json() == {
        "data": {
            "cohort": {
                "id": 102,
                "name": "Engineering Nov",
                "computedAt": COMPUTED_AT,
            }
        }
    }


async def test_apq_disabled_answers_not_supported(dataset_url: str) -> None:
    settings = settings_for(dataset_url, apq_enabled=False)
    async with gateway_client(settings, fixed_clock(NOW)) as api:
        # 200 under every media type, as Apollo Server answers it.
        for accept in ("application/json", "application/graphql-response+json"):
            response = await apq_get(api, ME_HASH, DANA, Accept=accept)
            assert response.status_code == 200
            assert response.headers["cache-control"] == "no-store"
            assert response.json()["errors"][0]["extensions"] == {
                "code": "PERSISTED_QUERY_NOT_SUPPORTED",
                "requestId": ANY,
            }
        # The full document still runs, and is not registered.
        assert (await apq_post(api, ME_HASH, DANA, query=ME)).json() == {"data": DANA_ME}
        assert (await apq_get(api, ME_HASH, DANA)).json()["errors"][0]["extensions"] == {
            "code": "PERSISTED_QUERY_NOT_SUPPORTED",
            "requestId": ANY,
        }


async def test_mutation_is_never_executed_over_get(api: GatewayClient) -> None:
    mutation = "mutation M { refresh }"
    response = await api.http.get(
        "/graphql", params={**get_params(sha256_hex(mutation)), "query": mutation},
        headers=api.auth(DANA),
    )  # fmt: skip
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert error_of(response) == (405, "BAD_REQUEST", "Mutations are only accepted over POST.")


# --- APQ store in Redis -------------------------------------------------------------------


async def test_apq_documents_are_shared_through_redis_with_a_ttl(
    dataset_url: str, redis_url: str
) -> None:
    settings = settings_for(dataset_url, redis_url=redis_url, apq_ttl_s=600)
    async with (
        gateway_client(settings, fixed_clock(NOW)) as first,
        gateway_client(settings, fixed_clock(NOW)) as second,
    ):
        assert (await apq_post(first, ME_HASH, DANA, query=ME)).json() == {"data": DANA_ME}
        redis = first.http._transport.app.state.services.redis  # type: ignore[attr-defined]
        assert await redis.get(APQ_KEY_PREFIX + ME_HASH) == ME.encode()
        assert 590 <= await redis.ttl(APQ_KEY_PREFIX + ME_HASH) <= 600
        # The second replica has never seen it: its memory misses, Redis hits.
        assert (await apq_get(second, ME_HASH, DREW)).json() == {"data": DREW_ME}
        # A document that does not hash to its key is never served.
        await redis.set(APQ_KEY_PREFIX + UNKNOWN_HASH, "{ me { id } }")
        assert_not_found(await apq_get(second, UNKNOWN_HASH, DANA))


async def test_unreachable_redis_degrades_to_memory(dataset_url: str, caplog) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    async with gateway_client(settings_for(dataset_url, redis_url=dead), fixed_clock(NOW)) as api:
        with caplog.at_level(logging.WARNING, logger="gateway.documents.persisted"):
            assert_not_found(await apq_get(api, ME_HASH, DANA))
            assert (await apq_post(api, ME_HASH, DANA, query=ME)).json() == {"data": DANA_ME}
            # Registered in this process's memory even though Redis was down.
            assert (await apq_get(api, ME_HASH, DANA)).json() == {"data": DANA_ME}
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith(f"APQ lookup of {ME_HASH} failed") for m in messages), messages
    assert any(m.startswith(f"APQ registration of {ME_HASH} skipped") for m in messages), messages


# --- Manifest -------------------------------------------------------------------------------


def test_manifest_build_writes_the_dashboard_operations(manifest_file: Path) -> None:
    manifest = json.loads(manifest_file.read_text())
    assert manifest["format"] == "apollo-persisted-query-manifest"
    assert manifest["version"] == 1
    names = [(op["name"], op["type"]) for op in manifest["operations"]]
    assert names == [
        ("CohortDetail", "query"),
        ("CohortList", "query"),
        ("CohortUpdates", "subscription"),
        ("DashboardUpdates", "subscription"),
        ("DirectorSummary", "query"),
    ]
    for op in manifest["operations"]:
        assert op["id"] == sha256_hex(op["body"])
    operations = dashboard_operations()
    assert load_manifest(manifest_file) == {op.sha256: op.body for op in operations.values()}


def test_manifest_loads_a_plain_hash_map(tmp_path: Path) -> None:
    path = tmp_path / "map.json"
    path.write_text(json.dumps({ME_HASH: ME}))
    assert load_manifest(path) == {ME_HASH: ME}


@pytest.mark.parametrize(
    ("content", "phrase"),
    [
        ({UNKNOWN_HASH: ME}, "is not the sha256 of its body"),
        ({"me": ME}, "is not a sha256 hex id"),
        (
            {"format": "apollo-persisted-query-manifest", "version": 2, "operations": []},
            "unsupported manifest version 2",
        ),
        ([ME], "expected an object"),
    ],
)
def test_bad_manifests_are_refused_at_start_up(tmp_path: Path, content, phrase) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ManifestError, match=phrase):
        load_manifest(path)


async def test_manifest_documents_are_known_by_hash(dataset_url: str, manifest_file: Path) -> None:
    operations = dashboard_operations()
    settings = settings_for(dataset_url, persisted_manifest=manifest_file)
    async with gateway_client(settings, fixed_clock(NOW)) as api:
        summary = await apq_get(api, operations["DirectorSummary"].sha256, DANA)
        assert summary.status_code == 200
        me = summary.json()["data"]["me"]
        # Documents are stored as Apollo Client sends them, with __typename.
        assert (me["id"], me["summary"]["totalCohorts"], me["summary"]["alertCounts"]) == (
            DANA,
            3,
            {"critical": 2, "warning": 4, "__typename": "AlertCounts"},
        )
        page = await apq_get(api, operations["CohortList"].sha256, DANA, {"first": 2})
        cohorts = page.json()["data"]["me"]["cohorts"]
        assert [e["node"]["id"] for e in cohorts["edges"]] == [102, 101]
        assert (cohorts["totalCount"], cohorts["pageInfo"]["hasNextPage"]) == (3, True)
        detail = await apq_get(api, operations["CohortDetail"].sha256, DANA, {"id": 101})
        cohort = detail.json()["data"]["cohort"]
        assert (cohort["name"], cohort["seats"]["utilization"]) == ("Analytics Nov", 0.75)


# --- Persisted-only ---------------------------------------------------------------------------


async def test_persisted_only_rejects_documents_not_in_the_list(
    dataset_url: str, manifest_file: Path
) -> None:
    summary = dashboard_operations()["DirectorSummary"]
    settings = settings_for(dataset_url, persisted_manifest=manifest_file, persisted_only=True)
    not_in_list = (
        400,
        "PERSISTED_QUERY_NOT_IN_LIST",
        "This document is not in the persisted-query list.",
    )
    async with gateway_client(settings, fixed_clock(NOW)) as api:
        assert error_of(await api.post(ME, user=DANA)) == not_in_list
        assert error_of(await apq_post(api, ME_HASH, DANA, query=ME)) == not_in_list
        assert error_of(await apq_get(api, ME_HASH, DANA)) == not_in_list
        # A final refusal under every media type, never cached.
        spec = await apq_get(api, ME_HASH, DANA, Accept="application/graphql-response+json")
        assert error_of(spec) == not_in_list
        assert spec.headers["cache-control"] == "no-store"
        # In the list: by hash, or as the full document.
        by_hash = await apq_get(api, summary.sha256, DANA)
        assert by_hash.json()["data"]["me"]["id"] == DANA
        full = await api.post(summary.body, user=DREW)
        assert full.json()["data"]["me"]["id"] == DREW


async def test_persisted_only_may_allow_apq(dataset_url: str, manifest_file: Path) -> None:
    settings = settings_for(
        dataset_url,
        persisted_manifest=manifest_file,
        persisted_only=True,
        persisted_only_allow_apq=True,
    )
    async with gateway_client(settings, fixed_clock(NOW)) as api:
        assert error_of(await api.post(ME, user=DANA))[1] == "PERSISTED_QUERY_NOT_IN_LIST"
        assert_not_found(await apq_get(api, ME_HASH, DANA))
        assert (await apq_post(api, ME_HASH, DANA, query=ME)).json() == {"data": DANA_ME}
        assert (await apq_get(api, ME_HASH, DREW)).json() == {"data": DREW_ME}


async def test_log_only_mode_reports_and_runs(
    dataset_url: str, manifest_file: Path, caplog
) -> None:
    settings = settings_for(
        dataset_url,
        persisted_manifest=manifest_file,
        persisted_only=True,
        persisted_only_log_only=True,
    )
    summary = dashboard_operations()["DirectorSummary"]
    async with gateway_client(settings, fixed_clock(NOW)) as api:
        with caplog.at_level(logging.WARNING, logger="gateway.http"):
            assert await api.data(ME, user=DANA) == DANA_ME
            assert (await apq_post(api, ME_HASH, DANA, query=ME)).json() == {"data": DANA_ME}
            assert (await apq_get(api, summary.sha256, DANA)).status_code == 200
    assert [r.getMessage() for r in caplog.records if r.name == "gateway.http"] == [
        f"persisted-only would reject {ME_HASH} (document, operation None)",
        f"persisted-only would reject {ME_HASH} (apq, operation None)",
    ]


# --- Cacheable GET ------------------------------------------------------------------------------


async def test_persisted_get_has_etag_max_age_and_vary(api: GatewayClient) -> None:
    await apq_post(api, ME_HASH, DANA, query=ME)
    response = await apq_get(api, ME_HASH, DANA)
    assert response.status_code == 200
    assert response.headers["etag"] == etag_for(response.content)
    assert response.headers["cache-control"] == f"private, max-age={FULL_INTERVAL_S}"
    assert response.headers["vary"] == "Authorization, Accept, Accept-Encoding"
    # The same ETag, then a 304 without a body that keeps the caching headers.
    etag = response.headers["etag"]
    again = await apq_get(api, ME_HASH, DANA, **{"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    assert again.headers["cache-control"] == f"private, max-age={FULL_INTERVAL_S}"
    assert again.headers["vary"] == "Authorization, Accept, Accept-Encoding"
    # A list and a weak form of the tag match too; a stale tag does not.
    listed = await apq_get(api, ME_HASH, DANA, **{"If-None-Match": f'"old", W/{etag}'})
    assert listed.status_code == 304
    stale = await apq_get(api, ME_HASH, DANA, **{"If-None-Match": '"0123"'})
    assert (stale.status_code, stale.json()) == (200, {"data": DANA_ME})


async def test_answers_without_computed_at_have_max_age_zero(api: GatewayClient) -> None:
    await apq_post(api, sha256_hex(NAMES), DANA, query=NAMES)
    response = await apq_get(api, sha256_hex(NAMES), DANA)
    assert response.json() == {
        "data": {
            "me": {
                "cohorts": {
                    "edges": [
                        {"node": {"name": "Engineering Nov"}},
                        {"node": {"name": "Analytics Nov"}},
                    ]
                }
            }
        }
    }
    assert response.headers["cache-control"] == "private, max-age=0"


async def test_non_persisted_and_failed_answers_are_not_cacheable(api: GatewayClient) -> None:
    plain = await api.http.get("/graphql", params={"query": ME}, headers=api.auth(DANA))
    assert plain.json() == {"data": DANA_ME}
    assert "etag" not in plain.headers
    await apq_post(api, sha256_hex(COHORT), DANA, query=COHORT, variables={"id": 101})
    failed = await apq_get(api, sha256_hex(COHORT), DANA, {"id": 103})
    assert failed.json()["errors"][0]["extensions"] == {"code": "NOT_FOUND", "requestId": ANY}
    assert "etag" not in failed.headers
    assert failed.headers["cache-control"] == "no-store"


async def test_two_directors_never_share_an_etag_or_an_answer(api: GatewayClient) -> None:
    await apq_post(api, ME_HASH, DANA, query=ME)
    dana = await apq_get(api, ME_HASH, DANA)
    drew = await apq_get(api, ME_HASH, DREW)
    assert dana.json() == {"data": DANA_ME}
    assert drew.json() == {"data": DREW_ME}
    assert dana.headers["etag"] != drew.headers["etag"]
    # Drew presenting Dana's ETag gets his own answer, never a 304 onto hers.
    crossed = await apq_get(api, ME_HASH, DREW, **{"If-None-Match": dana.headers["etag"]})
    assert (crossed.status_code, crossed.json()) == (200, {"data": DREW_ME})
    assert crossed.headers["etag"] == drew.headers["etag"]


def test_max_age_counts_from_the_oldest_computed_at() -> None:
    data = {
        "a": {"computedAt": "2026-11-24T11:58:00.000000Z"},
        "b": [{"computedAt": "2026-11-24T11:56:30.500000Z"}, {"computedAt": None}],
    }
    # Oldest 11:56:30.5 + 300 s = 12:01:30.5; at 12:00:00 that is 90.5 s, floored.
    assert seconds_until_refresh(data, 300, NOW) == 90
    assert seconds_until_refresh(data, 300, NOW + timedelta(minutes=10)) == 0
    assert seconds_until_refresh({"me": {"id": 2}}, 300, NOW) == 0
    assert seconds_until_refresh(None, 300, NOW) == 0
