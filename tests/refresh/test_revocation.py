"""Scope that changes upstream with an event naming only the cohort (docs/upstream.md
allows it): the refresh of that cohort re-scopes every director who could see it and
every director who can see it now, so that once the event's refresh is done the loser
gets nothing of the cohort on any transport, and the gainer gets it.

Transports: POST, persisted GET (the fast path's stored answers), revalidation of a
stored answer's ETag, the cohort list and the summary; with Redis and a worker, and
embedded (in-process refreshes)."""

import uuid
from collections.abc import Awaitable, Callable

import orjson
import pytest
from sqlalchemy import update

from gateway.refresh.requests import LocalRefresher
from loaders.programs import cohorts, track_directors
from tests.support import dataset
from tests.support.clock import MovableClock
from tests.support.cycles import refresh_all
from tests.support.dataset import DANA, DREW, NORA, NOW
from tests.support.fast_path import DETAIL_OP, LIST_OP, SUMMARY_OP, get
from tests.support.gateway import run_worker, services_of, settings_for, signed
from tests.support.gateway_client import GatewayClient, gateway_client

DETAIL = "query($id: Int!) { cohort(id: $id) { id name seats { total } } }"
LIST = "{ me { cohorts(first: 20) { totalCount edges { node { id } } } } }"
SUMMARY = "{ me { summary { totalCohorts activeCohorts seats { total } alerts { cohortId } } } }"

Change = Callable[[str], Awaitable[None]]


async def move_cohort_101_to_track_3(url: str) -> None:
    """101 leaves Dana's track 1 for Drew's track 3."""
    await dataset.execute(url, update(cohorts).where(cohorts.c.id == 101).values(track_id=3))


async def hand_track_1_to_nora(url: str) -> None:
    """Dana's track 1 (cohorts 101 and 104) is handed to Nora."""
    stmt = update(track_directors).where(track_directors.c.track_id == 1).values(director_id=NORA)
    await dataset.execute(url, stmt)


# change, loser, gainer, the loser's and the gainer's cohorts after (by start date)
CASES = {
    "cohort moves to another track": (
        move_cohort_101_to_track_3,
        DANA,
        DREW,
        [102, 104],
        [103, 102, 101],
    ),
    "track changes hands": (hand_track_1_to_nora, DANA, NORA, [102], [101, 104]),
}


@pytest.fixture
async def own_dataset(tmp_path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'upstream.sqlite3'}"
    await dataset.load(url)
    return url


async def ids_of(api: GatewayClient, user: int) -> list[int]:
    data = await api.data(LIST, user=user)
    return [e["node"]["id"] for e in data["me"]["cohorts"]["edges"]]


def not_found(body: dict) -> bool:
    return body["data"] is None and [e["extensions"]["code"] for e in body["errors"]] == [
        "NOT_FOUND"
    ]


@pytest.mark.parametrize("mode", ["redis and a worker", "embedded"])
@pytest.mark.parametrize("case", list(CASES))
async def test_a_cohort_only_event_revokes_the_loser_and_grants_the_gainer_on_every_transport(
    own_dataset: str, redis_url: str, manifest: str, mode: str, case: str
) -> None:
    change, loser, gainer, loser_after, gainer_after = CASES[case]
    clock = MovableClock(NOW)
    redis = redis_url if mode == "redis and a worker" else None
    settings = settings_for(own_dataset, redis, persisted_manifest=manifest)
    async with gateway_client(settings, clock) as api:
        services = services_of(api)
        await refresh_all(services)
        # The loser has opened cohort 101 every way there is; answers are stored.
        assert (await api.data(DETAIL, {"id": 101}, user=loser))["cohort"]["id"] == 101
        stored = await get(api, DETAIL_OP, loser, variables={"id": 101})
        assert stored.json()["data"]["cohort"]["id"] == 101
        assert (await get(api, DETAIL_OP, loser, variables={"id": 101})).content == stored.content
        etag = stored.headers["etag"]
        revalidated = await get(
            api, DETAIL_OP, loser, variables={"id": 101}, **{"If-None-Match": etag}
        )
        assert revalidated.status_code == 304
        assert 101 in await ids_of(api, loser)
        lists = {u: await get(api, LIST_OP, u) for u in (loser, gainer)}
        summaries = {u: await get(api, SUMMARY_OP, u) for u in (loser, gainer)}
        assert not_found((await api.post(DETAIL, {"id": 101}, user=gainer)).json())

        await change(own_dataset)
        event = orjson.dumps(
            {
                "id": f"evt-{uuid.uuid4().hex}",
                "module": "programs",
                "occurred_at": "2026-11-24T12:00:00Z",
                "cohort_ids": [101],
                "director_ids": [],
            }
        )
        response = await api.http.post("/webhooks/upstream", content=event, headers=signed(event))
        assert response.status_code == 202
        if redis is not None:
            await run_worker(settings)
        else:
            assert isinstance(services.refresher, LocalRefresher)
            await services.refresher.wait()

        # The loser: nothing of 101 on any transport.
        assert not_found((await api.post(DETAIL, {"id": 101}, user=loser)).json())
        fast = await get(api, DETAIL_OP, loser, variables={"id": 101})
        assert not_found(fast.json())
        revalidated = await get(
            api, DETAIL_OP, loser, variables={"id": 101}, **{"If-None-Match": etag}
        )
        assert revalidated.status_code == 200 and not_found(revalidated.json())
        assert await ids_of(api, loser) == loser_after
        listed = await get(api, LIST_OP, loser)
        assert listed.content != lists[loser].content
        edges = listed.json()["data"]["me"]["cohorts"]["edges"]
        assert [e["node"]["id"] for e in edges] == loser_after
        summary = (await get(api, SUMMARY_OP, loser)).json()["data"]["me"]["summary"]
        assert summary["totalCohorts"] == len(loser_after)
        assert 101 not in {a["cohortId"] for a in summary["alerts"]}
        # The gainer: 101 on every transport.
        assert (await api.data(DETAIL, {"id": 101}, user=gainer))["cohort"]["id"] == 101
        fast = await get(api, DETAIL_OP, gainer, variables={"id": 101})
        assert fast.json()["data"]["cohort"]["id"] == 101
        assert await ids_of(api, gainer) == gainer_after
        edges = (await get(api, LIST_OP, gainer)).json()["data"]["me"]["cohorts"]["edges"]
        assert [e["node"]["id"] for e in edges] == gainer_after
        summary = (await get(api, SUMMARY_OP, gainer)).json()["data"]["me"]["summary"]
        assert summary["totalCohorts"] == len(gainer_after)
        assert summaries[gainer].content != (await get(api, SUMMARY_OP, gainer)).content
