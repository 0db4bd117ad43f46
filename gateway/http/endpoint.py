"""GraphQL over HTTP on Starlette.

Written on `schema.execute` rather than Strawberry's view so that every refusal is a
JSON body with a stable code (the view answers some of them in plain text), and so that
persisted queries, limits and stored answers sit in front of execution:

    parse request → authenticate (token) → confirm the caller (users table) → resolve
    document → limits → execute → respond (→ store the answer of a persisted GET, or of a
    POST of a known document)

Stored answers are served in front of it (gateway/http/fastpath.py), which hands on what
it parsed of a request it did not answer (`FastPathParse`): this endpoint reads the
Accept headers, the token and the query string or body only when nothing was handed on.

One instant (`now`) is read per request and used for everything the answer says about
time: the subtrees' freshness, `stale`, max-age.
"""

import logging
import re
import time
from datetime import datetime
from typing import Any

import orjson
from graphql import GraphQLError, OperationType, get_operation_ast
from starlette.requests import Request
from starlette.responses import Response
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types.execution import ExecutionResult
from strawberry.types.graphql import OperationType as StrawberryOperationType

from gateway import metrics
from gateway.auth import AuthError, confirm_identity
from gateway.cache.answers import (
    AnswerRequest,
    AnswerStore,
    etag_for,
    gzip_answer,
    operation_label,
)
from gateway.documents.dashboard import dashboard_operations
from gateway.documents.limits import LimitExceeded, PreparedDocument, prepared_schema
from gateway.documents.persisted import (
    DocumentStore,
    load_manifest,
    make_apq_store,
    sha256_hex,
)
from gateway.documents.registrations import Quota, Registrations
from gateway.http.access import OPERATION
from gateway.http.compression import Coding, negotiate_encoding
from gateway.http.errors import error_body, format_error
from gateway.http.flights import Flights
from gateway.http.graphiql import GraphiQL
from gateway.http.media import GRAPHQL_RESPONSE, JSON, LEGACY, Media, negotiate
from gateway.http.request import (
    FAST_PATH,
    GRAPHIQL_ASSET_PARAM,
    BatchRefused,
    FastPathParse,
    GraphQLRequest,
    RequestError,
    inbound_request_id,
    parse_get,
    parse_post,
    wants_graphiql,
)
from gateway.http.responses import (
    NO_STORE,
    NOSNIFF,
    VARY,
    RawResponse,
    answer_message,
    compressed,
    media_response,
    seconds_until_refresh,
)
from gateway.http.scope import OBSERVED
from gateway.logs import new_request_id, request_id_var
from gateway.services import Services
from loaders.engines import UpstreamUnavailable
from resolvers.caller import Caller
from resolvers.context import Context
from resolvers.errors import (
    BAD_REQUEST,
    PERSISTED_QUERY_NOT_FOUND,
    PERSISTED_QUERY_NOT_IN_LIST,
    PERSISTED_QUERY_NOT_SUPPORTED,
    TOO_MANY_REGISTRATIONS,
    UNAUTHENTICATED,
    UPSTREAM_UNAVAILABLE,
)

log = logging.getLogger("gateway.http")

_SUGGESTION = re.compile(r"\s*Did you mean .*$", re.DOTALL)

SUBSCRIPTIONS_ELSEWHERE = (
    "Subscriptions are served over WebSocket (graphql-transport-ws) or Server-Sent Events "
    "(Accept: text/event-stream)."
)

# Operation names label a metric: only the dashboard's own, others are "other".
KNOWN_OPERATIONS = frozenset(dashboard_operations())


def observe(request: Request, gql: GraphQLRequest, outcome: str) -> None:
    name = gql.operation_label or gql.operation_name
    name = name if name in KNOWN_OPERATIONS else "other"
    request.scope[OBSERVED] = (name, outcome)


class GraphQLEndpoint:
    """ASGI app for /graphql."""

    def __init__(self, services: Services) -> None:
        settings = services.settings
        self.services = services
        self.settings = settings
        self.manifest = (
            load_manifest(settings.persisted_manifest) if settings.persisted_manifest else {}
        )
        self.apq: DocumentStore = make_apq_store(
            services.cache_redis,
            ttl_s=settings.apq_ttl_s,
            memory_entries=settings.apq_memory_entries,
        )
        self.registrations = Registrations(
            services.cache_redis,
            per_caller=Quota(
                settings.apq_max_registrations,
                settings.apq_max_registration_bytes,
                settings.apq_registration_window_s,
            ),
            total=Quota(
                settings.apq_max_registrations_total,
                settings.apq_max_registration_bytes_total,
                settings.apq_ttl_s,
            ),
        )
        self.preparer, self.schema = prepared_schema(services.schema, settings)
        self.graphiql = GraphiQL(settings.graphiql_enabled, settings.gzip_min_bytes)
        self.dashboard_documents = frozenset(op.sha256 for op in dashboard_operations().values())
        self.flights: Flights[ExecutionResult] = Flights()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        started = time.perf_counter()
        request = Request(scope, receive)
        response = await self.handle(request)
        await response(scope, receive, send)
        operation, outcome = scope.get(OBSERVED, ("other", "other"))
        metrics.REQUEST_LATENCY.labels(operation, outcome).observe(time.perf_counter() - started)

    async def handle(self, request: Request) -> Response:
        handover: FastPathParse | None = request.scope.get(FAST_PATH)
        request_id = inbound_request_id(request.headers.get("x-request-id")) or new_request_id()
        request_id_var.set(request_id)
        headers = {"X-Request-Id": request_id}
        if handover is not None:
            media: Media | None = handover.media
            coding = handover.coding
        else:
            media = negotiate(request.headers.get("accept"))
            coding = negotiate_encoding(request.headers.get("accept-encoding"))
        if request.method not in ("GET", "POST"):
            request.scope[OBSERVED] = ("other", "refused_405")
            body = error_body("Use GET or POST.", BAD_REQUEST, requestId=request_id)
            return media_response(body, 405, {**headers, "Allow": "GET, POST"}, media or LEGACY)
        parsed = handover.request if handover is not None else None
        if request.method == "GET" and not (
            # Parsed in front with a document named: no GraphiQL page or file asked for.
            parsed is not None
            and parsed.graphiql_asset is None
            and (parsed.query, parsed.extensions, parsed.document_id) != (None, None, None)
        ):
            if GRAPHIQL_ASSET_PARAM in request.query_params:
                asset = request.query_params[GRAPHIQL_ASSET_PARAM]
                return self.graphiql.asset(asset, headers, coding, request)
            if wants_graphiql(request):
                return self.graphiql.page(headers, coding)
        if media is None:
            request.scope[OBSERVED] = ("other", "refused_406")
            message = f"Accept must allow {GRAPHQL_RESPONSE} or {JSON}."
            body = error_body(message, BAD_REQUEST, requestId=request_id)
            return media_response(body, 406, headers, LEGACY)
        now = self.services.clock()
        try:
            if handover is not None and handover.caller is not None:
                caller = handover.caller
            else:
                caller = self.authenticate(request)
            if handover is not None and handover.error is not None:
                raise handover.error
            if parsed is not None:
                gql = parsed
                gql.answer_key = handover.answer_key if handover is not None else None
            elif request.method == "GET":
                gql = parse_get(request.scope["query_string"])
            else:
                gql = await parse_post(request, self.settings.max_body_bytes)
            request.scope[OPERATION] = gql.operation_name
            context = self.services.make_context(caller, request_id, now)
            await self.confirm(caller, context)
            await self.resolve_document(gql)
            prepared = self.limit(gql)
            if prepared.errors:
                observe(request, gql, "invalid")
                return self.respond(
                    gql, request, prepared.errors, None, headers, now, media, coding
                )[0]
            if gql.register:
                # Only a document within the limits that validates is kept (as Apollo does).
                await self.register(gql, caller, now)
            if gql.answer_key is not None and gql.operation_type == OperationType.QUERY:
                # A missing stored answer: executed once per key at a time (flights.py).
                result = await self.flights.run(gql.answer_key, lambda: self.execute(gql, context))
            else:
                result = await self.execute(gql, context)
        except RequestError as exc:
            body = error_body(exc.message, exc.code, **exc.extensions, requestId=request_id)
            status = exc.spec_status if media.spec_status else exc.status
            request.scope[OBSERVED] = ("other", f"refused_{status}")
            if isinstance(exc, BatchRefused):
                # One answer per operation; under application/json, as any request error
                # there: 200 with `"data": null` (README, Clients).
                each = body if media.spec_status else {"data": None, **body}
                return media_response(
                    [each] * exc.operations, status, {**headers, **exc.headers}, media
                )
            return media_response(body, status, {**headers, **exc.headers}, media)
        observe(request, gql, "error" if result.errors else "ok")
        response, raw, gz = self.respond(
            gql, request, result.errors, result.data, headers, now, media, coding
        )
        if gql.answer_key is not None and not result.errors:
            await self.store(gql, raw, gz, result.data, context, caller, now)
        return response

    async def store(
        self,
        gql: GraphQLRequest,
        raw: bytes,
        gz: bytes | None,
        data: Any,
        context: Context,
        caller: Caller,
        now: datetime,
    ) -> None:
        """Keeps an executed answer for the fast path, with the request it answers: a
        persisted GET's, or a POST's whose document is known (a hash, the manifest, the
        dashboard's own operations, or text registered through APQ), queries only."""
        if gql.answer_key is None or not AnswerStore.cacheable(context.source):
            return
        if gql.operation_type != OperationType.QUERY or not await self.known_document(gql):
            return
        # Variables the operation does not declare change nothing in the answer but would
        # make a new key (and a new answer to rebuild every cycle) per value: not stored.
        if not set(gql.variables or ()) <= gql.declared_variables:
            return
        assert self.services.answers is not None
        request = AnswerRequest(
            caller.user_id,
            caller.role,
            gql.sha256,
            gql.operation_name,
            gql.variables or {},
            now.timestamp(),
        )
        await self.services.answers.keep(
            gql.answer_key,
            request,
            data,
            context.source,
            self.settings,
            now,
            body=raw,
            gzip=gz,
            operation=gql.operation_label,
        )

    async def known_document(self, gql: GraphQLRequest) -> bool:
        if gql.method == "GET" or gql.source != "document":
            return True  # persisted: by hash, or from the manifest
        if gql.sha256 in self.dashboard_documents:
            return True
        return self.settings.apq_enabled and await self.apq.get(gql.sha256) == gql.document

    def authenticate(self, request: Request) -> Caller:
        try:
            return self.services.verifier.verify(request.headers.get("authorization"))
        except AuthError as exc:
            raise RequestError(
                401, UNAUTHENTICATED, str(exc), {"WWW-Authenticate": 'Bearer realm="gateway"'}
            ) from None

    async def confirm(self, caller: Caller, context: Context) -> None:
        """The users table, not the token, says who the caller is (gateway/auth.py)."""
        try:
            await confirm_identity(caller, context.source)
        except AuthError as exc:
            raise RequestError(
                401, UNAUTHENTICATED, str(exc), {"WWW-Authenticate": 'Bearer realm="gateway"'}
            ) from None
        except UpstreamUnavailable as exc:
            raise RequestError(
                503, UPSTREAM_UNAVAILABLE, str(exc), extensions={"module": exc.module}
            ) from None

    async def resolve_document(self, gql: GraphQLRequest) -> None:
        """Sets the document to run from the query, the APQ store or the manifest."""
        sha256 = gql.persisted_sha256()
        if sha256 is None:
            if not gql.query:
                raise RequestError(400, BAD_REQUEST, "No query in the request.")
            gql.document, gql.sha256 = gql.query, sha256_hex(gql.query)
            gql.source = "manifest" if gql.sha256 in self.manifest else "document"
            self.enforce_persisted_only(gql)
            return
        gql.persisted, gql.sha256 = True, sha256
        if gql.query is not None and sha256_hex(gql.query) != sha256:
            raise RequestError(400, BAD_REQUEST, "provided sha does not match query")
        if sha256 in self.manifest:
            gql.document, gql.source = self.manifest[sha256], "manifest"
            return
        gql.source = "apq"
        self.enforce_persisted_only(gql)
        if not self.settings.apq_enabled:
            if gql.query is None:
                # 200 under every media type, as Apollo Server answers (README, Clients).
                raise RequestError(
                    200, PERSISTED_QUERY_NOT_SUPPORTED, "PersistedQueryNotSupported", NO_STORE
                )
            gql.document, gql.source, gql.persisted = gql.query, "document", False
            return
        if gql.query is not None:
            gql.document, gql.register = gql.query, True
            return
        document = await self.apq.get(sha256)
        if document is None:
            # 200 under every media type, as Apollo Server answers: Apollo iOS fails any
            # non-2xx before its APQ interceptor reads the error (README, Clients).
            raise RequestError(200, PERSISTED_QUERY_NOT_FOUND, "PersistedQueryNotFound", NO_STORE)
        gql.document = document

    async def register(self, gql: GraphQLRequest, caller: Caller, now: datetime) -> None:
        """Keeps an APQ document, within the caller's and everyone's registration bounds
        (TOO_MANY_REGISTRATIONS, 429); a document already kept costs nothing."""
        if await self.apq.get(gql.sha256) == gql.document:
            return
        size = len(gql.document.encode())
        exceeded = await self.registrations.admit(caller.user_id, size, now.timestamp())
        if exceeded is not None:
            raise RequestError(
                429,
                TOO_MANY_REGISTRATIONS,
                f"Too many persisted-query registrations: {exceeded.what}.",
                {"Retry-After": str(exceeded.retry_after_s), **NO_STORE},
            )
        await self.apq.set(gql.sha256, gql.document)

    def enforce_persisted_only(self, gql: GraphQLRequest) -> None:
        settings = self.settings
        if not (settings.persisted_only or settings.persisted_only_log_only):
            return
        if gql.source == "manifest" or (gql.source == "apq" and settings.persisted_only_allow_apq):
            return
        if settings.persisted_only_log_only:
            log.warning(
                "persisted-only would reject %s (%s, operation %s)",
                gql.sha256,
                gql.source,
                gql.operation_name,
            )
            return
        # A final refusal (no client retries it): 400 under every media type, never cached,
        # so a client ahead of this deployment's manifest is not stuck once it catches up.
        raise RequestError(
            400,
            PERSISTED_QUERY_NOT_IN_LIST,
            "This document is not in the persisted-query list.",
            NO_STORE,
        )

    def limit(self, gql: GraphQLRequest) -> PreparedDocument:
        """Parses and validates once; refuses what breaks a limit or may not run over GET."""
        try:
            prepared = self.preparer.prepare(gql.document)
            if prepared.document is None:
                return prepared
            operation = get_operation_ast(prepared.document, gql.operation_name)
            if operation is None:
                message = (
                    f"Unknown operation named '{gql.operation_name}'."
                    if gql.operation_name
                    else "Must provide operation name if query contains multiple operations."
                )
                raise RequestError(400, BAD_REQUEST, message)
            if operation.operation == OperationType.SUBSCRIPTION and gql.method in ("GET", "POST"):
                raise RequestError(400, BAD_REQUEST, SUBSCRIPTIONS_ELSEWHERE)
            if gql.method == "GET" and operation.operation != OperationType.QUERY:
                raise RequestError(
                    405, BAD_REQUEST, "Mutations are only accepted over POST.", {"Allow": "POST"}
                )
            gql.operation_type = operation.operation
            if prepared.errors:
                return prepared
            gql.declared_variables = frozenset(
                d.variable.name.value for d in operation.variable_definitions or ()
            )
            gql.operation_label = operation_label(operation)
            self.preparer.check(prepared, operation, gql.variables)
        except LimitExceeded as exc:
            raise RequestError(400, exc.code, exc.message) from None
        return prepared

    async def execute(self, gql: GraphQLRequest, context: Context) -> ExecutionResult:
        allowed = {StrawberryOperationType.QUERY}
        if gql.method != "GET":  # POST, or a WebSocket's subscribe message
            allowed.add(StrawberryOperationType.MUTATION)
        try:
            return await self.schema.execute(
                gql.document,
                variable_values=gql.variables,
                context_value=context,
                operation_name=gql.operation_name,
                allowed_operation_types=allowed,
            )
        except InvalidOperationTypeError:
            raise RequestError(
                405, BAD_REQUEST, "Mutations are only accepted over POST.", {"Allow": "POST"}
            ) from None
        except CannotGetOperationTypeError as exc:
            raise RequestError(400, BAD_REQUEST, exc.as_http_error_reason()) from None

    def respond(
        self,
        gql: GraphQLRequest,
        request: Request,
        errors: list[GraphQLError] | None,
        data: dict[str, Any] | None,
        headers: dict[str, str],
        now: datetime,
        media: Media,
        coding: Coding,
    ) -> tuple[Response, bytes, bytes | None]:
        """The response, the exact body bytes it carries (or would, for a 304), and their
        gzip bytes when they were compressed (for the store: compressed once)."""
        body: dict[str, Any] = {}
        if errors:
            body["errors"] = [self.format_error(e, headers["X-Request-Id"]) for e in errors]
        # Execution did not start (a parse, validation or variable error: none has a path):
        # under the spec's media type that is a 400 with no `data` at all.
        refused = bool(errors) and data is None and all(e.path is None for e in errors or ())
        status = 200
        if refused and media.spec_status:
            status = 400
        else:
            body["data"] = data
        raw = orjson.dumps(body)
        min_bytes = self.settings.gzip_min_bytes
        if errors or (gql.method == "GET" and not gql.cacheable):
            extra = {**NO_STORE, "Vary": VARY} if errors and gql.cacheable else {}
            extra.update(NOSNIFF)
            response = Response(raw, status, {**headers, **extra}, media.content_type)
            return compressed(response, coding, min_bytes), raw, None
        # An answer without errors: the bytes a stored answer would carry, written as the
        # fast path writes a stored one (gzip made once, and kept when it is stored).
        storing = gql.answer_key is not None
        gz = None
        if coding.wants_gzip(len(raw), min_bytes) or (
            storing and min_bytes is not None and len(raw) >= min_bytes
        ):
            gz = gzip_answer(raw)
        cacheable = gql.method == "GET"
        message = answer_message(
            raw,
            gz,
            etag_for(raw) if cacheable else "",
            seconds_until_refresh(data, self.settings.refresh_interval_s, now)
            if cacheable
            else None,
            media=media,
            coding=coding,
            request_id=headers["X-Request-Id"],
            if_none_match=request.headers.get("if-none-match"),
            gzip_min_bytes=min_bytes,
        )
        return RawResponse(*message), raw, gz

    def format_error(self, error: GraphQLError, request_id: str) -> dict[str, Any]:
        formatted = format_error(error, mask=self.settings.is_production, request_id=request_id)
        if not self.settings.field_suggestions_enabled:
            formatted["message"] = _SUGGESTION.sub("", formatted["message"])
        return formatted
