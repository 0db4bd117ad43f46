"""Persisted GETs of the dashboard's operations, and the fast path's counters."""

import json

from prometheus_client import REGISTRY
from sqlalchemy import update

from gateway.documents.dashboard import dashboard_operations
from loaders.engines import make_engine
from loaders.programs import cohorts
from tests.support.gateway_client import GatewayClient

OPERATIONS = dashboard_operations()
SUMMARY_OP = OPERATIONS["DirectorSummary"]
LIST_OP = OPERATIONS["CohortList"]
DETAIL_OP = OPERATIONS["CohortDetail"]


# What a client compares: everything but the per-request id.
CACHE_HEADERS = ("content-type", "etag", "cache-control", "vary")


def params(op, variables: dict | None = None) -> dict[str, str]:
    out = {
        "extensions": json.dumps({"persistedQuery": {"version": 1, "sha256Hash": op.sha256}}),
        "operationName": op.name,
    }
    if variables is not None:
        out["variables"] = json.dumps(variables)
    return out


async def get(api: GatewayClient, op, user: int, role: str = "director", variables=None, **headers):
    return await api.http.get(
        "/graphql", params=params(op, variables), headers={**api.auth(user, role), **headers}
    )


def hits() -> float:
    value = REGISTRY.get_sample_value(
        "gateway_cache_requests_total", {"kind": "response", "result": "hit"}
    )
    return value or 0.0


async def set_capacity(url: str, cohort_id: int, capacity: int) -> None:
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                update(cohorts).where(cohorts.c.id == cohort_id).values(seat_capacity=capacity)
            )
    finally:
        await engine.dispose()
