"""Subscription documents and what the subscription tests share."""

from tests.support.dataset import NOW
from tests.support.live_server import Served

DASHBOARD = """subscription Dash {
  dashboard {
    changedCohortIds computedAt
    summary { totalCohorts activeCohorts seats { total used } computedAt stale }
  }
}"""


COHORT = "subscription C($id: Int!) { cohort(id: $id) { id name computedAt stale seats { used } } }"


async def refresh_cohort(live: Served, cohort_id: int) -> None:
    """What a webhook for this cohort runs, as the worker's job does: the cohort with its
    directors' scopes and summaries (one notice), then the admins' summary (another)."""
    live.clock.advance(60)  # type: ignore[attr-defined]
    service, now = live.services.refresh, live.services.clock()
    done = await service.refresh_cohort(cohort_id, now)
    for caller in done.later:
        await service.refresh_director(caller, now)


def stamp(seconds: int) -> str:
    from datetime import timedelta

    from resolvers.figures import iso_instant

    return iso_instant(NOW + timedelta(seconds=seconds))
