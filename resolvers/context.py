"""What every resolver gets: the caller, a source of subtrees, and the clock."""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from graphql import GraphQLError

from resolvers.caller import Caller


class SubtreeSource(Protocol):
    """Where resolvers read subtrees: live from loaders, or through the cache."""

    async def scope(self, caller: Caller) -> list[int]: ...

    async def cohorts(self, cohort_ids: list[int]) -> dict[int, dict[str, Any]]: ...

    async def summary(self, caller: Caller) -> dict[str, Any]: ...

    async def list_index(self, caller: Caller) -> dict[str, Any] | None:
        """The caller's scope's list index (resolvers/rows.py), None when there is none."""
        ...

    async def user(self, user_id: int) -> Any: ...

    async def identity(self, user_id: int) -> Any: ...

    async def director_ids(self, after: int, limit: int) -> list[int]: ...


class RefreshRequests(Protocol):
    """On-demand refresh, asked for by the requestRefresh mutation."""

    async def allow(self, user_id: int) -> bool: ...

    async def cohort(self, cohort_id: int) -> None: ...

    async def director(self, caller: Caller) -> None: ...


@dataclass
class Context:
    caller: Caller
    source: SubtreeSource
    now: datetime  # the request's one instant: every `stale` is judged against it
    stale_after_s: float
    request_id: str = ""
    refresh: RefreshRequests | None = None
    # Errors of fields that still answer (from the cache): added to the result at the end.
    deferred_errors: list[GraphQLError] = field(default_factory=list)
    # Subscriptions: the connection's LiveFeed (resolvers/live.py); None over plain HTTP.
    live: Any = None

    def is_stale(self, subtree: dict[str, Any]) -> bool:
        if subtree.get("stale_forced"):
            return True
        then = datetime.fromisoformat(subtree["computed_at"])
        return (self.now - then).total_seconds() > self.stale_after_s
