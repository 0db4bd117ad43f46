"""A real Apollo Client (Node, tests/js) against the gateway under uvicorn: the
persisted-queries link with GET for hashed queries works unmodified."""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from unittest.mock import ANY
from urllib.parse import parse_qs, urlsplit

import pytest

from gateway.auth import mint_token
from gateway.cli import main as gateway_cli
from gateway.persisted import OPERATIONS_DIR, dashboard_operations
from gateway.settings import Settings
from tests.dataset import DANA
from tests.harness.waiting import CEILING_S
from tests.live_gateway import access_log, live_gateway

JS_DIR = Path(__file__).parent / "js"
NODE_TIMEOUT_S = CEILING_S  # bounds a hung run only: the script exits when it is done
SUMMARY = dashboard_operations()["DirectorSummary"]
DETAIL = dashboard_operations()["CohortDetail"]


@pytest.fixture(scope="module")
def backend() -> str:
    """The protocol does not depend on the database: one backend is enough."""
    return "sqlite"


@pytest.fixture(scope="module")
def node() -> str:
    node = shutil.which("node")
    assert node is not None, "node is not installed (.ci/run installs nodejs)"
    if not (JS_DIR / "node_modules").is_dir():
        subprocess.run(["npm", "ci", "--prefix", str(JS_DIR)], check=True, timeout=300)
    return node


def run_apollo(node: str, url: str, operation: str, variables: dict[str, Any]) -> dict[str, Any]:
    token = mint_token(Settings(), DANA, "director", 600)
    completed = subprocess.run(
        [
            node,
            str(JS_DIR / "apq.mjs"),
            str(OPERATIONS_DIR / f"{operation}.graphql"),
            json.dumps(variables),
        ],  # fmt: skip
        env={**os.environ, "GATEWAY_URL": url, "GATEWAY_TOKEN": token},
        capture_output=True,
        text=True,
        timeout=NODE_TIMEOUT_S,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)


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

    # 1. GET with the hash only: unknown, so PersistedQueryNotFound, never cached.
    assert hashed_get(miss) == ("DirectorSummary", {}, SUMMARY.sha256)
    assert (miss["status"], miss["headers"]["cache-control"]) == (200, "no-store")
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
    assert hit["headers"]["vary"] == "Authorization"
    assert hit["headers"]["cache-control"].startswith("private, max-age=")
    assert hit["headers"]["etag"].startswith('"')
    check_summary(json.loads(hit["response"])["data"])

    assert run["results"][0] == run["results"][1]
    check_summary(run["results"][1])
    # The gateway saw the same three requests.
    assert [" ".join(re.search(r'("\w+) [^"]*" (\d{3})', line).groups()) for line in log] == [
        '"GET 200',
        '"POST 200',
        '"GET 200',
    ]


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
