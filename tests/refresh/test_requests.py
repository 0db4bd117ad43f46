"""Refresh requests in embedded mode: one per target at a time, a bounded number at once
and waiting, and a cohort's refresh recomputes that cohort only (no fan-out into the
other cohorts of its directors or of the admins)."""

from prometheus_client import REGISTRY

from gateway.refresh.requests import LocalRefresher
from resolvers.caller import Caller
from tests.support.clock import MovableClock
from tests.support.cycles import refresh_all
from tests.support.dataset import ADMIN, DANA, NOW
from tests.support.gateway import services_of, settings_for
from tests.support.gateway_client import gateway_client

COHORT_IDS = "{ me { cohorts(first: 10) { edges { node { id stale } } } } }"
SUMMARY = "{ me { summary { totalCohorts computedAt stale } } }"


def requests(result: str) -> float:
    value = REGISTRY.get_sample_value("gateway_refresh_requests_total", {"result": result})
    return value or 0.0


async def versions(services, cohort_ids: list[int]) -> dict[int, str]:
    keys = services.cache.keys
    found = await services.cache.read([keys.cohort(i) for i in cohort_ids], "test")
    return {i: found[keys.cohort(i)]["version"] for i in cohort_ids}


async def test_a_cohort_refresh_recomputes_that_cohort_only(dataset_url: str, backend) -> None:
    clock = MovableClock(NOW)
    async with gateway_client(settings_for(dataset_url, None), clock) as api:
        services = services_of(api)
        await refresh_all(services)
        before = await versions(services, [101, 102, 103, 104])
        clock.advance(400)  # every entry stale (past 300 s), none expired (900 s)
        done = await services.refresh.refresh_cohort(101, clock())
        assert (done.directors, done.later) == ([DANA], [Caller(ADMIN, "admin")])
        after = await versions(services, [101, 102, 103, 104])
        assert [i for i in before if before[i] != after[i]] == [101]
        # Dana's summary pools the cached 102 and 104 as they are: as of their instant.
        summary = (await api.data(SUMMARY, user=DANA))["me"]["summary"]
        assert summary == {
            "totalCohorts": 3,
            "computedAt": "2026-11-24T12:00:00.000000Z",
            "stale": True,
        }


async def test_one_refresh_per_target_at_a_time_a_bounded_number_at_once_and_waiting(
    dataset_url: str, backend
) -> None:
    clock = MovableClock(NOW)
    settings = settings_for(dataset_url, None, refresh_concurrency=1, refresh_queue_max=2)
    async with gateway_client(settings, clock) as api:
        services = services_of(api)
        refresher = services.refresher
        assert isinstance(refresher, LocalRefresher)
        await refresh_all(services)
        clock.advance(400)
        before = {r: requests(r) for r in ("started", "duplicate", "dropped")}
        await refresher.refresh_cohorts([101, 102, 103, 104])  # two may wait: 101, 102
        await refresher.refresh_cohorts([101, 102, 103, 104])  # 101, 102 pending already
        counted = {r: requests(r) - n for r, n in before.items()}
        assert counted == {"started": 2, "duplicate": 2, "dropped": 4}
        await refresher.wait()
        assert refresher.peak == 1
        # Each asked for the admins' summary when done: 101's found the queue full (itself
        # and 102), 102's ran.
        counted = {r: requests(r) - n for r, n in before.items()}
        assert counted == {"started": 3, "duplicate": 2, "dropped": 5}
        after = await versions(services, [101, 102, 103, 104])
        assert after[103] == (await versions(services, [103]))[103]
        refreshed = await services.cache.read(
            [services.cache.keys.cohort(i) for i in (101, 102, 103, 104)], "test"
        )
        stamps = {int(k.rsplit(":", 1)[1]): v["computed_at"] for k, v in refreshed.items()}
        assert stamps == {
            101: "2026-11-24T12:06:40.000000Z",
            102: "2026-11-24T12:06:40.000000Z",
            103: "2026-11-24T12:00:00.000000Z",
            104: "2026-11-24T12:00:00.000000Z",
        }


async def test_stale_reads_refresh_everything_they_read_one_at_a_time(
    dataset_url: str, backend
) -> None:
    clock = MovableClock(NOW)
    settings = settings_for(dataset_url, None, refresh_concurrency=1)
    async with gateway_client(settings, clock) as api:
        services = services_of(api)
        refresher = services.refresher
        assert isinstance(refresher, LocalRefresher)
        await refresh_all(services)
        clock.advance(400)
        data = await api.data(COHORT_IDS, user=ADMIN, role="admin")
        assert [e["node"]["stale"] for e in data["me"]["cohorts"]["edges"]] == [True] * 4
        await refresher.wait()
        assert refresher.peak == 1
        data = await api.data(COHORT_IDS, user=ADMIN, role="admin")
        assert [e["node"]["stale"] for e in data["me"]["cohorts"]["edges"]] == [False] * 4
        summary = (await api.data(SUMMARY, user=ADMIN, role="admin"))["me"]["summary"]
        assert summary == {
            "totalCohorts": 4,
            "computedAt": "2026-11-24T12:06:40.000000Z",
            "stale": False,
        }
