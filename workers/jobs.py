"""arq jobs: thin wrappers around gateway.refresh.service, one Services per worker process."""

import logging
from dataclasses import asdict
from typing import Any

from gateway.refresh.cycle import refresh_cycle
from gateway.services import Services
from gateway.settings import Settings

log = logging.getLogger("workers.jobs")


async def startup(ctx: dict[str, Any]) -> None:
    ctx["services"] = Services.build(ctx.get("settings") or Settings())


async def shutdown(ctx: dict[str, Any]) -> None:
    await ctx["services"].close()


def _refresh(ctx: dict[str, Any]) -> Any:
    services: Services = ctx["services"]
    assert services.refresh is not None
    return services.refresh


async def refresh_all(ctx: dict[str, Any]) -> dict[str, Any]:
    """Every subtree, then the answers built from them (stored or replaced)."""
    cycle, prewarm = await refresh_cycle(ctx["services"])
    return {**asdict(cycle), "prewarm": asdict(prewarm)}


async def refresh_director(ctx: dict[str, Any], user_id: int, role: str = "director") -> None:
    await _refresh(ctx).refresh_director(user_id, role)


async def refresh_cohort(ctx: dict[str, Any], cohort_id: int) -> list[int]:
    return await _refresh(ctx).refresh_cohort(cohort_id)
