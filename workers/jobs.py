"""arq jobs: thin wrappers around gateway/refresh, one Services per worker process.

Each job reads the clock once and computes everything as of that instant."""

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any

from gateway.cache.keys import COLD_START_JOB_ID, JOB_REFRESH_ALL, QUEUE_NAME
from gateway.cache.kv import CacheUnavailable
from gateway.refresh import dispatch, pending
from gateway.refresh.cycle import last_cycle, refresh_cycle
from gateway.refresh.lease import Skipped
from gateway.refresh.service import RefreshService
from gateway.services import REFRESH_COMMAND_TIMEOUT_S, Services
from gateway.settings import Settings
from resolvers.caller import DIRECTOR, Caller

log = logging.getLogger("workers.jobs")


async def startup(ctx: dict[str, Any]) -> None:
    ctx["services"] = Services.build(
        ctx.get("settings") or Settings(),
        tracing=ctx.get("tracing"),
        command_timeout_s=REFRESH_COMMAND_TIMEOUT_S,
    )


async def shutdown(ctx: dict[str, Any]) -> None:
    await ctx["services"].close()


async def cold_start(ctx: dict[str, Any]) -> None:
    """When Redis is reached (at start, after an outage): with no completed cycle recorded
    (a cold cache), a cycle now rather than at the next tick. One job id for all workers,
    so they ask for one cycle between them."""
    try:
        if await last_cycle(_services(ctx)) is not None:
            return
    except CacheUnavailable:
        return  # the cache is away: the next tick (or reconnect) asks again
    # Run only while the cache is still cold: a duplicate (e.g. asked for again across an
    # outage) then ends at once instead of repeating the cycle that covered it.
    job = await ctx["redis"].enqueue_job(
        JOB_REFRESH_ALL, only_when_cold=True, _job_id=COLD_START_JOB_ID, _queue_name=QUEUE_NAME
    )
    log.info(
        "no completed refresh cycle recorded: one is asked for now",
        extra={"queued": job is not None},
    )


def _services(ctx: dict[str, Any]) -> Services:
    services: Services = ctx["services"]
    return services


def _refresh(ctx: dict[str, Any]) -> RefreshService:
    refresh = _services(ctx).refresh
    assert refresh is not None
    return refresh


@contextmanager
def _span(
    ctx: dict[str, Any], name: str, trace: dict[str, str] | None, **attributes: Any
) -> Iterator[None]:
    """The job's span when tracing is on, under the trace context it was enqueued with."""
    tracing = _services(ctx).tracing
    if tracing is None:
        yield
        return
    with tracing.job(name, trace, job_id=ctx.get("job_id", ""), **attributes):
        yield


async def refresh_all(
    ctx: dict[str, Any], trace: dict[str, str] | None = None, only_when_cold: bool = False
) -> dict[str, Any]:
    """Every subtree, then the answers built from them (stored or replaced)."""
    with _span(ctx, "refresh_all", trace):
        try:
            cycle, answers = await refresh_cycle(
                _services(ctx), only_when_cold=only_when_cold, job=ctx.get("job_id", "")
            )
        except Skipped as skipped:
            log.info("refresh cycle skipped", extra={"reason": skipped.reason})
            return {"skipped": skipped.reason}
    return {**asdict(cycle), "prewarm": asdict(answers)}


async def refresh_director(
    ctx: dict[str, Any], user_id: int, role: str = DIRECTOR, trace: dict[str, str] | None = None
) -> None:
    with _span(ctx, "refresh_director", trace, director_id=user_id):
        await _refresh(ctx).refresh_director(Caller(user_id, role), _services(ctx).clock())


async def refresh_cohort(
    ctx: dict[str, Any], cohort_id: int, trace: dict[str, str] | None = None
) -> list[int]:
    """The cohort and its directors' scopes now; the admins' summaries as jobs of their own
    (one queued per admin however many cohorts ask, in this job's trace)."""
    services = _services(ctx)
    with _span(ctx, "refresh_cohort", trace, cohort_id=cohort_id):
        done = await _refresh(ctx).refresh_cohort(cohort_id, services.clock())
        assert services.refresher is not None
        for caller in done.later:
            await services.refresher.refresh_director(caller)
    return done.directors


def batches_running() -> bool:
    return dispatch.batches_running() > 0


async def refresh_pending(ctx: dict[str, Any], trace: dict[str, str] | None = None) -> int:
    """A change event's cohorts, with every other event's still pending (one drain at a
    time: gateway/refresh/pending.py)."""
    services = _services(ctx)
    assert services.refresher is not None
    with _span(ctx, "refresh_pending", trace):
        return await pending.drain(ctx["redis"], _refresh(ctx), services.refresher)


async def serve_batches(ctx: dict[str, Any], taking: Callable[[], bool]) -> None:
    """Beside arq's job loop: batches of the running cycle (gateway/refresh/dispatch.py)."""
    await dispatch.serve_batches(_services(ctx), taking)
