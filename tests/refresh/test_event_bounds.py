"""Change events are bounded and revocations go first (gateway/refresh/pending.py): past
GATEWAY_WEBHOOK_MAX_IDS an event is refused 413 with nothing queued; an event is one job
whatever it names; a cohort named by many events is refreshed once; ids naming nothing are
dropped; a director named after a bulk event is queued ahead of it. Against Redis and a
real (burst) worker on the hand-built dataset."""

import logging

import orjson
import pytest
import redis.asyncio as aioredis

from gateway.refresh.pending import FIGURE_COHORTS_KEY, SCOPE_COHORTS_KEY
from tests.support.clock import MovableClock
from tests.support.dataset import DREW, NOW
from tests.support.gateway import queued_jobs, run_worker, services_of, settings_for, signed
from tests.support.gateway_client import gateway_client

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

COHORTS = [101, 102, 103, 104]  # every cohort of the dataset
MAX_IDS = 10_000


def event(event_id: str, module: str, cohort_ids=(), director_ids=()) -> bytes:
    return orjson.dumps(
        {
            "id": event_id,
            "module": module,
            "occurred_at": "2026-11-24T10:00:00Z",
            "cohort_ids": list(cohort_ids),
            "director_ids": list(director_ids),
        }
    )


async def test_past_the_cap_an_event_is_refused_413_and_nothing_is_queued(
    dataset_url: str, redis_url: str
) -> None:
    redis = aioredis.from_url(redis_url)
    await redis.flushall()
    await redis.aclose()
    async with gateway_client(settings_for(dataset_url, redis_url), MovableClock(NOW)) as api:
        over = event("evt_over", "missions", range(1, MAX_IDS), [DREW, DREW])
        assert len(over) < api.settings.webhook_max_body_bytes  # within the body bound
        response = await api.http.post("/webhooks/upstream", content=over, headers=signed(over))
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "TOO_MANY_IDS"
        assert await queued_jobs(redis_url) == []
        # Refused before its id was recorded: a retry within the cap is processed.
        within = event("evt_over", "missions", range(1, MAX_IDS), [DREW])
        response = await api.http.post("/webhooks/upstream", content=within, headers=signed(within))
        assert (response.status_code, response.json()["status"]) == (202, "accepted")


async def test_a_maximal_event_is_one_job_coalesced_and_the_director_goes_first(
    dataset_url: str, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    redis = aioredis.from_url(redis_url)
    await redis.flushall()
    async with gateway_client(settings_for(dataset_url, redis_url), MovableClock(NOW)) as api:
        # The nastiest event the cap allows: every cohort, and ids naming nothing up to it.
        bulk = event("evt_bulk", "missions", [*COHORTS, *range(10_000, 10_000 + MAX_IDS - 4)])
        again = event("evt_again", "portfolio", COHORTS)  # the same cohorts, named again
        moved = event("evt_moved", "programs", [102])  # a cohort moved: a scope change
        demotion = event("evt_demote", "programs", director_ids=[DREW])
        for body in (bulk, again, moved, demotion):
            response = await api.http.post("/webhooks/upstream", content=body, headers=signed(body))
            assert response.status_code == 202, response.text
        # One job per event; the director's ahead of all (arq runs them in score order).
        assert await redis.zrange("ddg:queue", 0, -1) == [
            b"refresh_director:director:3",
            b"refresh_pending:evt_bulk",
            b"refresh_pending:evt_again",
            b"refresh_pending:evt_moved",
        ]
        # Coalesced per target: each cohort pending once, a moved one among scope changes.
        assert await redis.smembers(SCOPE_COHORTS_KEY) == {b"102"}
        assert await redis.scard(FIGURE_COHORTS_KEY) == MAX_IDS
        with caplog.at_level(logging.INFO, logger="gateway.refresh"):
            await run_worker(services_of(api).settings.model_copy())
        refreshed = [r.cohort for r in caplog.records if r.getMessage() == "refreshed cohort"]
        # Each real cohort once (102, a scope change, first); the 9,996 others dropped.
        assert refreshed[0] == 102 and sorted(refreshed) == COHORTS
        dropped = [
            r.ids for r in caplog.records if r.getMessage() == "dropped ids naming no cohort"
        ]
        assert sum(dropped) == MAX_IDS - 4
        assert await queued_jobs(redis_url) == []
        assert await redis.scard(FIGURE_COHORTS_KEY) == 0
    await redis.aclose()
