"""The schema: queries scoped to the caller."""

import logging
from typing import Annotated, Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import SchemaExtension
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.types import ExecutionContext, ExecutionResult
from strawberry.utils.logging import StrawberryLogger

from loaders.engines import UpstreamDataInvalid
from resolvers.caller import DASHBOARD_ROLES
from resolvers.cohort import Cohort
from resolvers.context import Context
from resolvers.director import Director, DirectorConnection
from resolvers.errors import (
    EXPECTED_CODES,
    FORBIDDEN,
    UPSTREAM_UNAVAILABLE,
    bad_input,
    coded,
    is_output_fault,
    not_found,
)
from resolvers.ids import is_id
from resolvers.live import Subscription
from resolvers.pagination import DEFAULT_PAGE_SIZE, check_first, decode_cursor, encode_cursor
from resolvers.projection import Projector
from resolvers.refresh import Mutation
from resolvers.scalars import SCALARS, field_resolver

log = logging.getLogger("resolvers.schema")


def _director(row: Any, role: str) -> Director:
    return Director(id=row.id, name=row.name, email=row.email, role=role)


@strawberry.type(description="Read the dashboard. Every answer is limited to the caller's scope.")
class Query:
    @strawberry.field(description="The caller, as a director (an admin's scope is every cohort).")
    async def me(self, info: strawberry.Info[Context, None]) -> Director:
        caller = info.context.caller
        row = await info.context.source.user(caller.user_id)
        if row is None:
            raise not_found("User", caller.user_id)
        return _director(row, caller.role)

    @strawberry.field(
        description="A director by user id: admins may ask for anyone, a director for themselves."
    )
    async def director(self, info: strawberry.Info[Context, None], id: int) -> Director:
        caller = info.context.caller
        if not caller.may_see_director(id):
            raise not_found("Director", id)
        row = await info.context.source.user(id)
        if row is None or row.role not in DASHBOARD_ROLES:
            raise not_found("Director", id)
        return _director(row, row.role)

    @strawberry.field(description="Every director, by id (admins only).")
    async def directors(
        self,
        info: strawberry.Info[Context, None],
        first: Annotated[
            int, strawberry.argument(description="Page size, 1 to 100.")
        ] = DEFAULT_PAGE_SIZE,
        after: Annotated[
            str | None, strawberry.argument(description="Cursor to start after.")
        ] = None,
    ) -> DirectorConnection:
        if not info.context.caller.is_admin:
            raise coded("Only admins may list directors.", FORBIDDEN)
        check_first(first)
        after_id = 0
        if after is not None:
            key = decode_cursor(after, "directors")
            if len(key) != 1 or not is_id(key[0]):
                raise bad_input("Malformed cursor.")
            after_id = key[0]
        source = info.context.source
        ids = await source.director_ids(after_id, first + 1)
        rows = [await source.user(i) for i in ids[:first]]
        nodes = [_director(r, r.role) for r in rows if r is not None]
        return DirectorConnection(
            nodes=nodes,
            end_cursor=encode_cursor("directors", [nodes[-1].id]) if nodes else None,
            has_next_page=len(ids) > first,
        )

    @strawberry.field(description="A cohort in the caller's scope; any other id is NOT_FOUND.")
    async def cohort(self, info: strawberry.Info[Context, None], id: int) -> Cohort:
        caller = info.context.caller
        source = info.context.source
        # Scope first: an out-of-scope id answers exactly like one that does not exist.
        if id not in set(await source.scope(caller)):
            raise not_found("Cohort", id)
        subtree = (await source.cohorts([id])).get(id)
        if subtree is None:
            raise not_found("Cohort", id)
        return subtree  # type: ignore[return-value]


class DeferredErrors(SchemaExtension):
    """Adds the errors of fields that answered from the cache despite an upstream failure:
    to the result, or to each result of a subscription."""

    def on_execute(self):  # type: ignore[no-untyped-def]
        yield
        context = self.execution_context.context
        result = self.execution_context.result
        deferred = getattr(context, "deferred_errors", None)
        if deferred and result is not None:
            result.errors = [*(result.errors or []), *deferred]
            deferred.clear()

    def on_stream_result(self, result):  # type: ignore[no-untyped-def]
        deferred = getattr(self.execution_context.context, "deferred_errors", None)
        if deferred and isinstance(result, ExecutionResult):
            result.errors = [*(result.errors or []), *deferred]
            deferred.clear()  # a long subscription must not pile them up
        yield


class GatewaySchema(strawberry.Schema):
    """Logs only the errors that are the gateway's fault at ERROR.

    Strawberry logs every error at ERROR with a traceback. An error with a stable code
    (NOT_FOUND, BAD_USER_INPUT…) is an answer, and a validation error is the client's:
    both are logged at DEBUG; UPSTREAM_UNAVAILABLE (an outage) at WARNING without a
    traceback; anything else, with its traceback, at ERROR."""

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        for error in errors:
            code = (error.extensions or {}).get("code")
            if code == UPSTREAM_UNAVAILABLE or isinstance(
                error.original_error, UpstreamDataInvalid
            ):
                # an outage, or data refused (logged where it was read): a line, no traceback
                log.warning("graphql error: %s", error.message)
            elif code in EXPECTED_CODES or (
                isinstance(error.original_error, GraphQLError | None) and not is_output_fault(error)
            ):
                log.debug("graphql error: %s", error.message)
            else:
                StrawberryLogger.error(error, execution_context)


class EventExecutor(StrawberryGraphQLCoreExecutionContext):
    """Projects what it can (resolvers/projection.py), unless an extension must see every
    field resolved (it then is a middleware).

    A subscription's executor lives as long as the subscription, and graphql-core keeps
    its memo of collected sub-fields in it (about 15 KB for the dashboard's documents):
    each event gets a memo of its own instead, freed with it."""

    projector: Projector | None = None

    def execute_field(  # type: ignore[no-untyped-def]
        self, parent_type, source, field_details_list, path, position_context
    ):
        if self.projector is not None and len(field_details_list) == 1:
            details = field_details_list[0]
            middleware = self.middleware_manager
            if details.defer_usage is None and (middleware is None or not middleware.middlewares):
                plan = self.projector.plan(parent_type, details.node)
                if plan is not None:
                    try:
                        return plan(source, self)
                    except Exception:  # completed the ordinary way, which reports it
                        pass
        return super().execute_field(
            parent_type, source, field_details_list, path, position_context
        )

    def build_per_event_executor(self, payload: Any) -> Any:
        executor = super().build_per_event_executor(payload)
        if hasattr(executor, "_relevant_sub_fields"):
            executor._relevant_sub_fields = {}
        return executor


def build_schema(extensions: list[type[SchemaExtension]] | None = None) -> strawberry.Schema:
    return GatewaySchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=[DeferredErrors, *(extensions or [])],
        config=StrawberryConfig(default_resolver=field_resolver, scalar_map=SCALARS),
        # Per schema: its own plans.
        execution_context_class=type("Executor", (EventExecutor,), {"projector": Projector()}),
    )
