"""arq jobs: thin wrappers around gateway/refresh, one Services per worker process.

Each job reads the clock once and computes everything as of that instant."""

import logging
from dataclasses import asdict
from typing import Any

from gateway.refresh.cycle import refresh_cycle
from gateway.refresh.service import RefreshService
from gateway.services import Services
from gateway.settings import Settings
from resolvers.caller import DIRECTOR, Caller

log = logging.getLogger("workers.jobs")


async def startup(ctx: dict[str, Any]) -> None:
    ctx["services"] = Services.build(ctx.get("settings") or Settings())


async def shutdown(ctx: dict[str, Any]) -> None:
    await ctx["services"].close()


def _services(ctx: dict[str, Any]) -> Services:
    services: Services = ctx["services"]
    return services


def _refresh(ctx: dict[str, Any]) -> RefreshService:
    refresh = _services(ctx).refresh
    assert refresh is not None
    return refresh


async def refresh_all(ctx: dict[str, Any]) -> dict[str, Any]:
    """Every subtree, then the answers built from them (stored or replaced)."""
    cycle, answers = await refresh_cycle(_services(ctx))
    return {**asdict(cycle), "prewarm": asdict(answers)}


async def refresh_director(ctx: dict[str, Any], user_id: int, role: str = DIRECTOR) -> None:
    await _refresh(ctx).refresh_director(Caller(user_id, role), _services(ctx).clock())


async def refresh_cohort(ctx: dict[str, Any], cohort_id: int) -> list[int]:
    """The cohort and its directors' scopes now; the admins' summaries as jobs of their own
    (one queued per admin however many cohorts ask)."""
    services = _services(ctx)
    done = await _refresh(ctx).refresh_cohort(cohort_id, services.clock())
    assert services.refresher is not None
    for caller in done.later:
        await services.refresher.refresh_director(caller)
    return done.directors
