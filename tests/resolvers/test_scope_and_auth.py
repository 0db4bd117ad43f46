"""Scope (a director never reaches another's cohorts), authentication and bad input."""

import base64
import json
import time
from unittest.mock import ANY

import jwt
import pytest

from gateway.settings import Settings
from tests.support.dataset import ADMIN, DANA, DREW, NORA, NOW
from tests.support.gateway_client import GatewayClient, fixed_clock, gateway_client

COHORT = "query C($id: Int!) { cohort(id: $id) { id name } }"
DIRECTOR = "query D($id: Int!) { director(id: $id) { id name summary { totalCohorts } } }"
DIRECTORS = """
query L($first: Int, $after: String) {
  directors(first: $first, after: $after) { nodes { id } endCursor hasNextPage }
}
"""
PAGE = """
query P($first: Int, $after: String, $filter: CohortFilter, $orderBy: CohortOrder) {
  me {
    cohorts(first: $first, after: $after, filter: $filter, orderBy: $orderBy) {
      edges { node { id } }
      pageInfo { endCursor }
    }
  }
}
"""


@pytest.fixture(scope="module")
async def api(dataset_url: str):
    async with gateway_client(Settings(database_url=dataset_url), fixed_clock(NOW)) as client:
        yield client


async def errors_of(
    api: GatewayClient, query: str, variables: dict, user: int, role: str = "director"
):
    response = await api.post(query, variables, user=user, role=role)
    assert response.status_code == 200, response.text
    body = response.json()
    return body["data"], [(e["extensions"]["code"], e["message"]) for e in body["errors"]]


async def test_out_of_scope_cohort_answers_like_a_missing_one(api: GatewayClient) -> None:
    # 103 exists (Drew's), 999 does not: Dana gets the same answer for both.
    data, errors = await errors_of(api, COHORT, {"id": 103}, DANA)
    assert data is None
    assert errors == [("NOT_FOUND", "Cohort 103 not found")]
    data, errors = await errors_of(api, COHORT, {"id": 999}, DANA)
    assert errors == [("NOT_FOUND", "Cohort 999 not found")]
    assert await api.data(COHORT, {"id": 103}, user=DREW) == {
        "cohort": {"id": 103, "name": "Old Spring"}
    }


async def test_shared_track_cohort_is_visible_to_both_directors(api: GatewayClient) -> None:
    for user in (DANA, DREW):
        assert (await api.data(COHORT, {"id": 102}, user=user))["cohort"]["id"] == 102


async def test_director_by_id_only_for_self_unless_admin(api: GatewayClient) -> None:
    data, errors = await errors_of(api, DIRECTOR, {"id": DREW}, DANA)
    assert errors == [("NOT_FOUND", f"Director {DREW} not found")]
    own = await api.data(DIRECTOR, {"id": DANA}, user=DANA)
    assert own == {
        "director": {"id": DANA, "name": "Dana Director", "summary": {"totalCohorts": 3}}
    }
    other = await api.data(DIRECTOR, {"id": DREW}, user=ADMIN, role="admin")
    assert other == {
        "director": {"id": DREW, "name": "Drew Director", "summary": {"totalCohorts": 2}}
    }
    # A learner id is not a director, even for an admin.
    data, errors = await errors_of(api, DIRECTOR, {"id": 10}, ADMIN, "admin")
    assert errors == [("NOT_FOUND", "Director 10 not found")]


async def test_directors_list_is_for_admins(api: GatewayClient) -> None:
    data, errors = await errors_of(api, DIRECTORS, {}, DANA)
    assert errors == [("FORBIDDEN", "Only admins may list directors.")]
    first = (await api.data(DIRECTORS, {"first": 2}, user=ADMIN, role="admin"))["directors"]
    assert [n["id"] for n in first["nodes"]] == [DANA, DREW]
    assert first["hasNextPage"] is True
    rest = await api.data(
        DIRECTORS, {"first": 2, "after": first["endCursor"]}, user=ADMIN, role="admin"
    )
    assert [n["id"] for n in rest["directors"]["nodes"]] == [NORA]
    assert rest["directors"]["hasNextPage"] is False


@pytest.mark.parametrize(
    "key",
    [[True], [2**64], [2**31], [0], [-1], ["2"], [1.5], [None], [], [2, 3], [{"id": 2}]],
    ids=repr,
)
async def test_a_forged_directors_cursor_is_bad_user_input(api: GatewayClient, key) -> None:
    raw = json.dumps(["directors", key]).encode()  # orjson cannot write 2^64
    cursor = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    data, errors = await errors_of(api, DIRECTORS, {"after": cursor}, ADMIN, "admin")
    assert (data, errors) == (None, [("BAD_USER_INPUT", "Malformed cursor.")])


async def test_filters_and_cursors_cannot_widen_scope(api: GatewayClient) -> None:
    # Track 3 belongs to Drew only: filtering Dana's list by it yields nothing.
    page = await api.data(PAGE, {"filter": {"trackId": 3}}, user=DANA)
    assert page["me"]["cohorts"]["edges"] == []
    # Drew's cursor pointing at his cohort 103 continues Dana's own list, never shows 103.
    drew = await api.data(
        PAGE, {"first": 1, "orderBy": {"field": "NAME", "direction": "DESC"}}, user=DREW
    )
    cursor = drew["me"]["cohorts"]["pageInfo"]["endCursor"]
    dana = await api.data(
        PAGE, {"after": cursor, "orderBy": {"field": "NAME", "direction": "DESC"}}, user=DANA
    )
    # Names after "Old Spring" descending, in Dana's own scope only.
    assert [e["node"]["id"] for e in dana["me"]["cohorts"]["edges"]] == [102, 101, 104]


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"first": 0}, "`first` must be between 1 and 100, got 0."),
        ({"first": 101}, "`first` must be between 1 and 100, got 101."),
        ({"after": "not-a-cursor"}, "Malformed cursor."),
    ],
)
async def test_bad_arguments_are_bad_user_input(api: GatewayClient, variables, message) -> None:
    data, errors = await errors_of(api, PAGE, variables, DANA)
    assert errors == [("BAD_USER_INPUT", message)]


async def test_cursor_of_another_order_is_rejected(api: GatewayClient) -> None:
    page = await api.data(PAGE, {"first": 1}, user=DANA)
    cursor = page["me"]["cohorts"]["pageInfo"]["endCursor"]
    data, errors = await errors_of(api, PAGE, {"after": cursor, "orderBy": {"field": "NAME"}}, DANA)
    assert errors == [("BAD_USER_INPUT", "Cursor does not belong to this ordering.")]


async def test_unknown_enum_is_bad_user_input(api: GatewayClient) -> None:
    response = await api.post(PAGE, {"filter": {"status": ["ARCHIVED"]}}, user=DANA)
    body = response.json()
    assert [e["extensions"]["code"] for e in body["errors"]] == ["BAD_USER_INPUT"]
    response = await api.post(
        "{ me { cohorts(filter: {mode: [BOAT]}) { totalCount } } }", user=DANA
    )
    assert [e["extensions"]["code"] for e in response.json()["errors"]] == ["BAD_USER_INPUT"]


def _token(settings: Settings, **claims) -> str:
    return jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm="HS256")


async def test_authentication_failures_are_401_json(api: GatewayClient) -> None:
    settings = api.settings
    now = int(time.time())
    good = {"sub": str(DANA), "role": "director", "iat": now, "exp": now + 60}
    header, payload, _ = _token(settings, **good).split(".")
    cases = {
        "missing": None,
        "not bearer": "Basic abc",
        "garbage": "Bearer abc.def.ghi",
        "expired": f"Bearer {_token(settings, **{**good, 'exp': now - 10})}",
        "wrong secret": "Bearer "
        + jwt.encode(good, "another-secret-of-sufficient-length!!", algorithm="HS256"),
        "alg none": "Bearer " + jwt.encode(good, None, algorithm="none"),
        "no exp": f"Bearer {_token(settings, sub=str(DANA), role='director', iat=now)}",
        "no role": f"Bearer {_token(settings, sub=str(DANA), iat=now, exp=now + 60)}",
        "learner role": f"Bearer {_token(settings, **{**good, 'role': 'learner'})}",
        "bad sub": f"Bearer {_token(settings, **{**good, 'sub': 'dana'})}",
        "no iat": f"Bearer {_token(settings, **{k: v for k, v in good.items() if k != 'iat'})}",
        "exp 1e20": f"Bearer {_token(settings, **{**good, 'exp': 1e20})}",
        "role list": f"Bearer {_token(settings, **{**good, 'role': ['admin']})}",
        "role object": f"Bearer {_token(settings, **{**good, 'role': {'admin': 1}})}",
        "sub with spaces": f"Bearer {_token(settings, **{**good, 'sub': ' 2 '})}",
        "sub +2": f"Bearer {_token(settings, **{**good, 'sub': '+2'})}",
        "sub Arabic-Indic 2": f"Bearer {_token(settings, **{**good, 'sub': '٢'})}",
        "sub 2_0": f"Bearer {_token(settings, **{**good, 'sub': '2_0'})}",
        "sub 30 nines": f"Bearer {_token(settings, **{**good, 'sub': '9' * 30})}",
        # Past the INTEGER id columns: PostgreSQL would refuse the statement.
        "sub 2^31": f"Bearer {_token(settings, **{**good, 'sub': str(2**31)})}",
        "sub 2^63": f"Bearer {_token(settings, **{**good, 'sub': str(2**63)})}",
        "admin claim of a director": f"Bearer {_token(settings, **{**good, 'role': 'admin'})}",
        "director claim of a learner": f"Bearer {_token(settings, **{**good, 'sub': '10'})}",
    }
    for name, value in cases.items():
        headers = {"Authorization": value} if value else {}
        response = await api.http.post("/graphql", json={"query": "{ me { id } }"}, headers=headers)
        assert response.status_code == 401, name
        assert response.headers["content-type"] == "application/json", name
        assert response.headers["www-authenticate"] == 'Bearer realm="gateway"', name
        [error] = response.json()["errors"]
        assert error["extensions"] == {"code": "UNAUTHENTICATED", "requestId": ANY}, name


async def test_mutation_over_get_and_malformed_bodies(api: GatewayClient) -> None:
    headers = api.auth(DANA)
    mutation = "mutation { requestRefresh(cohortId: 101) { accepted } }"
    response = await api.http.get("/graphql", params={"query": mutation}, headers=headers)
    assert response.status_code in (400, 405)
    response = await api.http.post(
        "/graphql", content=b"{not json", headers={**headers, "content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    response = await api.http.post(
        "/graphql", content=b"query", headers={**headers, "content-type": "text/plain"}
    )
    assert response.status_code == 415
    response = await api.http.post("/graphql", json=[{"query": "{ me { id } }"}], headers=headers)
    assert response.status_code == 200
    [refused] = response.json()
    assert refused["errors"][0]["extensions"]["code"] == "BATCHING_DISABLED"
    # Past 100 operations, one error for the whole array: a refusal stays small.
    response = await api.http.post("/graphql", json=[{}] * 101, headers=headers)
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "BATCHING_DISABLED"
    response = await api.http.get("/graphql", params={"query": "{ me { id } }"}, headers=headers)
    assert response.json() == {"data": {"me": {"id": DANA}}}
