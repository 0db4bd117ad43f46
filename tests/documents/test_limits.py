"""Each limit at and just past its bound; breaches are 4xx with a stable code, never a 500."""

from typing import Any

import httpx
import pytest
from graphql import validate

from gateway.documents import limits
from gateway.documents.dashboard import dashboard_operations
from gateway.documents.limits import DocumentPreparer, LimitExceeded, limits_of
from gateway.settings import Settings
from resolvers.schema import build_schema
from tests.support.dataset import ADMIN, DANA, NOW
from tests.support.gateway_client import GatewayClient, fixed_clock, gateway_client
from tests.support.pathological import CASES, Case, fan_out

# Depth counts field levels: me 1, cohorts 2, edges 3, node 4, id 5.
DEPTH_5 = "{ me { cohorts { edges { node { id } } } } }"
DEPTH_6 = "{ me { cohorts { edges { node { track { id } } } } } }"
DEPTH_6_BY_FRAGMENT = (
    "{ me { ...Page } } fragment Page on Director { cohorts { edges { node { ...T } } } } "
    "fragment T on Cohort { track { id } }"
)
TWO_ALIASES = "{ a: me { id } b: me { id } }"
THREE_ALIASES = "{ a: me { id } b: me { i: id } }"
SIX_TOKENS = "{ me { id } }"  # { me { id } }
SEVEN_TOKENS = "{ me { id name } }"
# Cost: me 1 + cohorts 1 + (edges, node, id) × first.
PAGE = "query P($first: Int!) { me { cohorts(first: $first) { edges { node { id } } } } }"
DEFAULT_PAGE = "{ me { cohorts { edges { node { id } } } } }"  # first defaults to 20: 62
CYCLE = "{ me { ...A } } fragment A on Director { id ...B } fragment B on Director { ...A }"


def refusal(response: httpx.Response) -> tuple[int, str, str]:
    [error] = response.json()["errors"]
    return response.status_code, error["extensions"]["code"], error["message"]


@pytest.fixture(scope="module")
async def api(dataset_url: str):
    settings = Settings(
        database_url=dataset_url,
        max_depth=5,
        max_aliases=2,
        max_tokens=200,
        max_cost=62,
        max_body_bytes=200,
    )
    async with gateway_client(settings, fixed_clock(NOW)) as client:
        yield client


async def test_depth(api: GatewayClient) -> None:
    data = await api.data(DEPTH_5, user=DANA)
    assert [e["node"]["id"] for e in data["me"]["cohorts"]["edges"]] == [102, 101, 104]
    deep = (400, "QUERY_TOO_DEEP", "The query has depth 6; the limit is 5.")
    assert refusal(await api.post(DEPTH_6, user=DANA)) == deep
    assert refusal(await api.post(DEPTH_6_BY_FRAGMENT, user=DANA)) == deep


async def test_aliases(api: GatewayClient) -> None:
    assert await api.data(TWO_ALIASES, user=DANA) == {"a": {"id": DANA}, "b": {"id": DANA}}
    assert refusal(await api.post(THREE_ALIASES, user=DANA)) == (
        400,
        "TOO_MANY_ALIASES",
        "The query has 3 aliases; the limit is 2.",
    )


async def test_tokens(dataset_url: str) -> None:
    settings = Settings(database_url=dataset_url, max_tokens=6)
    async with gateway_client(settings, fixed_clock(NOW)) as api:
        assert await api.data(SIX_TOKENS, user=DANA) == {"me": {"id": DANA}}
        assert refusal(await api.post(SEVEN_TOKENS, user=DANA)) == (
            400,
            "TOO_MANY_TOKENS",
            "The document has more than 6 tokens.",
        )


async def test_cost_from_first_arguments(api: GatewayClient) -> None:
    page = await api.data(PAGE, {"first": 20}, user=DANA)
    assert [e["node"]["id"] for e in page["me"]["cohorts"]["edges"]] == [102, 101, 104]
    assert (await api.data(DEFAULT_PAGE, user=DANA)) == page
    assert refusal(await api.post(PAGE, {"first": 21}, user=DANA)) == (
        400,
        "QUERY_TOO_COSTLY",
        "The query costs 65; the limit is 62.",
    )
    # A literal counts like a variable.
    literal = "{ me { cohorts(first: 21) { edges { node { id } } } } }"
    assert refusal(await api.post(literal, user=DANA))[1] == "QUERY_TOO_COSTLY"


async def test_nested_pages_multiply(dataset_url: str) -> None:
    nested = "{ directors(first: 10) { nodes { cohorts(first: 10) { totalCount } } } }"
    # directors 1 + nodes 10 + cohorts 10 + totalCount 10 × 10 = 121.
    async with gateway_client(
        Settings(database_url=dataset_url, max_cost=121), fixed_clock(NOW)
    ) as api:
        data = await api.data(nested, user=ADMIN, role="admin")
        assert [n["cohorts"]["totalCount"] for n in data["directors"]["nodes"]] == [3, 2, 0]
        wider = nested.replace("directors(first: 10)", "directors(first: 11)")
        assert refusal(await api.post(wider, user=ADMIN, role="admin")) == (
            400,
            "QUERY_TOO_COSTLY",
            "The query costs 133; the limit is 121.",
        )


async def post_raw(api: GatewayClient, content: Any) -> httpx.Response:
    headers = {**api.auth(DANA), "content-type": "application/json"}
    return await api.http.post("/graphql", content=content, headers=headers)


async def test_body_bytes(api: GatewayClient) -> None:
    body = b'{"query": "{ me { id } }"}'
    at_bound = body[:-1] + b" " * (200 - len(body)) + b"}"
    assert len(at_bound) == 200
    response = await post_raw(api, at_bound)
    assert response.json() == {"data": {"me": {"id": DANA}}}
    too_large = (413, "REQUEST_TOO_LARGE", "Request body exceeds 200 bytes.")
    assert refusal(await post_raw(api, at_bound + b" ")) == too_large

    async def chunked():  # no Content-Length: the bound holds while streaming
        yield at_bound
        yield b" "

    assert refusal(await post_raw(api, chunked())) == too_large


BATCH_REFUSED = "Batched operations are not accepted: send each operation in a request of its own."


async def test_batches_are_refused_once_per_operation(api: GatewayClient) -> None:
    """An array of the batch's length, one BATCHING_DISABLED per operation (what Apollo's
    BatchHttpLink needs to report it); 400 under the spec's media type, 200 with `data: null`
    under application/json, as any request error there."""
    batch = [{"query": "{ me { id } }"}, {"query": "query Two { me { name } }"}, {}]
    for accept, status, extra in [
        ("application/graphql-response+json", 400, {}),
        ("application/json", 200, {"data": None}),
        (None, 200, {"data": None}),
    ]:
        headers = {**api.auth(DANA), **({"Accept": accept} if accept else {})}
        response = await api.http.post("/graphql", json=batch, headers=headers)
        assert response.status_code == status
        assert response.headers["cache-control"] == "no-store"
        request_id = response.headers["x-request-id"]
        error = {
            "message": BATCH_REFUSED,
            "extensions": {"code": "BATCHING_DISABLED", "requestId": request_id},
        }
        assert response.json() == [{**extra, "errors": [error]}] * 3


async def test_malformed_batches_are_a_plain_400(api: GatewayClient) -> None:
    for body, message in [
        ([], "An empty batch: send one operation, as an object."),
        ([{"query": "{ me { id } }"}, "{ me { id } }"], "A batch holds operation objects only."),
        ([1, 2], "A batch holds operation objects only."),
    ]:
        response = await api.http.post("/graphql", json=body, headers=api.auth(DANA))
        assert refusal(response) == (400, "BAD_REQUEST", message)


async def test_fragment_cycle_is_a_validation_error(dataset_url: str) -> None:
    async with gateway_client(Settings(database_url=dataset_url), fixed_clock(NOW)) as api:
        response = await api.post(CYCLE, user=DANA)
        assert response.status_code == 200
        codes = {e["extensions"]["code"] for e in response.json()["errors"]}
        assert codes == {"GRAPHQL_VALIDATION_FAILED"}


async def test_parser_nesting_bound_is_a_depth_refusal(dataset_url: str) -> None:
    async with gateway_client(Settings(database_url=dataset_url), fixed_clock(NOW)) as api:
        levels = 300
        query = "{ " + "me { " * levels + "id" + " }" * levels + " }"
        assert refusal(await api.post(query, user=DANA)) == (
            400,
            "QUERY_TOO_DEEP",
            "The query is nested deeper than 10.",
        )


async def test_dashboard_operations_fit_the_default_limits(dataset_url: str) -> None:
    operations = dashboard_operations()
    variables = {"CohortDetail": {"id": 101}, "CohortList": {"first": 100}, "DirectorSummary": {}}
    async with gateway_client(Settings(database_url=dataset_url), fixed_clock(NOW)) as api:
        for name, operation in operations.items():
            if operation.type == "subscription":
                continue  # their limits: tests/live/test_subscriptions.py
            data = await api.data(operation.body, variables[name], user=ADMIN, role="admin")
            assert list(data) == ["cohort" if name == "CohortDetail" else "me"], name


@pytest.fixture(scope="module")
async def defaults(dataset_url: str):
    async with gateway_client(Settings(database_url=dataset_url), fixed_clock(NOW)) as client:
        yield client


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
async def test_pathological_documents_get_their_code(
    defaults: GatewayClient, case: Case, monkeypatch: pytest.MonkeyPatch
) -> None:
    validations: list[str] = []

    def counted(schema: Any, document: Any, *args: Any, **kwargs: Any) -> Any:
        validations.append(case.name)
        return validate(schema, document, *args, **kwargs)

    monkeypatch.setattr(limits, "validate", counted)
    user, role = (ADMIN, "admin") if case.admin else (DANA, "director")
    body = {"query": case.query, "variables": case.variables, "operationName": case.operation_name}
    response = await defaults.http.post("/graphql", json=body, headers=defaults.auth(user, role))
    assert response.status_code == case.status, response.text[:300]
    errors = response.json().get("errors")
    if case.code is None:
        assert errors is None, errors
    else:
        assert errors is not None and errors[0]["extensions"]["code"] == case.code, errors
    # A bound measured before validation: graphql-core never saw the document.
    assert validations == ([] if case.before_validation else [case.name])


async def test_measuring_is_linear_in_the_document(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each selection set is measured once however often its fragment is spread: the
    fan-out of n fragments costs n + 3 walks (the old measure expanded all 2^n spreads),
    and its cost, 2^n ids and `me`, is exact."""
    from gateway.documents import measure

    walks: list[int] = []
    shape = measure._ShapeWalker.shape

    def counted(self: Any, *args: Any) -> Any:
        walks.append(1)
        return shape(self, *args)

    monkeypatch.setattr(measure._ShapeWalker, "shape", counted)
    loose = Settings(max_fields=10**9, max_selections=10**9, max_repeated_fields=10**9)
    preparer = DocumentPreparer(
        build_schema()._schema, limits_of(loose), introspection=True, suggestions=True
    )
    for n in (16, 20, 24):
        walks.clear()
        prepared = preparer.prepare(fan_out(n))
        assert prepared.errors == [] and prepared.document is not None
        assert len(walks) == n + 3  # F0…Fn, the operation and `me`
        operation = prepared.document.definitions[0]
        with pytest.raises(LimitExceeded) as refused:
            preparer.check(prepared, operation, {})  # type: ignore[arg-type]
        assert refused.value.message == f"The query costs {2**n + 1}; the limit is 50000."
