"""POSTs of known documents answered from the same stored answer as the GET; one
hit-serving path, and the miss path reading nothing twice."""

import hashlib
import json

import pytest
from prometheus_client import REGISTRY

import gateway.http.endpoint as endpoint_module
from gateway.cache.answers import AnswerId
from resolvers.caller import Caller
from tests.support.cycles import prewarm
from tests.support.dataset import DANA, DREW
from tests.support.fast_path import DETAIL_OP, LIST_OP, SUMMARY_OP, get, hits
from tests.support.fast_path_post import apq, bodies
from tests.support.gateway import StatementCounter, services_of, settings_for
from tests.support.gateway_client import GatewayClient, gateway_client

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

ME_NAME = "query MeName { me { name } }"
# Outside the dashboard's operations and the manifest; stored (it has a computedAt).
ME_SUMMARY = "query MeSummary { me { summary { activeCohorts computedAt } } }"


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def post(api: GatewayClient, body: dict, user: int, role: str = "director", **headers):
    return await api.http.post(
        "/graphql",
        content=json.dumps(body),
        headers={**api.auth(user, role), "Content-Type": "application/json", **headers},
    )


def latency_count(operation: str, outcome: str) -> float:
    labels = {"operation": operation, "outcome": outcome}
    return REGISTRY.get_sample_value("gateway_request_seconds_count", labels) or 0.0


async def test_a_post_of_a_known_document_is_the_gets_stored_answer(fast: GatewayClient) -> None:
    await prewarm(services_of(fast))
    by_get = await get(fast, SUMMARY_OP, DANA)
    assert by_get.status_code == 200
    for shape, body in bodies(SUMMARY_OP).items():
        before = hits()
        with StatementCounter(fast) as counter:
            response = await post(fast, body, DANA, **{"If-None-Match": by_get.headers["etag"]})
        assert (shape, counter.count, hits()) == (shape, 0, before + 1)
        # The same bytes; a POST carries no validator and no max-age, and is never a 304.
        assert (shape, response.status_code, response.content) == (shape, 200, by_get.content)
        assert "etag" not in response.headers
        assert "cache-control" not in response.headers
        assert response.headers["content-type"] == "application/json"
        assert response.headers["vary"] == "Authorization, Accept, Accept-Encoding"


async def test_two_directors_posting_the_same_body_get_their_own_answers(
    fast: GatewayClient,
) -> None:
    await prewarm(services_of(fast))
    body = bodies(LIST_OP)["query text"]
    seen = {}
    for user in (DANA, DREW, DANA, DREW):
        before = hits()
        response = await post(fast, body, user)
        assert hits() == before + 1
        ids = [e["node"]["id"] for e in response.json()["data"]["me"]["cohorts"]["edges"]]
        assert response.content == (await get(fast, LIST_OP, user)).content
        seen.setdefault(user, ids)
        assert seen[user] == ids
    assert seen == {DANA: [102, 101, 104], DREW: [103, 102]}


async def test_a_post_miss_is_executed_stored_and_then_served_to_post_and_get(
    fast: GatewayClient,
) -> None:
    variables = {"id": 101}
    body = bodies(DETAIL_OP, variables)["query text"]
    first = await post(fast, body, DANA)
    assert first.json()["data"]["cohort"]["id"] == 101
    key = services_of(fast).answers.key(
        Caller(DANA, "director"), AnswerId.of(DETAIL_OP.sha256, DETAIL_OP.name, variables)
    )
    assert await services_of(fast).kv.client.exists(key) == 1
    before = hits()
    with StatementCounter(fast) as counter:
        again = await post(fast, body, DANA)
        by_get = await get(fast, DETAIL_OP, DANA, variables=variables)
    assert (counter.count, hits()) == (0, before + 2)
    assert again.content == by_get.content == first.content
    # Headers of a POST whichever path answered it.
    assert {k: v for k, v in again.headers.items() if k != "x-request-id"} == {
        k: v for k, v in first.headers.items() if k != "x-request-id"
    }


async def test_unknown_documents_and_mutations_are_executed_never_stored(
    fast: GatewayClient,
) -> None:
    services = services_of(fast)
    key = services.answers.key(Caller(DANA, "director"), AnswerId.of(_sha(ME_NAME), None, None))
    for _ in range(2):
        response = await post(fast, {"query": ME_NAME}, DANA)
        assert response.json() == {"data": {"me": {"name": "Dana Director"}}}
    assert await services.kv.client.exists(key) == 0


async def test_unusual_posts_are_answered_by_the_endpoint_as_before(fast: GatewayClient) -> None:
    await prewarm(services_of(fast))
    auth = fast.auth(DANA)
    cases = [
        (b"{not json", {"Content-Type": "application/json"}, 400, "BAD_REQUEST"),
        (b"[]", {"Content-Type": "application/json"}, 400, "BAD_REQUEST"),
        (b'{"query": 1}', {"Content-Type": "application/json"}, 400, "BAD_REQUEST"),
        (b"{}", {"Content-Type": "text/plain"}, 415, "BAD_REQUEST"),
    ]
    for content, headers, status, code in cases:
        response = await fast.http.post(
            "/graphql",
            content=content,
            headers={**auth, **headers, "Accept": "application/graphql-response+json"},
        )
        assert (response.status_code, response.json()["errors"][0]["extensions"]["code"]) == (
            status,
            code,
        )
    batch = [bodies(SUMMARY_OP)["apq hash"]] * 2  # each a hit on its own: refused together
    response = await fast.http.post("/graphql", json=batch, headers=auth)
    assert [e["errors"][0]["extensions"]["code"] for e in response.json()] == [
        "BATCHING_DISABLED"
    ] * 2
    # A hash that does not match the text sent with it is refused, never served.
    body = {**bodies(SUMMARY_OP)["apq hash"], "query": LIST_OP.body}
    response = await post(fast, body, DANA)
    assert response.json()["errors"][0]["message"] == "provided sha does not match query"


async def test_a_miss_reads_the_request_once(
    fast: GatewayClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The endpoint takes the fast path's parse: no second token check, no second parse
    of the query string or body, no second reading of Accept."""
    calls: dict[str, int] = {"verify": 0, "parse_get": 0, "parse_post": 0, "negotiate": 0}
    services = services_of(fast)

    def counting(name, function):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return function(*args, **kwargs)

        return wrapper

    verifier = type(services.verifier)
    monkeypatch.setattr(verifier, "verify", counting("verify", verifier.verify))
    for name in ("parse_get", "parse_post", "negotiate"):
        monkeypatch.setattr(endpoint_module, name, counting(name, getattr(endpoint_module, name)))
    variables = {"id": 104}
    response = await get(fast, DETAIL_OP, DANA, variables=variables)  # a miss, executed
    assert response.json()["data"]["cohort"]["id"] == 104
    response = await post(fast, bodies(DETAIL_OP, {"id": 101})["apq hash"], DANA)
    assert response.json()["data"]["cohort"]["id"] == 101
    assert calls == {"verify": 2, "parse_get": 0, "parse_post": 0, "negotiate": 0}


async def test_hits_are_labelled_with_the_stored_operation(fast: GatewayClient) -> None:
    """An APQ GET without operationName, a POST: labelled by the operation that ran."""
    await prewarm(services_of(fast))
    before = latency_count("DirectorSummary", "fast")
    params = {"extensions": json.dumps(apq(SUMMARY_OP))}
    response = await fast.http.get("/graphql", params=params, headers=fast.auth(DANA))
    assert response.status_code == 200
    # Stored under its own key (no operationName): executed once, then a hit.
    response = await fast.http.get("/graphql", params=params, headers=fast.auth(DANA))
    assert latency_count("DirectorSummary", "fast") == before + 1
    await post(fast, {"extensions": apq(SUMMARY_OP)}, DANA)  # a hit of that same answer
    await post(fast, bodies(SUMMARY_OP)["query text"], DANA)  # a hit of the prewarmed one
    assert latency_count("DirectorSummary", "fast") == before + 3


async def test_persisted_only_mode_refuses_what_it_refuses_even_when_stored(
    dataset_url: str, redis_url: str, manifest: str, fast: GatewayClient
) -> None:
    """A stored answer of a document outside the manifest (stored while the mode was off)
    is not served in persisted-only mode, by GET or POST; the manifest's are."""
    await prewarm(services_of(fast))
    hashed = {"persistedQuery": {"version": 1, "sha256Hash": _sha(ME_SUMMARY)}}
    registered = await post(fast, {"query": ME_SUMMARY, "extensions": hashed}, DANA)
    assert registered.json()["data"]["me"]["summary"]["activeCohorts"] == 2
    before = hits()
    assert (await post(fast, {"query": ME_SUMMARY}, DANA)).content == registered.content
    assert hits() == before + 1  # the mode is off: a stored answer like any other
    settings = settings_for(
        dataset_url, redis_url, persisted_manifest=manifest, persisted_only=True
    )
    async with gateway_client(settings, fast.clock) as strict:
        for body in ({"query": ME_SUMMARY}, {"extensions": hashed}):
            response = await post(strict, body, DANA)
            assert response.json()["errors"][0]["extensions"]["code"] == (
                "PERSISTED_QUERY_NOT_IN_LIST"
            )
        response = await strict.http.get(
            "/graphql", params={"extensions": json.dumps(hashed)}, headers=strict.auth(DANA)
        )
        assert response.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_IN_LIST"
        before = hits()
        response = await post(strict, bodies(SUMMARY_OP)["query text"], DANA)
        assert hits() == before + 1
        assert response.content == (await get(fast, SUMMARY_OP, DANA)).content
