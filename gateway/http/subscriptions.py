"""What the two subscription transports share (gateway/http/websocket.py, sse.py): the
caller and the token's expiry, the same document checks as a GET or POST (persisted-only
mode, APQ and the manifest, the limits, introspection, in gateway/http/endpoint.py), the
run of one subscription as formatted GraphQL results, and (WebSocket only) the execution
of a query or mutation as the endpoint executes a POST: the caller confirmed against the
users table, a request's own context, the same rate limit on requestRefresh, and a query
answered from the same stored answer as its GET or POST when one exists."""

import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import orjson
from graphql import OperationType
from strawberry.utils.aio import aclosing

from gateway import metrics
from gateway.auth import AuthError
from gateway.http.endpoint import GraphQLEndpoint
from gateway.http.errors import error_body
from gateway.http.request import GraphQLRequest, RequestError
from gateway.live.watch import Connection
from gateway.services import Services
from resolvers.caller import Caller
from resolvers.context import Context
from resolvers.errors import BAD_REQUEST

ONLY_SUBSCRIPTIONS = (
    "Only subscriptions are served as an event stream; send queries and mutations with "
    "Accept: application/graphql-response+json, or over WebSocket."
)
SUBSCRIPTION_ONLY = frozenset({OperationType.SUBSCRIPTION})
EVERY_OPERATION = frozenset(OperationType)


class FreshSource:
    """A subscription's context lives as long as the subscription: it holds no loaders or
    cached reads, and each read (rare: the hub hands resolvers their subtrees) gets a fresh
    cache-backed source as of the context's instant."""

    def __init__(self, services: Services, context: Context) -> None:
        self.services = services
        self.context = context

    def _source(self) -> Any:
        return self.services.source(self.context.now)

    async def scope(self, caller: Caller) -> list[int]:
        return await self._source().scope(caller)  # type: ignore[no-any-return]

    async def cohorts(self, cohort_ids: list[int]) -> dict[int, dict[str, Any]]:
        return await self._source().cohorts(cohort_ids)  # type: ignore[no-any-return]

    async def summary(self, caller: Caller) -> dict[str, Any]:
        return await self._source().summary(caller)  # type: ignore[no-any-return]

    async def list_index(self, caller: Caller) -> dict[str, Any] | None:
        return await self._source().list_index(caller)  # type: ignore[no-any-return]

    async def user(self, user_id: int) -> Any:
        return await self._source().user(user_id)

    async def identity(self, user_id: int) -> Any:
        return await self._source().identity(user_id)

    async def director_ids(self, after: int, limit: int) -> list[int]:
        return await self._source().director_ids(after, limit)  # type: ignore[no-any-return]


class Subscriptions:
    def __init__(self, services: Services, endpoint: GraphQLEndpoint) -> None:
        self.services = services
        self.endpoint = endpoint
        self.settings = services.settings

    def authenticate(self, authorization: str | None) -> tuple[Caller, float]:
        """The caller and the token's expiry (unix time); AuthError otherwise."""
        try:
            return self.services.verifier.verify_until(authorization)
        except AuthError:
            metrics.LIVE_REFUSALS.labels("unauthenticated").inc()
            raise

    async def prepare(
        self,
        gql: GraphQLRequest,
        caller: Caller,
        request_id: str,
        allowed: frozenset[OperationType] = SUBSCRIPTION_ONLY,
    ) -> list[dict[str, Any]] | None:
        """None when the document may run (`gql.operation_type` then says how); else the
        errors to answer. An APQ document is registered once it passed, as over HTTP,
        within the caller's registration bounds."""
        endpoint = self.endpoint
        try:
            await endpoint.resolve_document(gql)
            prepared = endpoint.limit(gql)
            if prepared.errors:
                return [endpoint.format_error(e, request_id) for e in prepared.errors]
            if gql.operation_type not in allowed:
                return [_error(ONLY_SUBSCRIPTIONS, BAD_REQUEST, request_id)]
            if gql.register:
                await endpoint.register(gql, caller, self.services.clock())
        except RequestError as exc:
            return [refusal(exc, request_id)]
        return None

    async def execute(self, gql: GraphQLRequest, caller: Caller, request_id: str) -> bytes:
        """A prepared query or mutation, executed as the endpoint executes a POST; its
        result as the JSON bytes of a GraphQL response body. RequestError when it may not
        run. A query is answered from the stored answer of the GET or POST for the same
        caller, document, operation and variables when there is one (its bytes as they
        are), and a miss is executed once per key at a time and stored, as over HTTP."""
        endpoint = self.endpoint
        now = self.services.clock()
        context = self.services.make_context(caller, request_id, now)
        await endpoint.confirm(caller, context)
        answers = self.services.answers
        answer_id = None
        if answers is not None and gql.operation_type == OperationType.QUERY:
            answer_id = gql.answer_id
        if answers is not None and answer_id is not None:
            key = answers.key(caller, answer_id)
            stored = await answers.get(key)
            if stored is not None:
                answers.usage.touch(caller, key, now.timestamp())
                return stored.body
            gql.answer_key = key
            result = await endpoint.flights.run(key, lambda: endpoint.execute(gql, context))
        else:
            result = await endpoint.execute(gql, context)
        body: dict[str, Any] = {}
        if result.errors:
            body["errors"] = [endpoint.format_error(e, request_id) for e in result.errors]
        body["data"] = result.data
        raw = orjson.dumps(body)
        if gql.answer_key is not None and not result.errors:
            await endpoint.store(gql, raw, None, result.data, context, caller, now)
        return raw

    async def run(
        self, gql: GraphQLRequest, connection: Connection, request_id: str
    ) -> AsyncIterator[dict[str, Any]]:
        """The subscription's results, each as a GraphQL response body."""
        context = self.context(connection, request_id, self.services.clock())
        stream = await self.endpoint.schema.subscribe(
            gql.document,
            variable_values=gql.variables,
            context_value=context,
            operation_name=gql.operation_name,
        )
        async with aclosing(stream):
            async for result in stream:
                body: dict[str, Any] = {}
                if result.errors:
                    body["errors"] = [
                        self.endpoint.format_error(e, request_id) for e in result.errors
                    ]
                body["data"] = result.data
                yield body

    def context(self, connection: Connection, request_id: str, now: datetime) -> Context:
        context = Context(
            caller=connection.caller,
            source=None,  # type: ignore[arg-type]  # set just below: it needs the context
            now=now,
            stale_after_s=self.settings.fresh_s,
            request_id=request_id,
            live=connection,
        )
        context.source = FreshSource(self.services, context)
        return context


def seconds_until(expires_at: float) -> float:
    return max(expires_at - time.time(), 0.0)


def refusal(exc: RequestError, request_id: str) -> dict[str, Any]:
    """A request refused before execution, as one GraphQL error."""
    error = _error(exc.message, exc.code, request_id)
    error["extensions"] = {"code": exc.code, **exc.extensions, "requestId": request_id}
    return error


def _error(message: str, code: str, request_id: str) -> dict[str, Any]:
    [error] = error_body(message, code, requestId=request_id)["errors"]
    return dict(error)
