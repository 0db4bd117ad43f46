"""Stable codes for every GraphQL error, and masking of internal errors."""

import logging
from typing import Any

from graphql import GraphQLError, GraphQLSyntaxError

from loaders.engines import UpstreamDataInvalid, UpstreamUnavailable
from resolvers.errors import (
    BAD_USER_INPUT,
    UPSTREAM_DATA_INVALID,
    UPSTREAM_UNAVAILABLE,
    is_output_fault,
)

log = logging.getLogger("gateway.http.errors")

GRAPHQL_PARSE_FAILED = "GRAPHQL_PARSE_FAILED"
GRAPHQL_VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED"
INTERNAL_SERVER_ERROR = "INTERNAL_SERVER_ERROR"
BAD_REQUEST = "BAD_REQUEST"

# graphql-core phrases for a bad argument or variable value (as opposed to a bad document).
_INPUT_PHRASES = (
    "got invalid value",
    "cannot represent",
    "does not exist in",
    "Expected value of type",
    "of required type",
    "was not provided",
    "to be provided",
)


def error_code(error: GraphQLError) -> str:
    original = error.original_error
    if isinstance(original, UpstreamUnavailable):
        return UPSTREAM_UNAVAILABLE
    if isinstance(original, UpstreamDataInvalid):
        return UPSTREAM_DATA_INVALID
    if isinstance(error, GraphQLSyntaxError):
        return GRAPHQL_PARSE_FAILED
    if is_output_fault(error):
        return INTERNAL_SERVER_ERROR
    if original is None or isinstance(original, GraphQLError):
        if any(phrase in error.message for phrase in _INPUT_PHRASES):
            return BAD_USER_INPUT
        return GRAPHQL_VALIDATION_FAILED
    return INTERNAL_SERVER_ERROR


def format_error(error: GraphQLError, *, mask: bool, request_id: str) -> dict[str, Any]:
    formatted: dict[str, Any] = dict(error.formatted)
    extensions = dict(formatted.get("extensions") or {})
    if "code" not in extensions:
        extensions["code"] = error_code(error)
    original = error.original_error
    if isinstance(original, UpstreamUnavailable | UpstreamDataInvalid):
        extensions["module"] = original.module
        formatted["message"] = str(original)
    if extensions["code"] == INTERNAL_SERVER_ERROR:
        log.error(
            "internal error (request %s) at %s",
            request_id,
            error.path,
            exc_info=(type(original), original, original.__traceback__) if original else None,
        )
        if mask:
            formatted["message"] = "Internal server error."
    extensions["requestId"] = request_id  # the same id as the X-Request-Id header and logs
    formatted["extensions"] = extensions
    return formatted


def error_body(message: str, code: str, **extensions: Any) -> dict[str, Any]:
    """A GraphQL-shaped body for errors raised before execution (HTTP 4xx)."""
    return {"errors": [{"message": message, "extensions": {"code": code, **extensions}}]}
