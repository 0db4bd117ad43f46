"""gql (Python), configured as its docs show, against a live `gateway serve`: over HTTP
(HTTPXAsyncTransport) and over WebSocket (WebsocketsTransport, graphql-transport-ws), each
fetching the schema from the transport first (`fetch_schema_from_transport=True`) — allowed
in development, refused in production as over HTTP."""

from collections.abc import Iterator

import pytest
from gql import Client, GraphQLRequest, gql
from gql.transport.exceptions import TransportQueryError
from gql.transport.httpx import HTTPXAsyncTransport
from gql.transport.websockets import WebsocketsTransport

from gateway.auth import mint_token
from gateway.settings import Settings
from tests.support.dataset import DANA
from tests.support.live_gateway import live_gateway
from tests.support.subscription_clients import WAIT_S

SUMMARY = gql("query Summary { me { id summary { totalCohorts activeCohorts } } }")
REFRESH = "mutation R($id: Int!) { requestRefresh(cohortId: $id) { accepted target } }"
DASHBOARD = gql("subscription D { dashboard { changedCohortIds summary { totalCohorts } } }")
SUMMARY_DATA = {"me": {"id": DANA, "summary": {"totalCohorts": 3, "activeCohorts": 2}}}
PRODUCTION = {
    "env": "production",
    "jwt_secret": "production-jwt-secret-0123456789abcdef",
    "webhook_secret": "production-webhook-secret-0123456789",
    # Production refuses public /metrics and /readyz, and embedded mode unless asked for.
    "internal_token": "production-internal-token-0123456789ab",
    "embedded": True,
}


@pytest.fixture(scope="module")
def backend() -> str:
    return "sqlite"


@pytest.fixture(scope="module")
def url(dataset_url: str) -> Iterator[str]:
    with live_gateway(dataset_url) as base:
        yield base


def http_transport(url: str, settings: Settings) -> HTTPXAsyncTransport:
    token = mint_token(settings, DANA, "director", 600)
    return HTTPXAsyncTransport(
        url=f"{url}/graphql", headers={"Authorization": f"Bearer {token}"}, timeout=WAIT_S
    )


def ws_transport(url: str, settings: Settings) -> WebsocketsTransport:
    token = mint_token(settings, DANA, "director", 600)
    return WebsocketsTransport(
        url=f"{url.replace('http', 'ws', 1)}/graphql",
        init_payload={"Authorization": f"Bearer {token}"},
        connect_timeout=WAIT_S,
        close_timeout=5,
    )


async def test_over_http_with_the_schema_fetched_first(url: str) -> None:
    client = Client(transport=http_transport(url, Settings()), fetch_schema_from_transport=True)
    async with client as session:
        assert await session.execute(SUMMARY) == SUMMARY_DATA
        refreshed = await session.execute(GraphQLRequest(REFRESH, variable_values={"id": 101}))
    assert refreshed == {"requestRefresh": {"accepted": True, "target": "cohort:101"}}
    assert client.schema is not None
    assert client.schema.query_type.name == "Query"
    assert "requestRefresh" in client.schema.mutation_type.fields


async def test_over_websocket_with_the_schema_fetched_first(url: str) -> None:
    """Introspection, a query and a mutation (one `next`, then `complete` each) and a
    subscription, all on one graphql-transport-ws connection."""
    transport = ws_transport(url, Settings())
    client = Client(transport=transport, fetch_schema_from_transport=True)
    async with client as session:
        assert transport.subprotocol == "graphql-transport-ws"
        assert await session.execute(SUMMARY) == SUMMARY_DATA
        refreshed = await session.execute(GraphQLRequest(REFRESH, variable_values={"id": 102}))
        async for update in session.subscribe(DASHBOARD):
            assert update == {"dashboard": {"changedCohortIds": [], "summary": {"totalCohorts": 3}}}
            break
    assert refreshed == {"requestRefresh": {"accepted": True, "target": "cohort:102"}}
    assert client.schema is not None
    assert {"dashboard", "cohort"} <= set(client.schema.subscription_type.fields)


async def test_the_schema_fetch_is_refused_in_production(dataset_url: str) -> None:
    """Introspection is off in production, over WebSocket as over HTTP: gql's schema fetch
    fails with the gateway's validation error; a query without the fetch still runs."""
    settings = Settings(**PRODUCTION)
    refusals = []
    with live_gateway(dataset_url, **PRODUCTION) as base:
        for transport in (http_transport(base, settings), ws_transport(base, settings)):
            client = Client(transport=transport, fetch_schema_from_transport=True)
            with pytest.raises(TransportQueryError) as refused:
                async with client as session:
                    await session.execute(SUMMARY)
            refusals.append(
                [(e["extensions"]["code"], e["message"]) for e in refused.value.errors or ()]
            )
        async with Client(transport=ws_transport(base, settings)) as session:
            assert await session.execute(SUMMARY) == SUMMARY_DATA
    over_http, over_websocket = refusals
    assert over_websocket == over_http
    assert over_http[0] == (
        "GRAPHQL_VALIDATION_FAILED",
        "GraphQL introspection has been disabled, but the requested query contained the field "
        "'__schema'.",
    )
    assert {code for code, _ in over_http} == {"GRAPHQL_VALIDATION_FAILED"}
