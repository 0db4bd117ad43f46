"""A full refresh cycle replaces the stored answers built from what it rewrote.

Answers are rebuilt in place (same caller, same key) at the end of the cycle, so a
cohort detail a director opened is still a hit after the cycle, with the new figures;
what cannot be rebuilt for its caller any more is dropped; a failed cycle drops
everything it rewrote."""

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import update

from gateway.cache.answers import AnswerId
from gateway.refresh.cycle import batch_sizes, drop_answers, refresh_cycle
from loaders.engines import make_engine
from loaders.programs import track_directors
from resolvers.caller import Caller
from tests.support.clock import MovableClock
from tests.support.cycles import in_process, prewarm
from tests.support.dataset import DANA, DREW, NOW
from tests.support.fast_path import DETAIL_OP, LIST_OP, SUMMARY_OP, get, hits, set_capacity
from tests.support.gateway import StatementCounter, services_of, settings_for
from tests.support.gateway_client import GatewayClient, gateway_client

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


@pytest.fixture
async def api(fast: GatewayClient) -> GatewayClient:
    """test_fast_path's gateway (subtrees refreshed) with its answers prewarmed, as after
    a first full cycle."""
    await prewarm(services_of(fast))
    return fast


def detail_key(api: GatewayClient, user: int, cohort_id: int) -> str:
    return services_of(api).answers.key(
        Caller(user, "director"), AnswerId.of(DETAIL_OP.sha256, DETAIL_OP.name, {"id": cohort_id})
    )


def misses() -> float:
    value = REGISTRY.get_sample_value(
        "gateway_cache_requests_total", {"kind": "response", "result": "miss"}
    )
    return value or 0.0


async def move_track(url: str, track_id: int, director_id: int) -> None:
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                update(track_directors)
                .where(track_directors.c.track_id == track_id)
                .values(director_id=director_id)
            )
    finally:
        await engine.dispose()


async def test_an_opened_cohort_detail_stays_a_hit_across_a_cycle_with_new_figures(
    dataset_url: str, redis_url: str, manifest: str, api: GatewayClient
) -> None:
    first = await get(api, DETAIL_OP, DANA, variables={"id": 101})
    assert first.json()["data"]["cohort"]["seats"]["total"] == 4
    await set_capacity(dataset_url, 101, 30)
    try:
        api.clock.advance(300)
        _, report = await refresh_cycle(services_of(api))
        # 3 directors and 1 admin, two pages each, less Nora's empty list (no computedAt);
        # then Dana's cohort detail, the only other stored answer.
        assert (report.callers, report.stored, report.rebuilt, report.dropped) == (4, 7, 1, 0)
        before = hits()
        with StatementCounter(api) as counter:
            after = await get(api, DETAIL_OP, DANA, variables={"id": 101})
        assert counter.count == 0
        assert hits() == before + 1
        cohort = after.json()["data"]["cohort"]
        assert cohort["seats"]["total"] == 30
        assert cohort["computedAt"] == "2026-11-24T12:05:00.000000Z"
        assert after.headers["etag"] != first.headers["etag"]
        # Byte for byte what the executed path answers now, headers included.
        executed_settings = settings_for(
            dataset_url, redis_url, persisted_manifest=manifest, response_cache_enabled=False
        )
        async with gateway_client(executed_settings, api.clock) as executed_api:
            executed = await get(executed_api, DETAIL_OP, DANA, variables={"id": 101})
        assert after.content == executed.content
        for header in ("content-type", "etag", "cache-control", "vary"):
            assert after.headers[header] == executed.headers[header]
        assert after.headers["cache-control"] == "private, max-age=300"
    finally:
        await set_capacity(dataset_url, 101, 4)


async def test_answers_are_served_while_the_cycle_runs_and_replaced_at_its_end(
    dataset_url: str, api: GatewayClient
) -> None:
    services = services_of(api)
    old = await get(api, SUMMARY_OP, DREW)
    assert old.json()["data"]["me"]["summary"]["seats"]["total"] == 10
    await set_capacity(dataset_url, 102, 20)
    try:
        api.clock.advance(300)
        phases, now = in_process(services)
        await phases.subtrees(batch_sizes(services.settings), None)
        # Mid-cycle: the subtrees are new, the previous cycle's answer is still served.
        rewritten = await phases.rewritten_tags()
        assert services.cache.keys.tag(services.cache.keys.cohort(102)) in rewritten
        with StatementCounter(api) as counter:
            during = await get(api, SUMMARY_OP, DREW)
        assert counter.count == 0
        assert during.content == old.content
        report = await phases.answers(now, None)
        assert (report.rebuilt, report.dropped) == (0, 0)  # the dashboards were all rebuilt
        with StatementCounter(api) as counter:
            new = await get(api, SUMMARY_OP, DREW)
        assert counter.count == 0
        assert new.json()["data"]["me"]["summary"]["seats"]["total"] == 20
    finally:
        await set_capacity(dataset_url, 102, 10)


async def test_an_answer_its_caller_may_no_longer_see_is_dropped_not_rebuilt(
    dataset_url: str, api: GatewayClient
) -> None:
    mine = await get(api, DETAIL_OP, DANA, variables={"id": 101})
    assert mine.json()["data"]["cohort"]["id"] == 101
    await move_track(dataset_url, 1, DREW)  # cohort 101's track now belongs to Drew
    try:
        api.clock.advance(300)
        _, report = await refresh_cycle(services_of(api))
        assert (report.rebuilt, report.dropped) == (0, 1)
        assert await services_of(api).kv.client.exists(detail_key(api, DANA, 101)) == 0
        gone = await get(api, DETAIL_OP, DANA, variables={"id": 101})
        assert [e["extensions"]["code"] for e in gone.json()["errors"]] == ["NOT_FOUND"]
        assert gone.json()["data"] is None
        theirs = await get(api, DETAIL_OP, DREW, variables={"id": 101})
        assert theirs.json()["data"]["cohort"]["id"] == 101
        listed = await get(api, LIST_OP, DANA)
        ids = [e["node"]["id"] for e in listed.json()["data"]["me"]["cohorts"]["edges"]]
        assert ids == [102]
    finally:
        await move_track(dataset_url, 1, DANA)


async def test_answers_first_requested_beyond_the_window_are_dropped(
    dataset_url: str, redis_url: str, manifest: str
) -> None:
    clock = MovableClock(NOW)
    settings = settings_for(
        dataset_url, redis_url, persisted_manifest=manifest, answer_rebuild_window_s=400
    )
    async with gateway_client(settings, clock) as api:
        services = services_of(api)
        await refresh_cycle(services)
        await get(api, DETAIL_OP, DANA, variables={"id": 101})
        clock.advance(300)
        _, report = await refresh_cycle(services)
        assert (report.rebuilt, report.dropped) == (1, 0)  # requested 300 s ago
        clock.advance(300)
        _, report = await refresh_cycle(services)
        assert (report.rebuilt, report.dropped) == (0, 1)  # 600 s ago: past the window
        assert await services.kv.client.exists(detail_key(api, DANA, 101)) == 0
        # The next request executes and stores it again, with a new request time.
        before = misses()
        again = await get(api, DETAIL_OP, DANA, variables={"id": 101})
        assert again.json()["data"]["cohort"]["computedAt"] == "2026-11-24T12:10:00.000000Z"
        assert misses() == before + 1  # one look-up: the endpoint reuses the middleware's
        clock.advance(300)
        _, report = await refresh_cycle(services)
        assert (report.rebuilt, report.dropped) == (1, 0)


class FailAfterFirstBatch:
    def update(self, n: int) -> None:
        raise RuntimeError("cycle interrupted")


async def test_a_failed_cycle_drops_the_answers_built_from_what_it_rewrote(
    api: GatewayClient,
) -> None:
    services = services_of(api)
    await get(api, DETAIL_OP, DANA, variables={"id": 101})
    summary_key = services.answers.key(
        Caller(DANA, "director"), AnswerId.of(SUMMARY_OP.sha256, SUMMARY_OP.name, None)
    )
    assert await services.kv.client.exists(summary_key, detail_key(api, DANA, 101)) == 2
    api.clock.advance(300)
    with pytest.raises(RuntimeError, match="cycle interrupted"):
        # Fails after the cohorts are written, before scopes and summaries are.
        await refresh_cycle(services, progress=FailAfterFirstBatch())
    # The detail was built from cohort 101's subtree, rewritten: dropped. The summary page
    # was built from Dana's summary, scope and profile, not rewritten: still valid, kept.
    assert await services.kv.client.exists(detail_key(api, DANA, 101)) == 0
    assert await services.kv.client.exists(summary_key) == 1
    # Nothing is lost: the next request executes from the new subtrees and stores again.
    with StatementCounter(api) as counter:
        response = await get(api, DETAIL_OP, DANA, variables={"id": 101})
    assert counter.count == 0
    assert response.json()["data"]["cohort"]["computedAt"] == "2026-11-24T12:05:00.000000Z"


async def test_embedded_mode_replaces_answers_too(dataset_url: str, manifest: str) -> None:
    clock = MovableClock(NOW)
    settings = settings_for(dataset_url, None, persisted_manifest=manifest)
    async with gateway_client(settings, clock) as api:
        services = services_of(api)
        await refresh_cycle(services)
        await get(api, DETAIL_OP, DANA, variables={"id": 104})
        await set_capacity(dataset_url, 104, 40)
        try:
            clock.advance(300)
            _, report = await refresh_cycle(services)
            assert (report.stored, report.rebuilt, report.dropped) == (7, 1, 0)
            with StatementCounter(api) as counter:
                response = await get(api, DETAIL_OP, DANA, variables={"id": 104})
            assert counter.count == 0
            assert response.json()["data"]["cohort"]["seats"]["total"] == 40
        finally:
            await set_capacity(dataset_url, 104, 6)


async def test_dropping_after_a_failure_waits_out_the_redis_breaker(api: GatewayClient) -> None:
    services = services_of(api)
    await get(api, DETAIL_OP, DANA, variables={"id": 101})
    key = detail_key(api, DANA, 101)
    services.kv._failed(ConnectionError("a blip"))  # what a Redis error does: breaker open
    await drop_answers(services, [services.cache.keys.tag(services.cache.keys.cohort(101))])
    assert await services.kv.client.exists(key) == 0
