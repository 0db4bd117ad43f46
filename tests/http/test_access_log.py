"""The access log (GATEWAY_ACCESS_LOG): one record per request with method, path, status,
duration, operation name and request id as separate fields; never the query string."""

import json
import logging

import pytest

from gateway.logs import JsonFormatter
from gateway.settings import Settings
from tests.support.dataset import DANA
from tests.support.fast_path import SUMMARY_OP, get, params
from tests.support.gateway_client import gateway_client


@pytest.fixture(scope="module")
def backend() -> str:
    return "sqlite"


def access_records(caplog: pytest.LogCaptureFixture) -> list[dict]:
    """The records as the JSON log lines carry them."""
    formatter = JsonFormatter()
    return [json.loads(formatter.format(r)) for r in caplog.records if r.name == "gateway.access"]


async def test_access_log_records_are_structured(
    dataset_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(database_url=dataset_url, access_log=True)
    caplog.set_level(logging.INFO, "gateway.access")
    async with gateway_client(settings) as api:
        ok = await api.http.post(
            "/graphql",
            json={"query": "query Me { me { id } }", "operationName": "Me"},
            headers={**api.auth(DANA), "X-Request-Id": "req-ok"},
        )
        refused = await api.http.put("/graphql", headers={"X-Request-Id": "req-405"})
        health = await api.http.get("/healthz")
    assert (ok.status_code, refused.status_code, health.status_code) == (200, 405, 200)
    records = access_records(caplog)
    fields = ("message", "method", "path", "status", "operation", "request_id")
    assert [{k: r[k] for k in fields} for r in records] == [
        {
            "message": "POST /graphql 200",
            "method": "POST",
            "path": "/graphql",
            "status": 200,
            "operation": "Me",
            "request_id": "req-ok",
        },
        {
            "message": "PUT /graphql 405",
            "method": "PUT",
            "path": "/graphql",
            "status": 405,
            "operation": None,
            "request_id": "req-405",
        },
        {
            "message": "GET /healthz 200",
            "method": "GET",
            "path": "/healthz",
            "status": 200,
            "operation": None,
            "request_id": None,
        },
    ]
    assert all(isinstance(r["duration_ms"], float) and r["duration_ms"] >= 0 for r in records)


async def test_a_stored_answer_is_logged_with_its_operation(
    fast, caplog: pytest.LogCaptureFixture, dataset_url: str, redis_url: str, manifest: str
) -> None:
    from tests.support.gateway import settings_for

    settings = settings_for(dataset_url, redis_url, persisted_manifest=manifest, access_log=True)
    caplog.set_level(logging.INFO, "gateway.access")
    async with gateway_client(settings, fast.clock) as api:
        first = await get(api, SUMMARY_OP, DANA)  # executed and stored
        second = await get(api, SUMMARY_OP, DANA)  # the fast path
        not_modified = await get(api, SUMMARY_OP, DANA, **{"If-None-Match": second.headers["etag"]})
    records = access_records(caplog)
    assert [(r["method"], r["path"], r["status"], r["operation"]) for r in records] == [
        ("GET", "/graphql", 200, "DirectorSummary"),
        ("GET", "/graphql", 200, "DirectorSummary"),
        ("GET", "/graphql", 304, "DirectorSummary"),
    ]
    assert [r["request_id"] for r in records] == [
        first.headers["x-request-id"],
        second.headers["x-request-id"],
        not_modified.headers["x-request-id"],
    ]
    # Variables and hashes stay out of the log: the path only.
    assert all("?" not in r["message"] for r in records)
    assert params(SUMMARY_OP)["extensions"] not in caplog.text


async def test_access_log_is_off_by_default(dataset_url: str, caplog) -> None:
    caplog.set_level(logging.INFO, "gateway.access")
    async with gateway_client(Settings(database_url=dataset_url)) as api:
        assert (await api.http.get("/healthz")).status_code == 200
    assert access_records(caplog) == []
