"""Subscriptions over WebSocket (graphql-transport-ws) and Server-Sent Events, against
uvicorn in this process (tests/support/live_server.py) on the hand-built dataset, embedded mode:
pushed by the refresh itself, scoped, coalesced, limited, and refused with their codes."""

from unittest.mock import ANY

import httpx
import pytest
from sqlalchemy import delete, update

from gateway.documents.dashboard import dashboard_operations
from gateway.live.notices import Rewrites
from gateway.refresh.cycle import refresh_cycle
from loaders.programs import track_directors, users
from resolvers.caller import DIRECTOR, Caller
from tests.harness.waiting import async_wait_until
from tests.support import dataset
from tests.support.clock import MovableClock
from tests.support.cycles import refresh_all
from tests.support.dataset import ADMIN, DANA, DREW, NOW
from tests.support.gateway import settings_for
from tests.support.live_server import Served, serving
from tests.support.subscription_clients import sse_stream, ws_connect, ws_session
from tests.support.subscriptions import COHORT, DASHBOARD, refresh_cohort, stamp

SUMMARY = (
    "query { me { summary { totalCohorts activeCohorts seats { total used } computedAt stale } } }"
)
# A token that expires during the test, after its first update (seconds: tokens have no less).
SHORT_TTL_S = 5


@pytest.fixture
async def live(db: str):
    clock = MovableClock(NOW)
    async with serving(settings_for(db, None), clock) as served:
        served.clock = clock  # type: ignore[attr-defined]
        await refresh_all(served.services)
        yield served


async def query(live: Served, text: str, user: int, role: str = "director") -> dict:
    async with httpx.AsyncClient(base_url=live.url) as http:
        response = await http.post("/graphql", json={"query": text}, headers=live.auth(user, role))
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


# --- pushed by the refresh ---------------------------------------------------------------


async def test_dashboard_now_then_one_update_per_refresh(live: Served) -> None:
    async with ws_session(live.ws_url, live.token(DANA)) as ws:
        await ws.subscribe("1", DASHBOARD)
        first = (await ws.data("1"))["dashboard"]
        answer = (await query(live, SUMMARY, DANA))["me"]["summary"]
        assert first == {"changedCohortIds": [], "computedAt": stamp(0), "summary": answer}
        assert answer == {
            "totalCohorts": 3,
            "activeCohorts": 2,
            "seats": {"total": 14, "used": 6},
            "computedAt": stamp(0),
            "stale": False,
        }

        await refresh_cohort(live, 101)
        update_ = (await ws.data("1"))["dashboard"]
        # The summary pools cohorts computed at 0 and 60: it is as of the oldest.
        assert update_ == {**first, "changedCohortIds": [101], "computedAt": stamp(60)}
        # Exactly one update for that refresh: the next message is the next refresh's.
        await refresh_cohort(live, 104)
        assert (await ws.data("1"))["dashboard"]["changedCohortIds"] == [104]


async def test_a_cycle_sends_each_subscriber_one_update_naming_its_cohorts(live: Served) -> None:
    async with (
        ws_session(live.ws_url, live.token(DANA)) as dana,
        ws_session(live.ws_url, live.token(DREW)) as drew,
        ws_session(live.ws_url, live.token(ADMIN, "admin")) as admin,
    ):
        for ws in (dana, drew, admin):
            await ws.subscribe("d", DASHBOARD)
            assert (await ws.data("d"))["dashboard"]["changedCohortIds"] == []
        live.clock.advance(300)  # type: ignore[attr-defined]
        await refresh_cycle(live.services)
        expected = {dana: [101, 102, 104], drew: [102, 103], admin: [101, 102, 103, 104]}
        for ws, cohorts in expected.items():
            got = (await ws.data("d"))["dashboard"]
            assert (got["changedCohortIds"], got["computedAt"]) == (cohorts, stamp(300))
            assert got["summary"]["computedAt"] == stamp(300)
        await refresh_cohort(live, 102)
        for ws in (dana, drew, admin):
            assert (await ws.data("d"))["dashboard"]["changedCohortIds"] == [102]


async def test_a_rewrite_outside_the_scope_sends_nothing(live: Served) -> None:
    async with (
        ws_session(live.ws_url, live.token(DANA)) as dana,
        ws_session(live.ws_url, live.token(ADMIN, "admin")) as admin,
    ):
        for ws in (dana, admin):
            await ws.subscribe("d", DASHBOARD)
            await ws.data("d")
        await refresh_cohort(live, 103)  # Drew's: Dana does not see it
        assert (await admin.data("d"))["dashboard"]["changedCohortIds"] == [103]
        await refresh_cohort(live, 101)
        # Dana's next message is 101's: nothing came for 103 before it.
        assert (await dana.data("d"))["dashboard"]["changedCohortIds"] == [101]


async def test_cohort_now_then_on_each_rewrite(live: Served) -> None:
    async with ws_session(live.ws_url, live.token(DANA)) as ws:
        await ws.subscribe("c", COHORT, {"id": 101})
        assert await ws.data("c") == {
            "cohort": {
                "id": 101,
                "name": "Analytics Nov",
                "computedAt": stamp(0),
                "stale": False,
                "seats": {"used": 3},
            }
        }
        await refresh_cohort(live, 102)  # not this cohort: nothing
        await refresh_cohort(live, 101)
        assert (await ws.data("c"))["cohort"]["computedAt"] == stamp(120)


# --- scope, role, token ------------------------------------------------------------------


@pytest.mark.parametrize("cohort_id", [103, 999])
async def test_a_cohort_out_of_scope_is_not_found(live: Served, cohort_id: int) -> None:
    async with ws_session(live.ws_url, live.token(DANA)) as ws:
        await ws.subscribe("c", COHORT, {"id": cohort_id})
        payload = await ws.next("c")
        assert payload["data"] is None
        assert [(e["message"], e["extensions"]["code"]) for e in payload["errors"]] == [
            (f"Cohort {cohort_id} not found", "NOT_FOUND")
        ]
        assert await ws.receive() == {"id": "c", "type": "complete"}


async def test_losing_a_cohort_ends_its_subscription_at_once(live: Served, db: str) -> None:
    async with ws_session(live.ws_url, live.token(DANA)) as ws:
        await ws.subscribe("c", COHORT, {"id": 102})
        await ws.data("c")
        await ws.subscribe("d", DASHBOARD)
        await ws.data("d")
        await dataset.execute(
            db,
            delete(track_directors).where(
                (track_directors.c.track_id == 2) & (track_directors.c.director_id == DANA)
            ),
        )
        # A `track_directors` change event names the director: their refresh.
        await live.services.refresh.refresh_director(Caller(DANA, DIRECTOR), live.services.clock())
        messages = [await ws.receive() for _ in range(3)]
        by_kind = {(m["id"], m["type"]): m for m in messages}
        assert by_kind[("c", "next")]["payload"]["errors"][0]["extensions"]["code"] == "NOT_FOUND"
        assert ("c", "complete") in by_kind
        dashboard = by_kind[("d", "next")]["payload"]["data"]["dashboard"]
        assert (dashboard["changedCohortIds"], dashboard["summary"]["totalCohorts"]) == ([102], 2)


async def test_an_expired_token_closes_the_connection_4401(live: Served) -> None:
    async with ws_session(live.ws_url, live.token(DANA, ttl_s=SHORT_TTL_S)) as ws:
        await ws.subscribe("d", DASHBOARD)
        await ws.data("d")
        assert await ws.closed() == (4401, "Token expired.")


async def test_a_demoted_user_is_ended_and_refused(live: Served, db: str) -> None:
    token = live.token(DANA)
    async with ws_session(live.ws_url, token) as ws:
        await ws.subscribe("d", DASHBOARD)
        await ws.data("d")
        await dataset.execute(db, update(users).where(users.c.id == DANA).values(role="learner"))
        await refresh_cohort(live, 101)  # the next push checks the role first
        assert await ws.closed() == (4403, f"User {DANA} is no longer a director.")
    async with ws_connect(live.ws_url) as ws:
        await ws.send({"type": "connection_init", "payload": {"Authorization": f"Bearer {token}"}})
        assert await ws.closed() == (4403, f"User {DANA} is not a director.")


# --- refusals ----------------------------------------------------------------------------


async def test_protocol_refusals_and_their_close_codes(live: Served) -> None:
    async with ws_connect(live.ws_url, protocol="graphql-ws") as ws:
        assert await ws.closed() == (4406, "Subprotocol not acceptable")
    for payload in ({}, {"Authorization": "Bearer nonsense"}):
        async with ws_connect(live.ws_url) as ws:
            await ws.send({"type": "connection_init", "payload": payload})
            code, reason = await ws.closed()
            assert code == 4401 and reason.startswith(("Missing", "Invalid token")), reason
    async with ws_connect(live.ws_url) as ws:
        await ws.subscribe("1", DASHBOARD)
        assert await ws.closed() == (4401, "Unauthorized")
    async with ws_connect(live.ws_url) as ws:
        await ws.socket.send("not json")
        assert await ws.closed() == (4400, "Invalid message received")
    async with ws_session(live.ws_url, live.token(DANA)) as ws:
        await ws.send({"type": "connection_init", "payload": live.auth(DANA)})
        assert await ws.closed() == (4429, "Too many initialisation requests")
    async with ws_session(live.ws_url, live.token(DANA)) as ws:
        await ws.subscribe("1", DASHBOARD)
        await ws.data("1")
        await ws.subscribe("1", DASHBOARD)
        assert await ws.closed() == (4409, "Subscriber for 1 already exists")
    async with ws_session(live.ws_url, live.token(DANA)) as ws:
        # A query is served too (tests/http/test_websocket_operations.py): one `next`, `complete`.
        await ws.subscribe("q", SUMMARY)
        assert (await ws.data("q"))["me"]["summary"]["totalCohorts"] == 3
        assert await ws.receive() == {"id": "q", "type": "complete"}


async def test_connection_limits(db: str) -> None:
    settings = settings_for(
        db,
        None,
        subscriptions_max_connections=3,
        subscriptions_max_connections_per_caller=2,
        subscriptions_max_per_connection=2,
        subscriptions_init_timeout_s=1,
    )
    async with serving(settings, MovableClock(NOW)) as live:
        await refresh_all(live.services)
        async with (
            ws_session(live.ws_url, live.token(DANA)) as a,
            ws_session(live.ws_url, live.token(DANA)),
        ):
            for name in ("1", "2"):
                await a.subscribe(name, DASHBOARD)
                await a.data(name)
            await a.subscribe("3", DASHBOARD)
            error = await a.receive()
            assert error["type"] == "error"
            assert error["payload"][0]["extensions"]["code"] == "TOO_MANY_SUBSCRIPTIONS"
            assert error["payload"][0]["message"] == (
                "Too many subscriptions on this connection; the limit is 2."
            )
            async with ws_connect(live.ws_url) as third:
                await third.send({"type": "connection_init", "payload": live.auth(DANA)})
                assert await third.closed() == (
                    4429,
                    "Too many subscription connections for this caller; the limit is 2.",
                )
            # The refused socket's process slot is given back once the server saw it go.
            hub = live.services.hub
            assert hub is not None

            async def given_back() -> bool:
                return hub.slots.taken == 2

            await async_wait_until(given_back, "the refused socket's slot to be given back")
            async with sse_stream(live.url, {"query": DASHBOARD}, live.auth(DANA)) as sse:
                assert sse.response.status_code == 429
                await sse.response.aread()
                assert sse.response.json()["errors"][0]["extensions"]["code"] == (
                    "TOO_MANY_CONNECTIONS"
                )
            async with ws_session(live.ws_url, live.token(DREW)), ws_connect(live.ws_url) as fourth:
                assert await fourth.closed() == (
                    1013,
                    "This gateway holds its maximum of 3 subscription connections; try "
                    "again later.",
                )
        async with ws_connect(live.ws_url) as idle:
            assert await idle.closed() == (4408, "Connection initialisation timeout")


async def test_persisted_only_mode_and_limits_apply_to_subscriptions(
    db: str, manifest: str
) -> None:
    from gateway.documents.dashboard import build_manifest

    # The manifest of the dashboard's own operations, its subscriptions included.
    ops = dashboard_operations()
    subscription = ops["DashboardUpdates"]
    settings = settings_for(db, None, persisted_manifest=manifest, persisted_only=True)
    async with serving(settings, MovableClock(NOW)) as live:
        await refresh_all(live.services)
        async with ws_session(live.ws_url, live.token(DANA)) as ws:
            await ws.subscribe("x", DASHBOARD)
            error = await ws.receive()
            assert (error["type"], error["payload"][0]["extensions"]["code"]) == (
                "error",
                "PERSISTED_QUERY_NOT_IN_LIST",
            )
            # By hash alone (graphql-ws needs a `query` string: empty), as the page sends it.
            persisted = {"persistedQuery": {"version": 1, "sha256Hash": subscription.sha256}}
            await ws.subscribe("m", "", extensions=persisted)
            data = await ws.data("m")
            assert data["dashboard"]["changedCohortIds"] == []
            assert data["dashboard"]["summary"]["totalCohorts"] == 3
        body = {"query": DASHBOARD}
        async with sse_stream(live.url, body, live.auth(DANA)) as sse:
            assert sse.response.status_code == 200
            event, data = await sse.event()
            assert event == "next"
            assert data["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_IN_LIST"
            assert await sse.event() == ("complete", None)
    types = {op["name"]: op["type"] for op in build_manifest(ops)["operations"]}
    assert (types["DashboardUpdates"], types["CohortUpdates"]) == ("subscription",) * 2

    deep = "subscription { cohort(id: 101) { mentorship { mentors { id } } } }"
    settings = settings_for(db, None, max_depth=2)
    async with (
        serving(settings, MovableClock(NOW)) as live,
        ws_session(live.ws_url, live.token(DANA)) as ws,
    ):
        await ws.subscribe("deep", deep)
        error = await ws.receive()
        assert error["payload"][0]["extensions"]["code"] == "QUERY_TOO_DEEP"
        assert error["payload"][0]["message"] == "The query has depth 4; the limit is 2."


async def test_a_subscription_over_plain_http_is_refused(live: Served) -> None:
    async with httpx.AsyncClient(base_url=live.url) as http:
        response = await http.post("/graphql", json={"query": DASHBOARD}, headers=live.auth(DANA))
    assert response.status_code == 400
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    assert response.json()["errors"][0]["message"].startswith("Subscriptions are served over")


# --- Server-Sent Events ------------------------------------------------------------------


async def test_event_stream_now_then_on_each_rewrite(live: Served) -> None:
    body = {"query": COHORT, "variables": {"id": 101}}
    async with sse_stream(live.url, body, live.auth(DANA)) as sse:
        assert sse.response.headers["content-type"] == "text/event-stream; charset=utf-8"
        event, data = await sse.event()
        assert (event, data["data"]["cohort"]["computedAt"]) == ("next", stamp(0))
        await refresh_cohort(live, 101)
        event, data = await sse.event()
        assert (event, data["data"]["cohort"]["computedAt"]) == ("next", stamp(60))


async def test_event_stream_ends_when_the_token_expires(live: Served) -> None:
    headers = {"Authorization": f"Bearer {live.token(DANA, ttl_s=SHORT_TTL_S)}"}
    async with sse_stream(live.url, {"query": DASHBOARD}, headers) as sse:
        assert (await sse.event())[0] == "next"
        event, data = await sse.event()
        assert event == "next"
        assert data["errors"] == [
            {
                "message": "Token expired.",
                "extensions": {"code": "UNAUTHENTICATED", "requestId": ANY},
            }
        ]
        assert await sse.event() == ("complete", None)


async def test_event_stream_refuses_a_bad_token_with_401(live: Served) -> None:
    async with sse_stream(live.url, {"query": DASHBOARD}, {"Authorization": "Bearer x"}) as sse:
        await sse.response.aread()
        assert sse.response.status_code == 401
        assert sse.response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


# --- the hub ------------------------------------------------------------------------------


async def test_a_slow_subscriber_keeps_only_the_latest_change(live: Served) -> None:
    """Changes offered to a subscription that does not read are merged into one."""
    hub = live.services.hub
    connection = await hub.open(Caller(DANA, DIRECTOR), "test", lambda code, reason: None)
    try:
        async with hub.watch(connection, None) as watch:
            first = await watch.__anext__()
            assert first.cohort_ids == []
            for cohort_id in (101, 102, 104, 101, 102):
                await refresh_cohort(live, cohort_id)
            await hub.settled()
            pending = watch._pending
            assert pending is not None and pending.cohort_ids == {101, 102, 104}
            change = await watch.__anext__()
            assert change.cohort_ids == [101, 102, 104]
            assert change.computed_at == stamp(300)
            assert watch._pending is None
    finally:
        hub.close(connection)


async def test_one_notice_per_unit_of_refresh_work(live: Served) -> None:
    published: list[Rewrites] = []

    class Recording:
        async def publish(self, rewrites: Rewrites) -> None:
            published.append(rewrites)

    cache = live.services.cache
    cache.publisher = Recording()
    await refresh_cohort(live, 101)
    cohort, admins = published  # the cohort's refresh, then the admins' summary's
    assert cohort.cohorts == {101: stamp(60)}
    assert (cohort.summaries, cohort.scopes) == ({str(DANA)}, {str(DANA), "admin"})
    assert (admins.cohorts, admins.summaries, admins.users) == ({}, {"admin"}, {ADMIN})
    published.clear()
    live.clock.advance(300)  # type: ignore[attr-defined]
    await refresh_cycle(live.services)
    [notice] = published
    assert sorted(notice.cohorts) == [101, 102, 103, 104]
    assert notice.summaries == {str(DANA), str(DREW), str(dataset.NORA), "admin"}
