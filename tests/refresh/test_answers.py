"""What a refresh cycle spends on stored answers is bounded whatever callers send: at most
GATEWAY_ANSWER_MAX_PER_CALLER stored per caller (least recently used dropped first), at
most GATEWAY_ANSWER_REBUILD_MAX rebuilt per cycle (most recently used first), only those
asked for within the window, and within the cycle's share of the interval."""

import pytest
from prometheus_client import REGISTRY

from gateway.cache.answers import AnswerId
from gateway.refresh.answers import Replaced
from gateway.refresh.cycle import refresh_cycle
from resolvers.caller import Caller
from tests.support.clock import MovableClock
from tests.support.cycles import refresh_all
from tests.support.dataset import DANA, DREW, NOW
from tests.support.fast_path import DETAIL_OP, LIST_OP, get
from tests.support.gateway import services_of, settings_for
from tests.support.gateway_client import GatewayClient, gateway_client

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


def evicted() -> float:
    return REGISTRY.get_sample_value("gateway_answers_evicted_total") or 0.0


def list_key(api: GatewayClient, user: int, first: int) -> str:
    return services_of(api).answers.key(
        Caller(user, "director"), AnswerId.of(LIST_OP.sha256, LIST_OP.name, {"first": first})
    )


def detail_key(api: GatewayClient, user: int, cohort_id: int) -> str:
    return services_of(api).answers.key(
        Caller(user, "director"), AnswerId.of(DETAIL_OP.sha256, DETAIL_OP.name, {"id": cohort_id})
    )


async def stored(api: GatewayClient, keys: list[str]) -> list[str]:
    client = services_of(api).kv.client
    return [k for k in keys if await client.exists(k)]


@pytest.fixture
def gateway(dataset_url: str, redis_url: str, manifest: str):
    def start(**overrides) -> GatewayClient:
        settings = settings_for(dataset_url, redis_url, persisted_manifest=manifest, **overrides)
        return gateway_client(settings, MovableClock(NOW))

    return start


async def test_a_caller_keeps_at_most_their_cap_of_stored_answers_least_recently_used_out(
    gateway,
) -> None:
    async with gateway(answer_max_per_caller=3) as api:
        clock = api.http._transport.app.state.services.clock
        services = services_of(api)
        await refresh_all(services)
        before = evicted()
        for first in (1, 2, 3, 4, 5):  # a flood of distinct variables, each stored
            clock.advance(1)
            page = await get(api, LIST_OP, DANA, variables={"first": first})
            assert len(page.json()["data"]["me"]["cohorts"]["edges"]) == min(first, 3)
        keys = {first: list_key(api, DANA, first) for first in range(1, 7)}
        assert await stored(api, list(keys.values())) == [keys[3], keys[4], keys[5]]
        assert evicted() - before == 2
        index = services.cache.keys.answer_index(Caller(DANA, "director"))
        assert await services.kv.client.zrange(index, 0, -1) == [
            keys[n].encode() for n in (3, 4, 5)
        ]
        # A hit counts as a use (written at the next flush): 3 is now the most recent.
        clock.advance(1)
        hit = await get(api, LIST_OP, DANA, variables={"first": 3})
        assert hit.json()["data"]["me"]["cohorts"]["totalCount"] == 3
        await services.answers.usage.flush()
        clock.advance(1)
        await get(api, LIST_OP, DANA, variables={"first": 6})
        assert await stored(api, list(keys.values())) == [keys[3], keys[5], keys[6]]
        # Another caller's answers are theirs: Drew's first is not evicted by Dana's.
        drew = await get(api, LIST_OP, DREW, variables={"first": 1})
        assert drew.json()["data"]["me"]["cohorts"]["totalCount"] == 2
        assert await stored(api, [list_key(api, DREW, 1)]) == [list_key(api, DREW, 1)]


async def opened(api: GatewayClient, clock, visits: list[tuple[int, int]]) -> None:
    """Each (director, cohort) detail asked for, 10 s apart, in this order."""
    for user, cohort_id in visits:
        clock.advance(10)
        answer = await get(api, DETAIL_OP, user, variables={"id": cohort_id})
        assert answer.json()["data"]["cohort"]["id"] == cohort_id


VISITS = [(DANA, 101), (DREW, 103), (DANA, 104), (DREW, 102), (DANA, 102)]


async def test_a_cycle_rebuilds_the_most_recently_used_answers_up_to_its_cap(gateway) -> None:
    async with gateway(answer_rebuild_max=2) as api:
        clock = api.http._transport.app.state.services.clock
        await refresh_all(services_of(api))
        await opened(api, clock, VISITS)
        clock.advance(250)  # the next cycle
        _, report = await refresh_cycle(services_of(api))
        assert report.replaced == Replaced(rebuilt=2, over_cap=3, seconds=report.replaced.seconds)
        keys = [detail_key(api, user, cohort_id) for user, cohort_id in VISITS]
        assert await stored(api, keys) == [keys[3], keys[4]]


async def test_answers_not_asked_for_within_the_window_are_dropped(gateway) -> None:
    async with gateway(answer_rebuild_window_s=265) as api:
        clock = api.http._transport.app.state.services.clock
        await refresh_all(services_of(api))
        await opened(api, clock, VISITS)  # at 12:00:10, :20, :30, :40 and :50
        clock.advance(250)
        _, report = await refresh_cycle(services_of(api))
        # At 12:05:00 they were asked for 290, 280, 270, 260 and 250 s ago.
        assert report.replaced == Replaced(rebuilt=2, unused=3, seconds=report.replaced.seconds)
        keys = [detail_key(api, user, cohort_id) for user, cohort_id in VISITS]
        assert await stored(api, keys) == [keys[3], keys[4]]


async def test_a_cycle_spends_at_most_its_share_of_the_interval_on_stored_answers(
    gateway,
) -> None:
    async with gateway(answer_rebuild_share=0.0) as api:
        clock = api.http._transport.app.state.services.clock
        await refresh_all(services_of(api))
        await opened(api, clock, VISITS)
        clock.advance(250)
        _, report = await refresh_cycle(services_of(api))
        assert report.replaced == Replaced(over_budget=5, seconds=report.replaced.seconds)
        keys = [detail_key(api, user, cohort_id) for user, cohort_id in VISITS]
        assert await stored(api, keys) == []
        # Dropped, not lost: the next request executes and stores it again.
        again = await get(api, DETAIL_OP, DANA, variables={"id": 101})
        assert again.json()["data"]["cohort"]["id"] == 101
        assert await stored(api, [keys[0]]) == [keys[0]]
