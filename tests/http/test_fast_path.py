"""The response fast path: stored answer bytes for persisted GETs, per caller."""

import json
from urllib.parse import urlencode

import pytest

from gateway.cache.answers import AnswerId, variables_digest
from gateway.http.fastpath import answer_id_of
from resolvers.caller import Caller
from tests.support.clock import MovableClock
from tests.support.cycles import prewarm, refresh_all
from tests.support.dataset import ADMIN, DANA, DREW, NOW
from tests.support.fast_path import (
    CACHE_HEADERS,
    DETAIL_OP,
    LIST_OP,
    SUMMARY_OP,
    get,
    hits,
    params,
    set_capacity,
)
from tests.support.gateway import StatementCounter, services_of, settings_for
from tests.support.gateway_client import GatewayClient, gateway_client

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


async def test_prewarmed_answer_is_served_without_execution(fast: GatewayClient) -> None:
    report = await prewarm(services_of(fast))
    # 3 directors + 1 admin, two pages each; Nora's empty list has no computedAt to bound
    # its lifetime, so it is executed each time rather than stored.
    assert (report.callers, report.stored) == (4, 7)
    before = hits()
    with StatementCounter(fast) as counter:
        response = await get(fast, SUMMARY_OP, DANA)
    assert counter.count == 0
    assert hits() == before + 1
    assert response.status_code == 200
    body = response.json()
    assert "errors" not in body
    assert body["data"]["me"]["summary"]["averageReadiness"] == 61.0


async def test_fast_answer_equals_executed_answer_byte_for_byte(
    dataset_url: str, redis_url: str, manifest: str, fast: GatewayClient
) -> None:
    await prewarm(services_of(fast))
    cached = await get(fast, LIST_OP, DANA)
    settings = settings_for(
        dataset_url, redis_url, persisted_manifest=manifest, response_cache_enabled=False
    )
    async with gateway_client(settings, fast.clock) as executed_api:
        executed = await get(executed_api, LIST_OP, DANA)
    assert cached.content == executed.content
    assert {h: cached.headers[h] for h in CACHE_HEADERS} == {
        h: executed.headers[h] for h in CACHE_HEADERS
    }
    assert cached.headers["cache-control"] == "private, max-age=300"
    assert cached.headers["vary"] == "Authorization, Accept, Accept-Encoding"


async def test_miss_executes_once_then_hits(fast: GatewayClient) -> None:
    variables = {"id": 101}
    first = await get(fast, DETAIL_OP, DANA, variables=variables)
    before = hits()
    with StatementCounter(fast) as counter:
        second = await get(fast, DETAIL_OP, DANA, variables=variables)
    assert counter.count == 0
    assert hits() == before + 1
    assert second.content == first.content
    assert second.headers["etag"] == first.headers["etag"]
    not_modified = await get(
        fast, DETAIL_OP, DANA, variables=variables, **{"If-None-Match": first.headers["etag"]}
    )
    assert (not_modified.status_code, not_modified.content) == (304, b"")
    assert not_modified.headers["etag"] == first.headers["etag"]


async def test_answers_never_cross_callers(fast: GatewayClient) -> None:
    await prewarm(services_of(fast))
    answers = {}
    for user, role in ((DANA, "director"), (DREW, "director"), (ADMIN, "admin")):
        response = await get(fast, LIST_OP, user, role)
        ids = [e["node"]["id"] for e in response.json()["data"]["me"]["cohorts"]["edges"]]
        answers[user] = (ids, response.headers["etag"])
    assert answers[DANA][0] == [102, 101, 104]
    assert answers[DREW][0] == [103, 102]
    assert answers[ADMIN][0] == [103, 102, 101, 104]
    assert len({etag for _, etag in answers.values()}) == 3
    # Dana's ETag is no validator for Drew: he gets his full answer, not a 304.
    response = await get(fast, LIST_OP, DREW, **{"If-None-Match": answers[DANA][1]})
    assert response.status_code == 200
    # Out-of-scope detail: an error answer, never stored, never another caller's bytes.
    for _ in range(2):
        response = await get(fast, DETAIL_OP, DANA, variables={"id": 103})
        assert [e["extensions"]["code"] for e in response.json()["errors"]] == ["NOT_FOUND"]
        assert response.headers["cache-control"] == "no-store"


async def test_refresh_of_a_subtree_replaces_the_answers_built_from_it(
    dataset_url: str, fast: GatewayClient
) -> None:
    services = services_of(fast)
    await prewarm(services)
    old = await get(fast, SUMMARY_OP, DREW)
    assert old.json()["data"]["me"]["summary"]["seats"]["total"] == 10
    await set_capacity(dataset_url, 102, 20)
    try:
        # Until a refresh, the stored answer stands (that is what a cache is).
        assert (await get(fast, SUMMARY_OP, DREW)).content == old.content
        fast.clock.advance(60)
        done = await services.refresh.refresh_cohort(102, services.clock())
        assert (done.directors, done.later) == ([DANA, DREW], [Caller(ADMIN, "admin")])
        with StatementCounter(fast) as counter:
            new = await get(fast, SUMMARY_OP, DREW)
        assert counter.count == 0  # rebuilt from the refreshed subtrees, not from upstream
        assert new.json()["data"]["me"]["summary"]["seats"]["total"] == 20
        assert new.headers["etag"] != old.headers["etag"]
        detail = await get(fast, DETAIL_OP, DREW, variables={"id": 102})
        assert detail.json()["data"]["cohort"]["computedAt"] == "2026-11-24T12:01:00.000000Z"
    finally:
        await set_capacity(dataset_url, 102, 10)


async def test_stored_answer_expires_when_its_subtrees_turn_stale(fast: GatewayClient) -> None:
    await prewarm(services_of(fast))
    fast.clock.advance(120)
    response = await get(fast, SUMMARY_OP, DANA)
    assert response.headers["cache-control"] == "private, max-age=180"
    key = services_of(fast).answers.key(
        Caller(DANA, "director"), AnswerId.of(SUMMARY_OP.sha256, SUMMARY_OP.name, None)
    )
    ttl_ms = await services_of(fast).kv.client.pttl(key)
    assert 0 < ttl_ms <= 300_000  # stored with the wall clock: at most one interval
    # Past the interval the stored bytes (stale: false) must not be served.
    fast.clock.advance(200)
    await services_of(fast).kv.client.delete(key)  # what Redis' expiry does on its own clock
    response = await get(fast, SUMMARY_OP, DANA)
    assert response.json()["data"]["me"]["summary"]["stale"] is True
    assert response.headers["cache-control"] == "private, max-age=0"
    # An answer built from a stale subtree is not stored.
    assert await services_of(fast).kv.client.exists(key) == 0


async def test_hits_are_answered_in_front_of_routing_with_the_endpoints_headers(
    dataset_url: str, redis_url: str, manifest: str, fast: GatewayClient
) -> None:
    settings = settings_for(
        dataset_url, redis_url, persisted_manifest=manifest, cors_origins=["https://dash.test"]
    )
    async with gateway_client(settings, fast.clock) as api:
        await prewarm(services_of(api))
        before = hits()
        response = await get(
            api,
            SUMMARY_OP,
            DANA,
            **{
                "Origin": "https://dash.test",
                "X-Request-Id": "r-42",
                "Accept-Encoding": "identity",
            },
        )
        assert hits() == before + 1
        assert response.status_code == 200
        # CORS wraps the fast path; the caller's request id comes back.
        assert response.headers["access-control-allow-origin"] == "https://dash.test"
        assert response.headers["x-request-id"] == "r-42"
        assert response.headers["content-length"] == str(len(response.content))
        # A bad token is the endpoint's 401 with a JSON body, not a fast-path answer.
        refused = await api.http.get(
            "/graphql", params=params(SUMMARY_OP), headers={"Authorization": "Bearer nope"}
        )
        assert refused.status_code == 401
        assert refused.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        assert refused.headers["www-authenticate"] == 'Bearer realm="gateway"'


PERSISTED = {"extensions": json.dumps({"persistedQuery": {"version": 1, "sha256Hash": "a" * 64}})}


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (
            {**PERSISTED, "operationName": "CohortDetail", "variables": '{"id": 101}'},
            AnswerId("a" * 64, "CohortDetail", variables_digest("CohortDetail", b'{"id":101}')),
        ),
        (
            {**PERSISTED, "operationName": ""},
            AnswerId("a" * 64, None, variables_digest(None, b"{}")),
        ),
        # An empty `query` is no query, for the endpoint as for the fast path.
        ({**PERSISTED, "query": ""}, AnswerId("a" * 64, None, variables_digest(None, b"{}"))),
        # Each of these goes on to the endpoint, which answers or refuses it itself.
        ({}, None),
        ({"query": "{ me { id } }"}, None),
        ({"extensions": '{"persistedQuery": {"version": 2}}'}, None),
        ({"extensions": "not-json"}, None),
        ({**PERSISTED, "variables": "[1]"}, None),
        ({**PERSISTED, "graphiql-asset": "graphiql.min.js"}, None),
    ],
)
def test_persisted_get_parsing(params: dict[str, str], expected, backend) -> None:
    assert answer_id_of(urlencode(params).encode()) == expected


async def test_answers_live_as_long_as_their_subtrees_are_fresh(
    dataset_url: str, redis_url: str, manifest: str
) -> None:
    """With a grace, an answer outlives the next cron tick by the grace, like its subtrees:
    the cycle that replaces it runs meanwhile, and no request misses in between."""
    clock = MovableClock(NOW)
    settings = settings_for(dataset_url, redis_url, persisted_manifest=manifest, refresh_grace_s=60)
    async with gateway_client(settings, clock) as api:
        services = services_of(api)
        await refresh_all(services)
        await prewarm(services)
        key = services.answers.key(
            Caller(DANA, "director"), AnswerId.of(SUMMARY_OP.sha256, SUMMARY_OP.name, None)
        )
        assert 300_000 < await services.kv.client.pttl(key) <= 360_000
        clock.advance(330)  # past the interval, within the grace
        before = hits()
        response = await get(api, SUMMARY_OP, DANA)
        assert hits() == before + 1
        assert response.json()["data"]["me"]["summary"]["stale"] is False
        # max-age still ends at the refresh: clients revalidate from then on (ETag).
        assert response.headers["cache-control"] == "private, max-age=0"


async def test_repeated_headers_are_read_as_the_endpoint_reads_them(fast: GatewayClient) -> None:
    """The first of repeated headers counts, on a hit as on a miss (Starlette's rule)."""
    await prewarm(services_of(fast))
    valid = fast.auth(DANA)["Authorization"]
    headers = [("Authorization", "Bearer garbage"), ("Authorization", valid)]
    response = await fast.http.get("/graphql", params=params(SUMMARY_OP), headers=headers)
    assert response.status_code == 401
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    swapped = await fast.http.get(
        "/graphql", params=params(SUMMARY_OP), headers=list(reversed(headers))
    )
    assert swapped.status_code == 200


async def test_undeclared_variables_are_answered_but_not_stored(fast: GatewayClient) -> None:
    variables = {"id": 101, "junk": 1}
    first = await get(fast, DETAIL_OP, DANA, variables=variables)
    second = await get(fast, DETAIL_OP, DANA, variables=variables)
    assert first.json()["data"]["cohort"]["id"] == 101
    assert second.content == first.content
    key = services_of(fast).answers.key(
        Caller(DANA, "director"),
        AnswerId.of(DETAIL_OP.sha256, DETAIL_OP.name, {"id": 101, "junk": 1}),
    )
    assert await services_of(fast).kv.client.exists(key) == 0


async def test_json_answers_say_nosniff_on_every_path(fast: GatewayClient) -> None:
    """Executed (a miss), stored (a hit, GET and POST), with errors, and refused."""
    executed = await get(fast, SUMMARY_OP, DANA)
    stored = await get(fast, SUMMARY_OP, DANA)
    posted = await fast.http.post(
        "/graphql",
        json={"query": SUMMARY_OP.body, "operationName": SUMMARY_OP.name},
        headers=fast.auth(DANA),
    )
    with_errors = await fast.post("query C { cohort(id: 103) { id } }", user=DANA)
    refused = await fast.http.get("/graphql", params=params(SUMMARY_OP))
    assert [r.status_code for r in (executed, stored, posted, with_errors, refused)] == [
        200,
        200,
        200,
        200,
        401,
    ]
    assert [e["extensions"]["code"] for e in with_errors.json()["errors"]] == ["NOT_FOUND"]
    for response in (executed, stored, posted, with_errors, refused):
        assert response.headers["x-content-type-options"] == "nosniff"
