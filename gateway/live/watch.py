"""One subscription (a Watch) and one connection (a Connection) of this process's hub
(gateway/live/hub.py): what a subscription holds between rewrites is at most one pending
change, merged with any newer one until it is read."""

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, Protocol

from graphql import GraphQLError

from gateway import metrics
from resolvers.caller import Caller
from resolvers.errors import FORBIDDEN, coded
from resolvers.live import CohortChange, DashboardChange

# WebSocket close code of a connection whose caller's role changed (see gateway/live/hub.py).
CLOSE_FORBIDDEN = 4403


class Hub(Protocol):
    """What a watch and a connection ask of their hub (gateway/live/hub.py, which imports
    this module: the hub is named by what it does, not imported)."""

    async def read(self, watch: "Watch", now: datetime) -> dict[str, Any] | None: ...

    def watch(
        self, connection: "Connection", cohort_id: int | None
    ) -> AbstractAsyncContextManager[AsyncIterator[Any]]: ...


class Pending:
    """A change not yet read by its subscription: the latest figures, and the union of
    the cohorts named since the last one read. `first`: the subscription's first figures
    are in it (the subscriber has nothing to compare them with)."""

    __slots__ = ("subtree", "cohort_ids", "computed_at", "now", "published_at", "resync", "first")

    def __init__(
        self,
        subtree: dict[str, Any] | None,
        cohort_ids: Iterable[int],
        computed_at: str,
        now: datetime,
        published_at: float,
        resync: bool = False,
        first: bool = False,
    ) -> None:
        self.subtree = subtree  # None: read it when the subscription reads the change
        self.cohort_ids = set(cohort_ids)
        self.computed_at = computed_at
        self.now = now
        self.published_at = published_at
        self.resync = resync
        self.first = first

    def merge(self, newer: "Pending") -> None:
        self.subtree = newer.subtree
        # A resync names every watched cohort as maybe changed (notices may have been
        # missed), except in a subscription's first event, in either order: the first
        # subscriber on a replica starts its bus, whose resync may come just before or
        # just after the first figures are read.
        if self.first and newer.resync:
            pass
        elif newer.first and self.resync:
            self.cohort_ids = set(newer.cohort_ids)
        else:
            self.cohort_ids |= newer.cohort_ids
        self.computed_at = max(self.computed_at, newer.computed_at)
        self.now = newer.now
        stamps = [t for t in (self.published_at, newer.published_at) if t]
        self.published_at = min(stamps, default=0.0)  # the delay runs from the oldest
        self.resync = self.resync and newer.resync
        self.first = self.first or newer.first


class Watch:
    """One subscription: a scope's dashboard (cohort_id None) or one cohort."""

    __slots__ = (
        "hub",
        "connection",
        "scope_id",
        "cohort_id",
        "_pending",
        "_error",
        "_waiter",
        "_last_version",
    )

    def __init__(self, hub: Hub, connection: "Connection", cohort_id: int | None) -> None:
        self.hub = hub
        self.connection = connection
        self.scope_id = connection.caller.scope_id
        self.cohort_id = cohort_id
        self._pending: Pending | None = None
        self._error: GraphQLError | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._last_version: str | None = None

    def offer(self, change: Pending, *, wake: bool = True) -> None:
        """Merged into the pending change; `wake=False` holds it until a change that wakes."""
        if self._error is not None:
            return
        if self._pending is None:
            self._pending = Pending(
                change.subtree,
                change.cohort_ids,
                change.computed_at,
                change.now,
                change.published_at,
                change.resync,
                change.first,
            )
        else:
            self._pending.merge(change)
        if wake:
            self._wake()

    def fail(self, error: GraphQLError) -> None:
        """Ends the subscription with `error` when it reads next."""
        if self._error is None:
            self._error = error
            self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def __aiter__(self) -> "Watch":
        return self

    async def __anext__(self) -> Any:
        while True:
            if self._error is not None:
                raise self._error
            pending = self._pending
            if pending is None:
                self._waiter = asyncio.get_running_loop().create_future()
                try:
                    await self._waiter
                finally:
                    self._waiter = None
                continue
            self._pending = None
            subtree = pending.subtree
            if subtree is None:
                subtree = await self.hub.read(self, pending.now)
                if subtree is None:
                    continue  # gone meanwhile: its failure, if any, is already set
            version = subtree.get("version")
            news = self.cohort_id is None and pending.cohort_ids and not pending.resync
            if version is not None and version == self._last_version and not news:
                continue  # nothing new since the last change sent
            self._last_version = version
            if pending.published_at:
                metrics.LIVE_PUSH_DELAY.observe(max(time.time() - pending.published_at, 0.0))
            metrics.LIVE_PUSHES.labels("dashboard" if self.cohort_id is None else "cohort").inc()
            if self.cohort_id is not None:
                return CohortChange(subtree, pending.now)
            stamps = pending.computed_at or subtree["computed_at"]
            return DashboardChange(subtree, sorted(pending.cohort_ids), stamps, pending.now)


class Connection:
    """One WebSocket or event stream of one caller; its subscriptions are its watches.
    Implements resolvers.live.LiveFeed."""

    def __init__(
        self, hub: Hub, caller: Caller, transport: str, end: Callable[[int, str], None]
    ) -> None:
        self.hub = hub
        self.caller = caller
        self.transport = transport
        self._end = end  # the transport closes itself: (WebSocket close code, reason)
        self.watches: set[Watch] = set()
        self.closed = False

    def dashboard(self, caller: Caller) -> AbstractAsyncContextManager[AsyncIterator[Any]]:
        assert caller == self.caller
        return self.hub.watch(self, None)

    def cohort(
        self, caller: Caller, cohort_id: int
    ) -> AbstractAsyncContextManager[AsyncIterator[Any]]:
        assert caller == self.caller
        return self.hub.watch(self, cohort_id)

    def revoke(self, message: str) -> None:
        """The caller may no longer subscribe: every subscription ends, then the connection."""
        error = coded(message, FORBIDDEN)
        for watch in list(self.watches):
            watch.fail(error)
        self._end(CLOSE_FORBIDDEN, message)
