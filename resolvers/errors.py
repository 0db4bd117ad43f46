"""Every error code the gateway answers with, in one catalog, and GraphQL errors built on it.

A code is stable: clients branch on it. README.md's table of codes is checked against
CATALOG by tests/test_docs.py.
"""

from graphql import GraphQLError

# Answers about the request or the caller.
UNAUTHENTICATED = "UNAUTHENTICATED"
FORBIDDEN = "FORBIDDEN"
NOT_FOUND = "NOT_FOUND"
BAD_USER_INPUT = "BAD_USER_INPUT"
BAD_REQUEST = "BAD_REQUEST"
RATE_LIMITED = "RATE_LIMITED"
# Subscriptions (WebSocket, event stream).
TOO_MANY_CONNECTIONS = "TOO_MANY_CONNECTIONS"
TOO_MANY_SUBSCRIPTIONS = "TOO_MANY_SUBSCRIPTIONS"
# Documents: parsing, validation, persisted queries.
GRAPHQL_PARSE_FAILED = "GRAPHQL_PARSE_FAILED"
GRAPHQL_VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED"
PERSISTED_QUERY_NOT_FOUND = "PERSISTED_QUERY_NOT_FOUND"
PERSISTED_QUERY_NOT_SUPPORTED = "PERSISTED_QUERY_NOT_SUPPORTED"
PERSISTED_QUERY_NOT_IN_LIST = "PERSISTED_QUERY_NOT_IN_LIST"
# Limits.
QUERY_TOO_DEEP = "QUERY_TOO_DEEP"
TOO_MANY_ALIASES = "TOO_MANY_ALIASES"
TOO_MANY_TOKENS = "TOO_MANY_TOKENS"
QUERY_TOO_COSTLY = "QUERY_TOO_COSTLY"
QUERY_TOO_LONG = "QUERY_TOO_LONG"
TOO_MANY_FIELDS = "TOO_MANY_FIELDS"
TOO_MANY_OPERATIONS = "TOO_MANY_OPERATIONS"
REQUEST_TOO_LARGE = "REQUEST_TOO_LARGE"
BATCHING_DISABLED = "BATCHING_DISABLED"
# Webhooks (POST /webhooks/upstream).
BAD_SIGNATURE = "BAD_SIGNATURE"
PAYLOAD_TOO_LARGE = "PAYLOAD_TOO_LARGE"
UNAVAILABLE = "UNAVAILABLE"
# The gateway's own state.
UPSTREAM_UNAVAILABLE = "UPSTREAM_UNAVAILABLE"
UPSTREAM_DATA_INVALID = "UPSTREAM_DATA_INVALID"
SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
INTERNAL_SERVER_ERROR = "INTERNAL_SERVER_ERROR"
# Bounds on what one request, one caller or one event may cost.
HEADERS_TOO_LARGE = "HEADERS_TOO_LARGE"
REQUEST_TIMEOUT = "REQUEST_TIMEOUT"
VARIABLES_TOO_LARGE = "VARIABLES_TOO_LARGE"
TOO_MANY_REGISTRATIONS = "TOO_MANY_REGISTRATIONS"
TOO_MANY_IDS = "TOO_MANY_IDS"

CATALOG: dict[str, str] = {
    UNAUTHENTICATED: (
        "No, an invalid or an expired bearer token, or one whose user or role the users table "
        "does not hold (HTTP 401)."
    ),
    FORBIDDEN: "The caller's role may not do this (e.g. a director listing directors).",
    NOT_FOUND: "No such object in the caller's scope (an out-of-scope id answers the same).",
    BAD_USER_INPUT: "An argument or variable value is invalid.",
    BAD_REQUEST: "The HTTP request is malformed (body, parameters, method, media type).",
    RATE_LIMITED: "Too many refresh requests from this caller this minute.",
    TOO_MANY_CONNECTIONS: "Subscriptions: over the caller's or the process's connection limit.",
    TOO_MANY_SUBSCRIPTIONS: "Subscriptions: over the limit of subscriptions on one connection.",
    GRAPHQL_PARSE_FAILED: "The document is not valid GraphQL syntax.",
    GRAPHQL_VALIDATION_FAILED: "The document does not validate against the schema.",
    PERSISTED_QUERY_NOT_FOUND: "Unknown persisted-query hash: send the document once.",
    PERSISTED_QUERY_NOT_SUPPORTED: "Automatic persisted queries are turned off.",
    PERSISTED_QUERY_NOT_IN_LIST: "Persisted-only mode: the document is not in the manifest.",
    QUERY_TOO_DEEP: "Fields nested deeper than GATEWAY_MAX_DEPTH.",
    TOO_MANY_ALIASES: "More aliased fields than GATEWAY_MAX_ALIASES.",
    TOO_MANY_TOKENS: "More lexical tokens than GATEWAY_MAX_TOKENS.",
    QUERY_TOO_COSTLY: "More field resolutions than GATEWAY_MAX_COST.",
    QUERY_TOO_LONG: "A document longer than GATEWAY_MAX_DOCUMENT_CHARS characters.",
    TOO_MANY_FIELDS: (
        "More fields than GATEWAY_MAX_FIELDS (fragments expanded), than GATEWAY_MAX_SELECTIONS "
        "in one selection set, one response name more than GATEWAY_MAX_REPEATED_FIELDS "
        "times in one selection set, or fields that take too many comparisons to validate."
    ),
    TOO_MANY_OPERATIONS: "More operations in one document than GATEWAY_MAX_OPERATIONS.",
    REQUEST_TOO_LARGE: "A body larger than GATEWAY_MAX_BODY_BYTES (HTTP 413).",
    BATCHING_DISABLED: "A JSON array of operations: batches are refused, one error per operation.",
    BAD_SIGNATURE: "Webhook: missing or wrong X-Signature (HTTP 401).",
    PAYLOAD_TOO_LARGE: "Webhook: a body larger than GATEWAY_WEBHOOK_MAX_BODY_BYTES (HTTP 413).",
    UNAVAILABLE: "Webhook: the event cannot be recorded or queued now; retry (HTTP 503).",
    UPSTREAM_UNAVAILABLE: "An upstream module is down; `extensions.module` names it.",
    UPSTREAM_DATA_INVALID: (
        "An upstream module holds a value outside docs/upstream.md (a timestamp that is not "
        "one); `extensions.module` names it. Refused, logged and counted, never miscounted."
    ),
    SERVICE_UNAVAILABLE: "On-demand refresh is not available in this deployment.",
    INTERNAL_SERVER_ERROR: "A fault of the gateway; `requestId` finds it in the logs.",
    HEADERS_TOO_LARGE: (
        "A request head larger than GATEWAY_MAX_HEADER_BYTES or with more than "
        "GATEWAY_MAX_HEADERS fields (HTTP 431)."
    ),
    REQUEST_TIMEOUT: "A request head not received within GATEWAY_HEADER_TIMEOUT_S (HTTP 408).",
    VARIABLES_TOO_LARGE: (
        "Variables nested deeper than 16 levels, holding more than 1,000 values or more than "
        "65,536 characters of keys and strings (HTTP 400)."
    ),
    TOO_MANY_REGISTRATIONS: (
        "Persisted queries: more documents registered than GATEWAY_APQ_MAX_REGISTRATIONS or "
        "GATEWAY_APQ_MAX_REGISTRATION_BYTES per caller per window, or the store is full (HTTP 429)."
    ),
    TOO_MANY_IDS: "Webhook: an event naming more than GATEWAY_WEBHOOK_MAX_IDS ids (HTTP 413).",
}

# Answers, not faults: not logged as errors.
EXPECTED_CODES = frozenset(
    {NOT_FOUND, BAD_USER_INPUT, FORBIDDEN, UNAUTHENTICATED, UPSTREAM_UNAVAILABLE, RATE_LIMITED}
)


# A value computed by the gateway that its field's type cannot carry: a fault, logged.
def is_output_fault(error: GraphQLError) -> bool:
    """A value the gateway computed that its field's type cannot carry (an Int past 2^31−1,
    say): graphql-core's serializer raises the same "cannot represent" as for a bad input,
    but during execution, so the error has a path; input values are coerced before it."""
    return error.path is not None and "cannot represent" in error.message


def coded(message: str, code: str, **extensions: object) -> GraphQLError:
    return GraphQLError(message, extensions={"code": code, **extensions})


def not_found(kind: str, ident: object) -> GraphQLError:
    # Same answer for "does not exist" and "outside your scope": existence must not leak.
    return coded(f"{kind} {ident} not found", NOT_FOUND)


def bad_input(message: str) -> GraphQLError:
    return coded(message, BAD_USER_INPUT)


def upstream_unavailable(module: str, path: list[str | int] | None = None) -> GraphQLError:
    return GraphQLError(
        f"upstream module {module} is unavailable",
        path=path,
        extensions={"code": UPSTREAM_UNAVAILABLE, "module": module},
    )
