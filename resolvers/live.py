"""Subscriptions: a director's dashboard and one cohort, pushed when the refresh rewrites
them. What reaches a resolver here comes from a LiveFeed (gateway/live): the current
figures first, then one change per rewrite, already checked against the caller's scope."""

from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import strawberry

from resolvers.caller import Caller
from resolvers.cohort import Cohort
from resolvers.context import Context
from resolvers.director import DirectorSummary
from resolvers.errors import BAD_REQUEST, coded
from resolvers.scalars import DateTime


@dataclass
class DashboardChange:
    summary: dict[str, Any]
    cohort_ids: list[int]
    computed_at: str
    now: datetime  # the instant `stale` is judged against


@dataclass
class CohortChange:
    cohort: dict[str, Any]
    now: datetime


class LiveFeed(Protocol):
    """One connection's subscriptions. Each iterator yields the current figures first; it
    raises a coded GraphQLError when the subscription must end (NOT_FOUND: the cohort left
    the caller's scope; FORBIDDEN: the caller's role changed)."""

    def dashboard(
        self, caller: Caller
    ) -> AbstractAsyncContextManager[AsyncIterator[DashboardChange]]: ...

    def cohort(
        self, caller: Caller, cohort_id: int
    ) -> AbstractAsyncContextManager[AsyncIterator[CohortChange]]: ...


@strawberry.type(description="One update of the caller's dashboard.")
class DashboardUpdate:
    summary: DirectorSummary = strawberry.field(
        description="The caller's summary as the cache holds it now (see Director.summary)."
    )
    changed_cohort_ids: list[int] = strawberry.field(
        description=(
            "Cohorts of the caller's scope rewritten since the previous update, and cohorts "
            "that entered or left the scope, ascending; empty in the first update."
        )
    )
    computed_at: DateTime = strawberry.field(
        description=(
            "When the newest figures of this update were computed: the latest computedAt of "
            "the changed cohorts, or the summary's when none changed."
        )
    )


def _feed(context: Context) -> LiveFeed:
    if context.live is None:
        raise coded(
            "Subscriptions are served over WebSocket (graphql-transport-ws) or Server-Sent "
            "Events (Accept: text/event-stream).",
            BAD_REQUEST,
        )
    feed: LiveFeed = context.live
    return feed


@strawberry.type(
    description=(
        "Live updates, pushed when the refresh (its cycle, a webhook, requestRefresh) rewrites "
        "what the caller sees: over WebSocket with graphql-transport-ws, or Server-Sent Events."
    )
)
class Subscription:
    @strawberry.subscription(
        description=(
            "The caller's dashboard: the current summary at once, then one update each time "
            "the summary or any cohort in the caller's scope is rewritten (a refresh cycle "
            "sends one update naming every cohort it rewrote). Ends with FORBIDDEN when the "
            "caller's role changes."
        )
    )
    async def dashboard(
        self, info: strawberry.Info[Context, None]
    ) -> AsyncGenerator[DashboardUpdate, None]:
        context = info.context
        async with _feed(context).dashboard(context.caller) as changes:
            async for change in changes:
                context.now = change.now
                update = DashboardUpdate(
                    summary=change.summary,  # type: ignore[arg-type]
                    changed_cohort_ids=change.cohort_ids,
                    computed_at=DateTime(change.computed_at),
                )
                # An idle subscription waits holding no figures (kilobytes each).
                del change
                yield update
                del update

    @strawberry.subscription(
        description=(
            "A cohort in the caller's scope: its figures at once, then on each rewrite. Any "
            "other id is NOT_FOUND; ends with NOT_FOUND when the cohort leaves the scope."
        )
    )
    async def cohort(
        self, info: strawberry.Info[Context, None], id: int
    ) -> AsyncGenerator[Cohort, None]:
        context = info.context
        async with _feed(context).cohort(context.caller, id) as changes:
            async for change in changes:
                context.now = change.now
                cohort = change.cohort
                del change
                yield cohort  # type: ignore[misc]
                del cohort
