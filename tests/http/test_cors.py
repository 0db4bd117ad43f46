"""CORS: browsers on an allowed origin may send the headers of today's clients (W3C trace
context, a request id, Apollo Client's client awareness); the list is a setting."""

import pytest

from gateway.settings import CORS_ALLOW_HEADERS, Settings
from tests.support.gateway_client import gateway_client

ORIGIN = "https://dashboard.example.test"
CLIENT_HEADERS = (
    "authorization, content-type, traceparent, tracestate, x-request-id, "
    "apollographql-client-name, apollographql-client-version"
)


@pytest.fixture(scope="module")
def backend() -> str:
    return "sqlite"


def preflight(headers: str) -> dict[str, str]:
    return {
        "Origin": ORIGIN,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": headers,
    }


async def test_preflight_allows_the_default_client_headers(dataset_url: str) -> None:
    settings = Settings(database_url=dataset_url, cors_origins=[ORIGIN])
    async with gateway_client(settings) as api:
        allowed = await api.http.options("/graphql", headers=preflight(CLIENT_HEADERS))
        assert allowed.status_code == 200, allowed.text
        assert allowed.headers["access-control-allow-origin"] == ORIGIN
        assert allowed.headers["access-control-allow-methods"] == "GET, POST"
        listed = {
            h.strip().lower() for h in allowed.headers["access-control-allow-headers"].split(",")
        }
        assert {h.strip() for h in CLIENT_HEADERS.split(",")} <= listed
        assert {h.lower() for h in CORS_ALLOW_HEADERS} <= listed
        refused = await api.http.options("/graphql", headers=preflight("x-custom-header"))
        assert (refused.status_code, refused.text) == (400, "Disallowed CORS headers")
        other_origin = await api.http.options(
            "/graphql", headers={**preflight("authorization"), "Origin": "https://evil.test"}
        )
        assert (other_origin.status_code, other_origin.text) == (400, "Disallowed CORS origin")


async def test_allowed_headers_are_a_setting(dataset_url: str, monkeypatch) -> None:
    monkeypatch.setenv("GATEWAY_CORS_ORIGINS", ORIGIN)
    monkeypatch.setenv("GATEWAY_CORS_ALLOW_HEADERS", "Authorization, X-Tenant")
    settings = Settings(database_url=dataset_url)
    assert (settings.cors_origins, settings.cors_allow_headers) == (
        [ORIGIN],
        ["Authorization", "X-Tenant"],
    )
    async with gateway_client(settings) as api:
        tenant = await api.http.options("/graphql", headers=preflight("authorization, x-tenant"))
        assert tenant.status_code == 200
        traced = await api.http.options("/graphql", headers=preflight("traceparent"))
        assert (traced.status_code, traced.text) == (400, "Disallowed CORS headers")
