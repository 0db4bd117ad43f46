"""graphql-codegen's client preset (tests/js/codegen.ts) over schema.graphql and the
dashboard's operations: its persisted-documents manifest, loaded into the gateway in
persisted-only mode, holds exactly the ids the generated code sends — by documentId over
GET and POST, and through Apollo Client 4's PersistedQueryLink."""

import json
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from gateway.auth import mint_token
from gateway.documents.dashboard import dashboard_operations
from gateway.documents.persisted import load_manifest
from gateway.settings import Settings
from tests.support.dataset import DANA
from tests.support.live_gateway import live_gateway
from tests.support.node import JS_DIR, NODE_TIMEOUT_S, node_binary, run_node

GENERATED = JS_DIR / "generated"
MANIFEST = GENERATED / "persisted-documents.json"


@pytest.fixture(scope="module")
def backend() -> str:
    return "sqlite"


@pytest.fixture(scope="module")
def generated() -> Path:
    """Runs codegen.ts (graphql-codegen in tests/js); the generated folder."""
    node_binary()
    subprocess.run(
        [str(JS_DIR / "node_modules" / ".bin" / "graphql-codegen"), "--config", "codegen.ts"],
        cwd=JS_DIR,
        check=True,
        capture_output=True,
        timeout=NODE_TIMEOUT_S,
    )
    return GENERATED


def sent_id(exchange: dict[str, Any]) -> str:
    """The document id a request named: documentId, or the persisted-query hash."""
    if exchange["method"] == "GET":
        fields = {k: v for k, [v] in parse_qs(urlsplit(exchange["url"]).query).items()}
        if "extensions" in fields:
            fields["extensions"] = json.loads(fields["extensions"])
    else:
        fields = json.loads(exchange["body"])
    assert "query" not in fields
    if "documentId" in fields:
        return fields["documentId"]
    return fields["extensions"]["persistedQuery"]["sha256Hash"]


def test_codegen_types_dates_as_strings(generated: Path) -> None:
    source = (generated / "graphql.ts").read_text()
    # The README's scalars mapping: Date and DateTime are ISO-8601 strings, not `unknown`.
    assert "computedAt: string, stale: boolean" in source
    assert "dueDate: string" in source
    assert "unknown" not in source.split("export type DirectorSummaryQuery", 1)[1].split("\n")[0]
    # And SafeInt (money, pooled seats) a number.
    assert "billedCents: number" in source


async def test_generated_ids_match_the_manifest_the_gateway_loads(
    generated: Path, dataset_url: str
) -> None:
    manifest = json.loads(MANIFEST.read_text())
    # One document per dashboard operation, keyed `sha256:<hex of the body>`.
    assert sorted(k.split(":")[0] for k in manifest) == ["sha256"] * len(dashboard_operations())
    documents = load_manifest(MANIFEST)  # checks every id against its body
    assert {f"sha256:{h}" for h in documents} == set(manifest)

    token = mint_token(Settings(), DANA, "director", 600)
    node = node_binary()
    with live_gateway(dataset_url, persisted_manifest=str(MANIFEST), persisted_only="true") as url:
        run = run_node(
            node,
            str(JS_DIR / "node_modules" / "jiti" / "lib" / "jiti-cli.mjs"),
            "documents.ts",
            GATEWAY_URL=url,
            GATEWAY_TOKEN=token,
        )
    assert set(run["ids"].values()) <= set(manifest)
    assert [(e["method"], sent_id(e)) for e in run["exchanges"]] == [
        ("GET", run["ids"]["DirectorSummary"]),
        ("POST", run["ids"]["CohortDetail"]),
        ("GET", run["ids"]["CohortDetail"]),  # Apollo Client, PersistedQueryLink
    ]
    for exchange in run["exchanges"]:
        assert exchange["status"] == 200
        assert "errors" not in exchange["response"], exchange["response"]
    assert run["results"] == {
        "totalCohorts": 3,
        "cohortName": "Analytics Nov",
        "apolloCohortName": "Analytics Nov",
    }
