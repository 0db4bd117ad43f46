"""The users table, not the token, is the authority on who is asking: a role claim that
is not the user's role, a user with no dashboard, a demotion or a deletion are refused
with UNAUTHENTICATED over POST, over the persisted-GET fast path and on ETag
revalidation — a change in the table within one refresh of that user."""

import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from sqlalchemy import delete, update

from gateway.cache.answers import AnswerId, AnswerRequest
from gateway.refresh.answers import AnswerBuilder
from loaders.programs import track_directors, users
from resolvers.caller import Caller
from tests.support import dataset
from tests.support.clock import MovableClock
from tests.support.cycles import prewarm, refresh_all
from tests.support.dataset import ADMIN, DANA, DREW, NOW
from tests.support.fast_path import LIST_OP, SUMMARY_OP, params
from tests.support.gateway import services_of, settings_for
from tests.support.gateway_client import GatewayClient, gateway_client

LEARNER = 10
ME = "{ me { id summary { totalCohorts } } }"
REFUSED = 401


@pytest.fixture
async def private_db(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'upstream.sqlite3'}"
    await dataset.load(url)
    return url


@pytest.fixture
async def api(private_db: str, redis_url: str, manifest: str):
    """The gateway with its subtrees refreshed and every dashboard page prewarmed."""
    clock = MovableClock(NOW)
    settings = settings_for(private_db, redis_url, persisted_manifest=manifest)
    async with gateway_client(settings, clock) as client:
        client.clock = clock  # type: ignore[attr-defined]
        services = services_of(client)
        await refresh_all(services)
        await prewarm(services)
        yield client


async def refresh_user(api: GatewayClient, caller: Caller) -> None:
    """What a webhook naming that director, or `gateway refresh --director-id`, runs."""
    services = services_of(api)
    await services.refresh.refresh_director(caller, services.clock())


def bearer(api: GatewayClient, user: int, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api.token(user, role)}"}


async def post(api: GatewayClient, user: int, role: str) -> Any:
    return await api.http.post("/graphql", json={"query": ME}, headers=bearer(api, user, role))


async def fast_get(api: GatewayClient, user: int, role: str, etag: str | None = None) -> Any:
    headers = bearer(api, user, role)
    if etag is not None:
        headers["If-None-Match"] = etag
    return await api.http.get("/graphql", params=params(SUMMARY_OP), headers=headers)


def assert_refused(response: Any, message: str) -> None:
    assert response.status_code == REFUSED, response.text
    assert response.headers["www-authenticate"] == 'Bearer realm="gateway"'
    [error] = response.json()["errors"]
    assert (error["extensions"]["code"], error["message"]) == ("UNAUTHENTICATED", message)


async def etag_of(api: GatewayClient, user: int, role: str) -> str:
    served = await fast_get(api, user, role)
    assert served.status_code == 200 and "errors" not in served.json()
    return served.headers["etag"]


@pytest.mark.parametrize(
    ("user", "claimed", "message"),
    [
        (DANA, "admin", "The token's role is not the user's role."),
        (ADMIN, "director", "The token's role is not the user's role."),
        (LEARNER, "director", "The token's user has no dashboard."),
        (LEARNER, "admin", "The token's user has no dashboard."),
        (999, "director", "The token's user has no dashboard."),
    ],
)
async def test_a_claim_the_users_table_does_not_hold_is_refused(
    api: GatewayClient, user: int, claimed: str, message: str
) -> None:
    assert_refused(await post(api, user, claimed), message)
    assert_refused(await fast_get(api, user, claimed), message)
    # With the ETag the real user's answer carries: never a 304.
    real_etag = await etag_of(api, ADMIN if claimed == "admin" else DANA, claimed)
    assert_refused(await fast_get(api, user, claimed, real_etag), message)
    page = await api.http.get(
        "/graphql", params=params(LIST_OP), headers=bearer(api, user, claimed)
    )
    assert_refused(page, message)


async def test_claims_the_table_holds_are_served(api: GatewayClient) -> None:
    for user, role, total in ((DANA, "director", 3), (DREW, "director", 2), (ADMIN, "admin", 4)):
        response = await post(api, user, role)
        assert response.json() == {"data": {"me": {"id": user, "summary": {"totalCohorts": total}}}}
        etag = await etag_of(api, user, role)
        assert (await fast_get(api, user, role, etag)).status_code == 304


async def test_a_demotion_takes_effect_with_one_refresh_of_that_user(
    api: GatewayClient, private_db: str
) -> None:
    etag = await etag_of(api, DANA, "director")
    await dataset.execute(
        private_db, update(users).where(users.c.id == DANA).values(role="learner")
    )
    # Until that user is refreshed (or their profile entry turns stale), what is cached
    # stands: the change is not known yet.
    assert (await post(api, DANA, "director")).status_code == 200
    assert (await fast_get(api, DANA, "director")).status_code == 200
    await refresh_user(api, Caller(DANA, "director"))
    message = "The token's user has no dashboard."
    assert_refused(await post(api, DANA, "director"), message)
    assert_refused(await fast_get(api, DANA, "director"), message)
    assert_refused(await fast_get(api, DANA, "director", etag), message)


async def test_an_admin_demoted_to_director_loses_every_cohort(
    api: GatewayClient, private_db: str
) -> None:
    etag = await etag_of(api, ADMIN, "admin")
    await dataset.execute(
        private_db, update(users).where(users.c.id == ADMIN).values(role="director")
    )
    await refresh_user(api, Caller(ADMIN, "director"))  # a webhook names directors so
    message = "The token's role is not the user's role."
    assert_refused(await post(api, ADMIN, "admin"), message)
    assert_refused(await fast_get(api, ADMIN, "admin"), message)
    assert_refused(await fast_get(api, ADMIN, "admin", etag), message)
    # A new token with the role the table holds: a director with no tracks.
    mine = await post(api, ADMIN, "director")
    assert mine.json() == {"data": {"me": {"id": ADMIN, "summary": {"totalCohorts": 0}}}}


async def test_a_deleted_user_is_refused_after_their_refresh(
    api: GatewayClient, private_db: str
) -> None:
    etag = await etag_of(api, DREW, "director")
    await dataset.execute(
        private_db, delete(track_directors).where(track_directors.c.director_id == DREW)
    )
    await dataset.execute(private_db, delete(users).where(users.c.id == DREW))
    await refresh_user(api, Caller(DREW, "director"))
    message = "The token's user has no dashboard."
    assert_refused(await post(api, DREW, "director"), message)
    assert_refused(await fast_get(api, DREW, "director"), message)
    assert_refused(await fast_get(api, DREW, "director", etag), message)


async def test_without_a_refresh_a_demotion_counts_once_the_profile_turns_stale(
    api: GatewayClient, private_db: str
) -> None:
    await dataset.execute(
        private_db, update(users).where(users.c.id == DANA).values(role="learner")
    )
    services = services_of(api)
    api.clock.advance(services.settings.fresh_s + 1)  # type: ignore[attr-defined]
    assert_refused(await post(api, DANA, "director"), "The token's user has no dashboard.")


async def test_a_stored_answer_is_never_rebuilt_for_an_unconfirmed_caller(
    api: GatewayClient, private_db: str
) -> None:
    """A refresh cycle replaces stored answers for their caller: not once the table
    disagrees with the role they were stored for."""
    await dataset.execute(
        private_db, update(users).where(users.c.id == DANA).values(role="learner")
    )
    await refresh_user(api, Caller(DANA, "director"))
    services = services_of(api)
    now_s = services.clock().timestamp()
    sha256 = SUMMARY_OP.sha256
    key = services.answers.key(Caller(DANA, "director"), AnswerId.of(sha256, SUMMARY_OP.name, None))
    request = AnswerRequest(DANA, "director", sha256, SUMMARY_OP.name, {}, now_s)
    assert await AnswerBuilder(services).build(key, request) is False
    assert await services.kv.get(key) is None


@pytest.mark.parametrize(
    "claims",
    [
        {"exp": 1e20},
        {"exp": lambda now: now + 86_401},
        {"iat": None},
        {"role": ["admin"]},
        {"role": {"director": True}},
        {"sub": "+2"},
        {"sub": "9" * 30},
    ],
    ids=[
        "exp 1e20",
        "lifetime 24 h + 1 s",
        "no iat",
        "role list",
        "role object",
        "sub +2",
        "sub 30 digits",
    ],
)
async def test_tokens_outside_the_rules_are_refused_on_every_transport(
    api: GatewayClient, claims: dict[str, Any]
) -> None:
    now = int(time.time())
    payload = {"sub": str(DANA), "role": "director", "iat": now, "exp": now + 600, **claims}
    payload = {k: v(now) if callable(v) else v for k, v in payload.items() if v is not None}
    secret = api.settings.jwt_secret.get_secret_value()
    headers = {"Authorization": f"Bearer {jwt.encode(payload, secret, 'HS256')}"}
    for response in (
        await api.http.post("/graphql", json={"query": ME}, headers=headers),
        await api.http.get("/graphql", params=params(SUMMARY_OP), headers=headers),
    ):
        assert response.status_code == REFUSED
        assert response.headers["content-type"] == "application/json"
        assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


def test_the_token_command_refuses_a_lifetime_the_gateway_would_refuse(capsys) -> None:
    from gateway.cli import main

    assert main(["token", "--user-id", "2", "--role", "director", "--ttl", "2d"]) == 2
    assert "longer than GATEWAY_JWT_MAX_LIFETIME_S (86400 s)" in capsys.readouterr().err
