"""The connection limits of this process's hub (gateway/live/hub.py): per process and per
caller (a user, across WebSocket and event streams together).

A slot is reserved with no await between its check and its count, so connections that
arrive together cannot all pass a check made before any of them is counted; it is given
back on every way out (a refusal, a fault, a cancellation, a disconnect).
"""

from collections import Counter

from gateway import metrics
from resolvers.errors import TOO_MANY_CONNECTIONS

# WebSocket close codes (graphql-transport-ws keeps 4400-4499 for the protocol's own).
CLOSE_TOO_MANY = 4429
CLOSE_TRY_AGAIN_LATER = 1013  # RFC 6455: the server is overloaded


class Refused(Exception):
    """A connection refused, with how each transport says it."""

    def __init__(self, message: str, code: str, close_code: int, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.close_code = close_code
        self.status = status


class Slots:
    def __init__(self, max_connections: int, max_per_caller: int) -> None:
        self.max_connections = max_connections
        self.max_per_caller = max_per_caller
        # The process's: connections, and WebSockets awaiting connection_init (which hold
        # one for at most the init timeout).
        self.taken = 0
        self._per_caller: Counter[int] = Counter()  # user id → its connections

    @property
    def full(self) -> bool:
        return self.taken >= self.max_connections

    def take(self) -> None:
        if self.full:
            metrics.LIVE_REFUSALS.labels("process_limit").inc()
            raise Refused(
                f"This gateway holds its maximum of {self.max_connections} subscription "
                "connections; try again later.",
                TOO_MANY_CONNECTIONS,
                CLOSE_TRY_AGAIN_LATER,
                503,
            )
        self.taken += 1

    def give(self) -> None:
        self.taken -= 1

    def take_caller(self, user_id: int) -> None:
        if self._per_caller[user_id] >= self.max_per_caller:
            metrics.LIVE_REFUSALS.labels("caller_limit").inc()
            raise Refused(
                f"Too many subscription connections for this caller; the limit is "
                f"{self.max_per_caller}.",
                TOO_MANY_CONNECTIONS,
                CLOSE_TOO_MANY,
                429,
            )
        self._per_caller[user_id] += 1

    def give_caller(self, user_id: int) -> None:
        self._per_caller[user_id] -= 1
        if self._per_caller[user_id] <= 0:
            del self._per_caller[user_id]
