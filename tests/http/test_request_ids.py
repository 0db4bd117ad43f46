"""Request ids: unique, 32 hex digits, distinct between processes; every refusal carries
the request's id, in its body and in X-Request-Id."""

import re
import subprocess
import sys

import pytest

from gateway.logs import new_request_id
from gateway.settings import Settings
from tests.support.gateway_client import gateway_client


def test_request_ids_are_unique_hex() -> None:
    ids = [new_request_id() for _ in range(10_000)]
    assert len(set(ids)) == 10_000
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)


def test_each_process_has_its_own_prefix() -> None:
    code = "from gateway.logs import new_request_id; print(new_request_id())"
    first, second = (
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.strip()
        for _ in range(2)
    )
    # Both are their process's first id: only the per-process prefix tells them apart.
    assert first[16:] == second[16:] == f"{1:016x}"
    assert first[:16] != second[:16]


@pytest.fixture(scope="module")
def backend() -> str:
    return "sqlite"


async def test_every_refusal_carries_the_request_id(dataset_url: str) -> None:
    async with gateway_client(Settings(database_url=dataset_url)) as api:
        refusals = {
            "no such path": await api.http.get("/nowhere"),
            "a method the route does not take": await api.http.get("/webhooks/upstream"),
            "another method on /graphql": await api.http.delete("/graphql"),
            "no such GraphiQL file": await api.http.get(
                "/graphql", params={"graphiql-asset": "nope.js"}
            ),
            "no token": await api.http.post("/graphql", json={"query": "{ me { id } }"}),
            "unsigned webhook": await api.http.post("/webhooks/upstream", content=b"{}"),
        }
    seen = {}
    for name, response in refusals.items():
        body = response.json()
        error = body["error"] if "error" in body else body["errors"][0]["extensions"]
        assert error["requestId"] == response.headers["x-request-id"], name
        assert re.fullmatch(r"[0-9a-f]{32}", error["requestId"]), name
        seen[name] = (response.status_code, error["code"])
    assert seen == {
        "no such path": (404, "NOT_FOUND"),
        "a method the route does not take": (405, "BAD_REQUEST"),
        "another method on /graphql": (405, "BAD_REQUEST"),
        "no such GraphiQL file": (404, "NOT_FOUND"),
        "no token": (401, "UNAUTHENTICATED"),
        "unsigned webhook": (401, "BAD_SIGNATURE"),
    }
    assert refusals["a method the route does not take"].headers["allow"] == "POST"
