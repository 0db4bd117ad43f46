"""The production profile: masked internal errors, no introspection, no suggestions, no
GraphiQL, and CORS limited to configured origins (never `*`)."""

import logging
import os
import subprocess
import sys
from typing import Any

import pytest
from pydantic import ValidationError

from gateway.settings import Settings, settings_problems
from tests.support.dataset import DANA, NOW
from tests.support.gateway_client import GatewayClient, fixed_clock, gateway_client

ME = "{ me { id } }"
SCHEMA = "{ __schema { queryType { name } } }"
TYPE = '{ __type(name: "Cohort") { name } }'
TYPENAME = "{ __typename me { __typename id } }"
TYPO = "{ me { nam } }"
FILTER = "query P($filter: CohortFilter) { me { cohorts(filter: $filter) { totalCount } } }"
SECRET = "connection to 10.9.8.7 refused (password=hunter2)"
ORIGIN = "https://dashboard.example.test"

# Production refuses the development secrets.
SECRETS = {
    "jwt_secret": "production-jwt-secret-0123456789abcdef",
    "webhook_secret": "production-webhook-secret-0123456789",
}


class ExplodingSource:
    """Delegates to the real source, but reading a user fails unexpectedly."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def user(self, user_id: int) -> Any:
        raise RuntimeError(SECRET)


def explode_on_user(api: GatewayClient, monkeypatch: pytest.MonkeyPatch) -> None:
    services = api.http._transport.app.state.services  # type: ignore[attr-defined]
    make_context = services.make_context

    def exploding(caller: Any, request_id: str, now: Any) -> Any:
        context = make_context(caller, request_id, now)
        context.source = ExplodingSource(context.source)
        return context

    monkeypatch.setattr(services, "make_context", exploding)


def messages(response) -> list[tuple[str, str]]:
    return [(e["extensions"]["code"], e["message"]) for e in response.json()["errors"]]


@pytest.fixture(scope="module")
async def production(dataset_url: str):
    settings = Settings(
        database_url=dataset_url, env="production", cors_origins=[ORIGIN], **SECRETS
    )
    async with gateway_client(settings, fixed_clock(NOW)) as client:
        yield client


@pytest.fixture(scope="module")
async def development(dataset_url: str):
    async with gateway_client(Settings(database_url=dataset_url), fixed_clock(NOW)) as client:
        yield client


async def test_internal_errors_are_masked_with_a_request_id(
    production: GatewayClient, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    explode_on_user(production, monkeypatch)
    headers = {**production.auth(DANA), "X-Request-Id": "req-42"}
    with caplog.at_level(logging.ERROR, logger="gateway.http.errors"):
        response = await production.http.post("/graphql", json={"query": ME}, headers=headers)
    assert response.status_code == 200
    assert response.json() == {
        "errors": [
            {
                "message": "Internal server error.",
                "locations": [{"line": 1, "column": 3}],
                "path": ["me"],
                "extensions": {"code": "INTERNAL_SERVER_ERROR", "requestId": "req-42"},
            }
        ],
        "data": None,
    }
    assert SECRET not in response.text
    # The traceback goes to the log, under the same request id.
    [record] = [r for r in caplog.records if r.name == "gateway.http.errors"]
    assert record.getMessage() == "internal error (request req-42) at ['me']"
    assert record.exc_info is not None and str(record.exc_info[1]) == SECRET


async def test_development_shows_internal_messages(
    development: GatewayClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    explode_on_user(development, monkeypatch)
    response = await development.post(ME, user=DANA)
    assert messages(response) == [("INTERNAL_SERVER_ERROR", SECRET)]


async def test_introspection_is_off_in_production(production: GatewayClient) -> None:
    for query, fields in ((SCHEMA, ["__schema", "queryType"]), (TYPE, ["__type"])):
        response = await production.post(query, user=DANA)
        assert response.status_code == 200
        assert messages(response) == [
            (
                "GRAPHQL_VALIDATION_FAILED",
                "GraphQL introspection has been disabled, but the requested query "
                f"contained the field '{field}'.",
            )
            for field in fields
        ]
    # __typename is not introspection of the schema.
    assert await production.data(TYPENAME, user=DANA) == {
        "__typename": "Query",
        "me": {"__typename": "Director", "id": DANA},
    }


async def test_introspection_is_on_in_development_or_when_enabled(
    development: GatewayClient, dataset_url: str
) -> None:
    assert await development.data(SCHEMA, user=DANA) == {
        "__schema": {"queryType": {"name": "Query"}}
    }
    settings = Settings(database_url=dataset_url, env="production", introspection=True, **SECRETS)
    async with gateway_client(settings, fixed_clock(NOW)) as api:
        assert await api.data(TYPE, user=DANA) == {"__type": {"name": "Cohort"}}


async def test_field_suggestions_are_off_in_production(
    production: GatewayClient, development: GatewayClient
) -> None:
    assert messages(await development.post(TYPO, user=DANA)) == [
        (
            "GRAPHQL_VALIDATION_FAILED",
            "Cannot query field 'nam' on type 'Director'. Did you mean 'name'?",
        )
    ]
    assert messages(await production.post(TYPO, user=DANA)) == [
        ("GRAPHQL_VALIDATION_FAILED", "Cannot query field 'nam' on type 'Director'.")
    ]
    # Variable values are coerced during execution: their hints are removed too.
    response = await production.post(FILTER, {"filter": {"mode": ["ONLIN"]}}, user=DANA)
    assert messages(response) == [
        (
            "BAD_USER_INPUT",
            "Variable '$filter' has invalid value at .mode[0]: "
            "Value 'ONLIN' does not exist in 'CohortMode' enum.",
        )
    ]


async def test_graphiql_is_off_in_production(production: GatewayClient) -> None:
    page = await production.http.get("/graphql", headers={"Accept": "text/html"})
    assert (page.status_code, messages(page)) == (404, [("NOT_FOUND", "GraphiQL is disabled.")])
    asset = await production.http.get("/graphql", params={"graphiql-asset": "graphiql.min.js"})
    assert (asset.status_code, messages(asset)) == (404, [("NOT_FOUND", "No such asset.")])


async def test_cors_allows_only_configured_origins(production: GatewayClient) -> None:
    preflight = {
        "Origin": ORIGIN,
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization,if-none-match",
    }
    allowed = await production.http.options("/graphql", headers=preflight)
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == ORIGIN
    assert "GET" in allowed.headers["access-control-allow-methods"]
    refused = await production.http.options(
        "/graphql", headers={**preflight, "Origin": "https://evil.example.test"}
    )
    assert refused.status_code == 400
    assert "access-control-allow-origin" not in refused.headers
    # A simple request from the allowed origin may read the ETag and request id.
    response = await production.http.get(
        "/graphql", params={"query": ME}, headers={**production.auth(DANA), "Origin": ORIGIN}
    )
    assert response.json() == {"data": {"me": {"id": DANA}}}
    assert response.headers["access-control-allow-origin"] == ORIGIN
    exposed = {
        h.strip().lower() for h in response.headers["access-control-expose-headers"].split(",")
    }
    assert {"etag", "x-request-id"} <= exposed


def test_wildcard_origin_is_refused_in_production() -> None:
    with pytest.raises(ValidationError, match="GATEWAY_CORS_ORIGINS: `\\*` is not allowed"):
        Settings(env="production", cors_origins=["*"], **SECRETS)
    assert Settings(cors_origins=["*"]).cors_origins == ["*"]  # development may use it


SHORT = "s" * 31


@pytest.mark.parametrize(
    ("overrides", "problems"),
    [
        (
            {"webhook_secret": SECRETS["webhook_secret"]},
            ["GATEWAY_JWT_SECRET is the development value: set it in production"],
        ),
        (
            {"jwt_secret": SECRETS["jwt_secret"]},
            ["GATEWAY_WEBHOOK_SECRET is the development value: set it in production"],
        ),
        ({**SECRETS, "jwt_secret": ""}, ["GATEWAY_JWT_SECRET is empty"]),
        (
            {**SECRETS, "jwt_secret": "x"},
            ["GATEWAY_JWT_SECRET has 1 bytes: at least 32 in production"],
        ),
        ({**SECRETS, "webhook_secret": ""}, ["GATEWAY_WEBHOOK_SECRET is empty"]),
        (
            {**SECRETS, "webhook_secret": SHORT},
            ["GATEWAY_WEBHOOK_SECRET has 31 bytes: at least 32 in production"],
        ),
        (
            {**SECRETS, "cors_origins": ["https://a.example.test", "null"]},
            ["GATEWAY_CORS_ORIGINS: `null` is not allowed in production: any page can send it"],
        ),
        (
            {"jwt_secret": "", "webhook_secret": SHORT, "cors_origins": ["NULL"]},
            [
                "GATEWAY_JWT_SECRET is empty",
                "GATEWAY_WEBHOOK_SECRET has 31 bytes: at least 32 in production",
                "GATEWAY_CORS_ORIGINS: `null` is not allowed in production: any page can send it",
            ],
        ),
    ],
)
def test_production_refuses_unsafe_secrets_and_origins(overrides, problems) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(env="production", **overrides)
    assert settings_problems(refused.value) == problems


def test_development_refuses_only_empty_secrets() -> None:
    assert Settings(jwt_secret="x" * 8, webhook_secret="y", cors_origins=["null"]).cors_origins
    for secret in ("jwt_secret", "webhook_secret"):
        with pytest.raises(ValidationError) as refused:
            Settings(**{secret: ""})
        assert settings_problems(refused.value) == [f"GATEWAY_{secret.upper()} is empty"]
    # A public key replaces the JWT secret: an empty one is then unused.
    unused = Settings(jwt_secret="", jwt_public_key_file="/dev/null")
    assert unused.jwt_secret.get_secret_value() == ""


@pytest.mark.parametrize("command", [["serve", "--port", "1"], ["worker"], ["run", "--port", "1"]])
def test_start_up_names_each_problem_in_one_line(command: list[str], tmp_path) -> None:
    env = {
        "PATH": os.environ["PATH"],
        "GATEWAY_ENV": "production",
        "GATEWAY_JWT_SECRET": "x",
        "GATEWAY_WEBHOOK_SECRET": "",
        "GATEWAY_CORS_ORIGINS": '["null"]',
    }
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", *command],
        env=env,
        cwd=tmp_path,  # no .env file
        capture_output=True,
        text=True,
        timeout=120,
    )
    name = f"gateway {command[0]}: invalid setting: "
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.splitlines() == [
        name + "GATEWAY_JWT_SECRET has 1 bytes: at least 32 in production",
        name + "GATEWAY_WEBHOOK_SECRET is empty",
        name + "GATEWAY_CORS_ORIGINS: `null` is not allowed in production: any page can send it",
    ]
