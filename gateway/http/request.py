"""GraphQL over HTTP requests: the one parser of each wire format.

`parse_get` reads a raw query string; the fast path (gateway/http/fastpath.py) and the
endpoint both call it, so a persisted GET means the same to both. `parse_post` reads a
JSON body within a size bound.

A persisted document is named either by Apollo's `extensions.persistedQuery.sha256Hash`
or by `documentId` (the GraphQL-over-HTTP persisted-documents form, as Yoga, Hive and
graphql-codegen's client preset send it: `sha256:<hex>`, or the bare hex digest); both
name the same document, and so the same stored answer.
"""

import re
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qsl

import orjson
from graphql import OperationType
from starlette.requests import Request

from gateway.cache.answers import AnswerId
from gateway.documents.persisted import document_sha256
from gateway.http.media import JSON
from resolvers.errors import (
    BAD_REQUEST,
    BATCHING_DISABLED,
    REQUEST_TOO_LARGE,
    VARIABLES_TOO_LARGE,
)

GRAPHIQL_ASSET_PARAM = "graphiql-asset"
# Variables, on every path (GET, the fast path's key, POST, WebSocket, event stream): the
# schema's inputs nest 3 deep and take a few values; these leave room and keep any use of
# them (a canonical key, coercion, a log line) small and free of recursion limits.
MAX_VARIABLES_DEPTH = 16  # objects and lists within `variables`, itself 1
MAX_VARIABLES_VALUES = 1_000  # every object, list and scalar counted once
MAX_VARIABLES_CHARS = 65_536  # every key and string, summed

Source = Literal["document", "apq", "manifest"]


class RequestError(Exception):
    """A request refused before execution: HTTP status, code, message."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
        *,
        spec_status: int | None = None,
        extensions: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status  # under application/json
        # Under application/graphql-response+json, when it differs: a refusal has no
        # `data`, so the spec wants a 4xx where legacy clients expect a 200.
        self.spec_status = spec_status or status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.extensions = extensions or {}


@dataclass
class GraphQLRequest:
    query: str | None
    variables: dict[str, Any] | None
    operation_name: str | None
    extensions: dict[str, Any] | None
    method: str
    # `documentId`, as sent (checked and read by `persisted_sha256`).
    document_id: str | None = None
    # GET only: the GraphiQL file asked for (`?graphiql-asset=NAME`), served instead.
    graphiql_asset: str | None = None
    # Set by the endpoint's `resolve_document`: the text to run, its sha256, how it was found.
    document: str = ""
    sha256: str = ""
    source: Source = "document"
    persisted: bool = False
    # Set when the request registers its document under its hash (APQ), once it passed.
    register: bool = False
    # Set on a persisted GET that missed the stored answers: where to store the answer.
    answer_key: str | None = None
    # Set by `limit`: the variables the operation declares, and its type.
    declared_variables: frozenset[str] = frozenset()
    operation_type: OperationType | None = None

    @property
    def cacheable(self) -> bool:
        """A persisted GET: its answer carries an ETag and a max-age."""
        return self.method == "GET" and self.persisted

    @property
    def answer_id(self) -> AnswerId | None:
        """What names this request's stored answer: a persisted GET with no `query` only."""
        if self.method != "GET" or self.query is not None or self.graphiql_asset is not None:
            return None
        sha256 = self.persisted_sha256()
        if sha256 is None:
            return None
        return AnswerId.of(sha256, self.operation_name, self.variables)

    def persisted_sha256(self) -> str | None:
        """The sha256 hex of the persisted document named by `documentId` or
        `extensions.persistedQuery`; None when the request names none."""
        from_extensions = persisted_hash(self.extensions)
        if self.document_id is None:
            return from_extensions
        sha256 = document_sha256(self.document_id)
        if sha256 is None:
            raise RequestError(
                400, BAD_REQUEST, "documentId must be sha256:<64 hex digits> (or the digits)."
            )
        if from_extensions is not None and from_extensions != sha256:
            raise RequestError(
                400, BAD_REQUEST, "documentId and persistedQuery name different documents."
            )
        return sha256


class BatchRefused(RequestError):
    """A JSON array of operations: refused, with one error per operation in an array of the
    batch's length, so that a batching client (Apollo's BatchHttpLink) hands each operation
    its BATCHING_DISABLED error instead of a length mismatch."""

    def __init__(self, operations: int) -> None:
        super().__init__(
            200,
            BATCHING_DISABLED,
            "Batched operations are not accepted: send each operation in a request of its own.",
            {"Cache-Control": "no-store"},
            spec_status=400,
        )
        self.operations = operations


# Beyond this, one error for the whole array: a refusal stays smaller than the request.
MAX_BATCH_ANSWERED = 100


def _loads_param(raw: str | None, name: str) -> Any:
    if raw is None or raw == "":
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise RequestError(400, BAD_REQUEST, f"`{name}` is not valid JSON.") from None


def check_shape(data: Any, method: str) -> GraphQLRequest:
    if isinstance(data, list):
        if not data:
            message = "An empty batch: send one operation, as an object."
            raise RequestError(400, BAD_REQUEST, message)
        if not all(isinstance(element, dict) for element in data):
            raise RequestError(400, BAD_REQUEST, "A batch holds operation objects only.")
        if len(data) > MAX_BATCH_ANSWERED:
            raise RequestError(400, BATCHING_DISABLED, "Batched operations are not accepted.")
        raise BatchRefused(len(data))
    if not isinstance(data, dict):
        raise RequestError(400, BAD_REQUEST, "The body must be a JSON object.")
    query, variables = data.get("query"), data.get("variables")
    operation_name, extensions = data.get("operationName"), data.get("extensions")
    document_id = data.get("documentId")
    if query is not None and not isinstance(query, str):
        raise RequestError(400, BAD_REQUEST, "`query` must be a string.")
    if document_id is not None and not isinstance(document_id, str):
        raise RequestError(400, BAD_REQUEST, "`documentId` must be a string.")
    if variables is not None and not isinstance(variables, dict):
        raise RequestError(400, BAD_REQUEST, "`variables` must be an object.")
    if operation_name is not None and not isinstance(operation_name, str):
        raise RequestError(400, BAD_REQUEST, "`operationName` must be a string.")
    if extensions is not None and not isinstance(extensions, dict):
        raise RequestError(400, BAD_REQUEST, "`extensions` must be an object.")
    if variables:
        check_variables(variables)
    return GraphQLRequest(
        query or None, variables, operation_name, extensions, method, document_id or None
    )


def check_variables(variables: dict[str, Any]) -> None:
    """Refuses variables past the bounds above (HTTP 400, VARIABLES_TOO_LARGE) in one
    iterative walk that stops at the first bound crossed."""
    values = 0
    chars = 0
    stack: list[tuple[Any, int]] = [(variables, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth > MAX_VARIABLES_DEPTH:
                raise _too_large(f"nest deeper than {MAX_VARIABLES_DEPTH} levels")
            values += len(value)
            if values > MAX_VARIABLES_VALUES:
                raise _too_large(f"hold more than {MAX_VARIABLES_VALUES} values")
            if isinstance(value, dict):
                chars += sum(len(key) for key in value)
                stack.extend((item, depth + 1) for item in value.values())
            else:
                stack.extend((item, depth + 1) for item in value)
        elif isinstance(value, str):
            chars += len(value)
        if chars > MAX_VARIABLES_CHARS:
            raise _too_large(f"hold more than {MAX_VARIABLES_CHARS} characters")


def _too_large(what: str) -> RequestError:
    return RequestError(400, VARIABLES_TOO_LARGE, f"The variables {what}.")


def parse_get(query_string: bytes) -> GraphQLRequest:
    """A GET's parameters. A repeated parameter counts once, its last value (as Starlette's
    query_params reads it)."""
    params = dict(parse_qsl(query_string.decode("latin-1"), keep_blank_values=True))
    gql = check_shape(
        {
            "query": params.get("query"),
            "variables": _loads_param(params.get("variables"), "variables"),
            "operationName": params.get("operationName") or None,
            "extensions": _loads_param(params.get("extensions"), "extensions"),
            "documentId": params.get("documentId"),
        },
        "GET",
    )
    gql.graphiql_asset = params.get(GRAPHIQL_ASSET_PARAM)
    return gql


async def parse_post(request: Request, max_body_bytes: int) -> GraphQLRequest:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in (JSON, "application/graphql+json"):
        raise RequestError(415, BAD_REQUEST, "POST bodies must be application/json.")
    too_large = RequestError(
        413, REQUEST_TOO_LARGE, f"Request body exceeds {max_body_bytes} bytes."
    )
    declared = request.headers.get("content-length")
    # isascii: str.isdigit() also holds for "²", which int() refuses.
    if (
        declared is not None
        and declared.isascii()
        and declared.isdigit()
        and int(declared) > max_body_bytes
    ):
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
    return check_shape(data, "POST")


def persisted_hash(extensions: dict[str, Any] | None) -> str | None:
    """The sha256 of `extensions.persistedQuery`, or None when the request has none. The hash
    may carry `sha256:`, as Apollo Client sends codegen's document ids through
    PersistedQueryLink's `generateHash`."""
    persisted = (extensions or {}).get("persistedQuery")
    if persisted is None:
        return None
    if not isinstance(persisted, dict) or persisted.get("version") != 1:
        raise RequestError(400, BAD_REQUEST, "Unsupported persistedQuery; use version 1.")
    sha256 = document_sha256(persisted.get("sha256Hash"))
    if sha256 is None:
        raise RequestError(400, BAD_REQUEST, "persistedQuery.sha256Hash must be sha256 hex.")
    return sha256


def wants_graphiql(request: Request) -> bool:
    return (
        request.method == "GET"
        and "query" not in request.query_params
        and "extensions" not in request.query_params
        and "documentId" not in request.query_params
        and "text/html" in request.headers.get("accept", "")
    )


_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def inbound_request_id(value: str | None) -> str | None:
    """A caller's X-Request-Id, kept only when it is short and plain (it goes into logs)."""
    return value if value is not None and _REQUEST_ID.fullmatch(value) else None
