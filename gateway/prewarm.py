"""Prewarm of the response fast path: the dashboard's own operations, with their default
variables, for every director and admin, right after a refresh of the subtrees."""

import logging
import time
from dataclasses import dataclass

from sqlalchemy import select

from gateway.persisted import dashboard_operations
from gateway.responses import StoredResponse, encode_answer, etag_for, expires_at
from gateway.services import Services
from loaders.programs import users
from resolvers.subtrees import Caller

log = logging.getLogger("gateway.prewarm")

# The pages opened without arguments; a cohort detail needs an id and is stored on first use.
PREWARM_OPERATIONS = ("DirectorSummary", "CohortList")
DEFAULT_VARIABLES = b"{}"


@dataclass
class PrewarmReport:
    callers: int
    stored: int
    seconds: float


async def prewarm_responses(services: Services) -> PrewarmReport:
    started = time.perf_counter()
    responses = services.responses
    if responses is None:
        return PrewarmReport(0, 0, 0.0)
    operations = dashboard_operations()
    people = await services.upstream.fetch(
        "programs",
        select(users.c.id, users.c.role)
        .where(users.c.role.in_(("director", "admin")))
        .order_by(users.c.id),
    )
    interval_s = services.settings.refresh_interval_s
    stored = 0
    for person in people:
        caller = Caller(person.id, person.role)
        for name in PREWARM_OPERATIONS:
            operation = operations[name]
            context = services.make_context(caller, "prewarm", enqueue_refreshes=False)
            result = await services.schema.execute(
                operation.body, variable_values={}, context_value=context, operation_name=name
            )
            until = expires_at(result.data, interval_s)
            source = context.source
            if result.errors or until is None or not getattr(source, "answer_cacheable", False):
                continue
            raw = encode_answer(result.data)
            key = responses.key(caller, operation.sha256, name, DEFAULT_VARIABLES)
            stored += await responses.put(
                key,
                StoredResponse(etag_for(raw), until, raw),
                source.dependencies,  # type: ignore[attr-defined]
                interval_s,
                services.clock(),
                source.dependency_versions,  # type: ignore[attr-defined]
            )
    report = PrewarmReport(len(people), stored, time.perf_counter() - started)
    log.info(
        "prewarmed responses",
        extra={
            "callers": report.callers,
            "stored": report.stored,
            "duration_s": round(report.seconds, 3),
        },
    )
    return report
