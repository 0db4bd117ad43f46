"""GraphQL over HTTP on Starlette.

Written on `schema.execute` rather than Strawberry's view so that every refusal is a
JSON body with a stable code (the view answers some of them in plain text), and so that
persisted queries, limits and cached responses sit in front of execution:

    parse request → authenticate → resolve document → limits → execute → respond
"""

import logging
import math
import re
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import orjson
from graphql import GraphQLError, OperationType, get_operation_ast
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types.execution import ExecutionResult
from strawberry.types.graphql import OperationType as StrawberryOperationType

from gateway import metrics
from gateway.auth import AuthError
from gateway.http.errors import BAD_REQUEST, error_body, format_error
from gateway.documents.limits import LimitExceeded, PreparedDocument, prepared_schema
from gateway.logs import new_request_id, request_id_var
from gateway.documents.persisted import (
    DocumentStore,
    dashboard_operations,
    is_sha256_hex,
    load_manifest,
    make_apq_store,
    sha256_hex,
)
from gateway.cache.answers import AnswerRequest, StoredResponse, etag_for, expires_at
from gateway.services import Services
from resolvers.context import Context
from resolvers.errors import UNAUTHENTICATED
from resolvers.subtrees import Caller

log = logging.getLogger("gateway.http")

JSON = "application/json"
PERSISTED_QUERY_NOT_FOUND = "PERSISTED_QUERY_NOT_FOUND"
PERSISTED_QUERY_NOT_SUPPORTED = "PERSISTED_QUERY_NOT_SUPPORTED"
PERSISTED_QUERY_NOT_IN_LIST = "PERSISTED_QUERY_NOT_IN_LIST"
REQUEST_TOO_LARGE = "REQUEST_TOO_LARGE"
BATCHING_DISABLED = "BATCHING_DISABLED"
NOT_FOUND = "NOT_FOUND"

STATIC_DIR = Path(__file__).parent / "static" / "graphiql"
# GraphiQL's files are served from /graphql itself (`?graphiql-asset=NAME`), so the page
# needs no route of its own and no CDN.
GRAPHIQL_ASSET_PARAM = "graphiql-asset"
GRAPHIQL_ASSETS = {
    "graphiql.min.js": "text/javascript",
    "graphiql.min.css": "text/css",
    "react.production.min.js": "text/javascript",
    "react-dom.production.min.js": "text/javascript",
}
ASSET_MAX_AGE_S = 86_400
NO_STORE = {"Cache-Control": "no-store"}
_SUGGESTION = re.compile(r"\s*Did you mean .*$", re.DOTALL)

Source = Literal["document", "apq", "manifest"]


class RequestError(Exception):
    """A request refused before execution: HTTP status, code, message."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


@dataclass
class GraphQLRequest:
    query: str | None
    variables: dict[str, Any] | None
    operation_name: str | None
    extensions: dict[str, Any] | None
    method: str
    # Set by `resolve_document`: the text to run, its sha256, and how it was found.
    document: str = ""
    sha256: str = ""
    source: Source = "document"
    persisted: bool = False
    # Set by the fast path on a miss: where the executed answer is stored.
    response_key: str | None = None
    # Set by `limit`: the variables the operation declares.
    declared_variables: frozenset[str] = frozenset()

    @property
    def normalized_variables(self) -> bytes:
        """Variables as canonical JSON (sorted keys; none = `{}`), for cache keys."""
        return AnswerRequest.canonical_variables(self.variables)

    @property
    def cacheable(self) -> bool:
        """A persisted GET: its answer carries an ETag and a max-age."""
        return self.method == "GET" and self.persisted


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=JSON, headers=headers)


def cache_headers(max_age_s: int) -> dict[str, str]:
    # private: the answer is one caller's; Vary: a shared cache must key on the token.
    return {"Cache-Control": f"private, max-age={max_age_s}", "Vary": "Authorization"}


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Weak comparison, as RFC 9110 prescribes for If-None-Match."""
    if not if_none_match:
        return False
    tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
    return "*" in tags or etag in tags


def seconds_until_refresh(data: Any, refresh_interval_s: float, now: datetime) -> int:
    """Until the oldest `computedAt` in the answer is refreshed; 0 when there is none.

    The same arithmetic as a stored answer's max-age, so both paths send equal headers."""
    until = expires_at(data, refresh_interval_s)
    return 0 if until is None else max(0, math.floor(until - now.timestamp()))


def _loads_param(raw: str | None, name: str) -> Any:
    if raw is None or raw == "":
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise RequestError(400, BAD_REQUEST, f"`{name}` is not valid JSON.") from None


def _check_shape(data: Any, method: str) -> GraphQLRequest:
    if isinstance(data, list):
        raise RequestError(400, BATCHING_DISABLED, "Batched operations are not accepted.")
    if not isinstance(data, dict):
        raise RequestError(400, BAD_REQUEST, "The body must be a JSON object.")
    query, variables = data.get("query"), data.get("variables")
    operation_name, extensions = data.get("operationName"), data.get("extensions")
    if query is not None and not isinstance(query, str):
        raise RequestError(400, BAD_REQUEST, "`query` must be a string.")
    if variables is not None and not isinstance(variables, dict):
        raise RequestError(400, BAD_REQUEST, "`variables` must be an object.")
    if operation_name is not None and not isinstance(operation_name, str):
        raise RequestError(400, BAD_REQUEST, "`operationName` must be a string.")
    if extensions is not None and not isinstance(extensions, dict):
        raise RequestError(400, BAD_REQUEST, "`extensions` must be an object.")
    return GraphQLRequest(query or None, variables, operation_name, extensions, method)


async def parse_request(request: Request, max_body_bytes: int) -> GraphQLRequest:
    if request.method == "GET":
        params = request.query_params
        return _check_shape(
            {
                "query": params.get("query"),
                "variables": _loads_param(params.get("variables"), "variables"),
                "operationName": params.get("operationName") or None,
                "extensions": _loads_param(params.get("extensions"), "extensions"),
            },
            "GET",
        )
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in (JSON, "application/graphql+json"):
        raise RequestError(415, BAD_REQUEST, "POST bodies must be application/json.")
    too_large = RequestError(
        413, REQUEST_TOO_LARGE, f"Request body exceeds {max_body_bytes} bytes."
    )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_body_bytes:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_body_bytes:
            raise too_large
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise RequestError(400, BAD_REQUEST, "The body is not valid JSON.") from None
    return _check_shape(data, "POST")


def wants_graphiql(request: Request) -> bool:
    return (
        request.method == "GET"
        and "query" not in request.query_params
        and "extensions" not in request.query_params
        and "text/html" in request.headers.get("accept", "")
    )


# ASGI scope key: the answer key gateway.http.fastpath looked up and did not find.
FAST_PATH_MISSED_KEY = "gateway.fast_path_missed_key"

# Operation names label a metric: only the dashboard's own, others are "other".
OBSERVED = "gateway.observed"  # ASGI scope key: (operation, outcome) of this request
KNOWN_OPERATIONS = frozenset(dashboard_operations())


def observe(request: Request, gql: GraphQLRequest, outcome: str) -> None:
    name = gql.operation_name if gql.operation_name in KNOWN_OPERATIONS else "other"
    request.scope[OBSERVED] = (name, outcome)


_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def inbound_request_id(value: str | None) -> str | None:
    """A caller's X-Request-Id, kept only when it is short and plain (it goes into logs)."""
    return value if value is not None and _REQUEST_ID.fullmatch(value) else None


def persisted_hash(extensions: dict[str, Any] | None) -> str | None:
    """The sha256 of `extensions.persistedQuery`, or None when the request has none."""
    persisted = (extensions or {}).get("persistedQuery")
    if persisted is None:
        return None
    if not isinstance(persisted, dict) or persisted.get("version") != 1:
        raise RequestError(400, BAD_REQUEST, "Unsupported persistedQuery; use version 1.")
    sha256 = persisted.get("sha256Hash")
    if not is_sha256_hex(sha256):
        raise RequestError(400, BAD_REQUEST, "persistedQuery.sha256Hash must be sha256 hex.")
    return str(sha256)


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
            services.redis, ttl_s=settings.apq_ttl_s, memory_entries=settings.apq_memory_entries
        )
        self.preparer, self.schema = prepared_schema(services.schema, settings)
        self.graphiql_html = (STATIC_DIR / "index.html").read_text()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        started = time.perf_counter()
        request = Request(scope, receive)
        response = await self.handle(request)
        await response(scope, receive, send)
        operation, outcome = scope.get(OBSERVED, ("other", "other"))
        metrics.REQUEST_LATENCY.labels(operation, outcome).observe(time.perf_counter() - started)

    async def handle(self, request: Request) -> Response:
        request_id = inbound_request_id(request.headers.get("x-request-id")) or new_request_id()
        request_id_var.set(request_id)
        headers = {"X-Request-Id": request_id}
        if request.method not in ("GET", "POST"):
            return json_response(
                error_body("Use GET or POST.", BAD_REQUEST), 405, {**headers, "Allow": "GET, POST"}
            )
        if request.method == "GET" and GRAPHIQL_ASSET_PARAM in request.query_params:
            return self.graphiql_asset(request.query_params[GRAPHIQL_ASSET_PARAM], headers)
        if wants_graphiql(request):
            if self.settings.graphiql_enabled:
                return HTMLResponse(self.graphiql_html, headers=headers)
            return json_response(error_body("GraphiQL is disabled.", NOT_FOUND), 404, headers)
        try:
            caller = self.authenticate(request)
            gql = await parse_request(request, self.settings.max_body_bytes)
            cached = await self.fast_path(gql, caller, request, headers)
            if cached is not None:
                observe(request, gql, "fast")
                return cached
            await self.resolve_document(gql)
            prepared = self.limit(gql)
            if prepared.errors:
                observe(request, gql, "invalid")
                return self.respond(gql, request, prepared.errors, None, headers)[0]
            context = self.services.make_context(caller, request_id)
            result = await self.execute(gql, context)
        except RequestError as exc:
            body = error_body(exc.message, exc.code, requestId=request_id)
            request.scope[OBSERVED] = ("other", f"refused_{exc.status}")
            return json_response(body, exc.status, {**headers, **exc.headers})
        observe(request, gql, "error" if result.errors else "ok")
        response, raw = self.respond(gql, request, result.errors, result.data, headers)
        if gql.response_key is not None and not result.errors:
            await self.store(gql, raw, result.data, context, caller)
        return response

    async def fast_path(
        self, gql: GraphQLRequest, caller: Caller, request: Request, headers: dict[str, str]
    ) -> Response | None:
        """A persisted GET answered from stored bytes: no parsing, validation or execution.

        On a miss, remembers the key so the executed answer can be stored under it."""
        responses = self.services.responses
        if responses is None or gql.method != "GET" or gql.query is not None:
            return None
        sha256 = persisted_hash(gql.extensions)
        if sha256 is None:
            return None
        key = responses.key(caller, sha256, gql.operation_name, gql.normalized_variables)
        if request.scope.get(FAST_PATH_MISSED_KEY) == key:  # looked up in front already
            gql.response_key = key
            return None
        stored = await responses.get(key)
        if stored is None:
            gql.response_key = key
            return None
        max_age_s = stored.max_age_s(self.services.clock().timestamp())
        headers = {**headers, **cache_headers(max_age_s), "ETag": stored.etag}
        if etag_matches(request.headers.get("if-none-match"), stored.etag):
            return Response(status_code=304, headers=headers)
        return Response(stored.body, 200, headers, JSON)

    async def store(
        self, gql: GraphQLRequest, raw: bytes, data: Any, context: Context, caller: Caller
    ) -> None:
        """Keeps an executed answer for the fast path, with the request it answers."""
        source = context.source
        dependencies = getattr(source, "dependencies", None)
        if not dependencies or not getattr(source, "answer_cacheable", False):
            return
        # max-age runs to the next refresh; the entry lives until its inputs turn stale.
        until = expires_at(data, self.settings.refresh_interval_s)
        if until is None or gql.response_key is None:
            return
        # Variables the operation does not declare change nothing in the answer but would
        # make a new key (and a new answer to rebuild every cycle) per value: not stored.
        if not set(gql.variables or ()) <= gql.declared_variables:
            return
        assert self.services.responses is not None
        now = self.services.clock()
        request = AnswerRequest(
            caller.user_id,
            caller.role,
            gql.sha256,
            gql.operation_name,
            gql.variables or {},
            now.timestamp(),
        )
        await self.services.responses.put(
            gql.response_key,
            StoredResponse(etag_for(raw), until, raw, request.encode()),
            dependencies,
            self.settings.fresh_s,
            now,
            getattr(source, "dependency_versions", None),
        )

    def authenticate(self, request: Request) -> Caller:
        try:
            return self.services.verifier.verify(request.headers.get("authorization"))
        except AuthError as exc:
            raise RequestError(
                401, UNAUTHENTICATED, str(exc), {"WWW-Authenticate": 'Bearer realm="gateway"'}
            ) from None

    async def resolve_document(self, gql: GraphQLRequest) -> None:
        """Sets the document to run from the query, the APQ store or the manifest."""
        sha256 = persisted_hash(gql.extensions)
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
                raise RequestError(
                    200, PERSISTED_QUERY_NOT_SUPPORTED, "PersistedQueryNotSupported", NO_STORE
                )
            gql.document, gql.source, gql.persisted = gql.query, "document", False
            return
        if gql.query is not None:
            gql.document = gql.query
            await self.apq.set(sha256, gql.query)
            return
        document = await self.apq.get(sha256)
        if document is None:
            raise RequestError(200, PERSISTED_QUERY_NOT_FOUND, "PersistedQueryNotFound", NO_STORE)
        gql.document = document

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
        raise RequestError(
            400, PERSISTED_QUERY_NOT_IN_LIST, "This document is not in the persisted-query list."
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
            if gql.method == "GET" and operation.operation != OperationType.QUERY:
                raise RequestError(
                    405, BAD_REQUEST, "Mutations are only accepted over POST.", {"Allow": "POST"}
                )
            if prepared.errors:
                return prepared
            gql.declared_variables = frozenset(
                d.variable.name.value for d in operation.variable_definitions or ()
            )
            self.preparer.check(prepared.document, operation, gql.variables)
        except LimitExceeded as exc:
            raise RequestError(400, exc.code, exc.message) from None
        return prepared

    async def execute(self, gql: GraphQLRequest, context: Context) -> ExecutionResult:
        allowed = {StrawberryOperationType.QUERY}
        if gql.method == "POST":
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
    ) -> tuple[Response, bytes]:
        """The response and the exact body bytes it carries (or would, for a 304)."""
        body: dict[str, Any] = {}
        if errors:
            body["errors"] = [self.format_error(e, headers["X-Request-Id"]) for e in errors]
        body["data"] = data
        raw = orjson.dumps(body)
        if not gql.cacheable:
            return Response(raw, 200, headers, JSON), raw
        if errors:
            return Response(raw, 200, {**headers, **NO_STORE, "Vary": "Authorization"}, JSON), raw
        settings = self.settings
        max_age_s = seconds_until_refresh(data, settings.refresh_interval_s, self.services.clock())
        etag = etag_for(raw)
        headers = {**headers, **cache_headers(max_age_s), "ETag": etag}
        if etag_matches(request.headers.get("if-none-match"), etag):
            return Response(status_code=304, headers=headers), raw
        return Response(raw, 200, headers, JSON), raw

    def format_error(self, error: GraphQLError, request_id: str) -> dict[str, Any]:
        formatted = format_error(error, mask=self.settings.is_production, request_id=request_id)
        if not self.settings.field_suggestions_enabled:
            formatted["message"] = _SUGGESTION.sub("", formatted["message"])
        return formatted

    def graphiql_asset(self, name: str, headers: dict[str, str]) -> Response:
        if not self.settings.graphiql_enabled or name not in GRAPHIQL_ASSETS:
            return json_response(error_body("No such asset.", NOT_FOUND), 404, headers)
        return FileResponse(
            STATIC_DIR / name,
            media_type=GRAPHIQL_ASSETS[name],
            headers={**headers, "Cache-Control": f"public, max-age={ASSET_MAX_AGE_S}"},
        )
