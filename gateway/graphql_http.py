"""GraphQL over HTTP on Starlette.

Written on `schema.execute` rather than Strawberry's view so that every refusal is a
JSON body with a stable code (the view answers some of them in plain text), and so that
persisted queries, limits and cached responses can sit in front of execution.
"""

import logging
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types.graphql import OperationType

from gateway.auth import AuthError
from gateway.errors import BAD_REQUEST, error_body, format_error
from gateway.services import Services
from resolvers.errors import UNAUTHENTICATED

log = logging.getLogger("gateway.http")

JSON = "application/json"


class RequestError(Exception):
    """A request refused before execution: HTTP status, code, message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass
class GraphQLRequest:
    query: str | None
    variables: dict[str, Any] | None
    operation_name: str | None
    extensions: dict[str, Any] | None
    method: str


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=JSON, headers=headers)


def _loads_param(raw: str | None, name: str) -> Any:
    if raw is None or raw == "":
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise RequestError(400, BAD_REQUEST, f"`{name}` is not valid JSON.") from None


def _check_shape(data: Any, method: str) -> GraphQLRequest:
    if isinstance(data, list):
        raise RequestError(400, BAD_REQUEST, "Batched operations are not accepted.")
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
    return GraphQLRequest(query, variables, operation_name, extensions, method)


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
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_body_bytes:
        raise RequestError(413, BAD_REQUEST, f"Request body exceeds {max_body_bytes} bytes.")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_body_bytes:
            raise RequestError(413, BAD_REQUEST, f"Request body exceeds {max_body_bytes} bytes.")
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


class GraphQLEndpoint:
    """ASGI app for /graphql."""

    def __init__(self, services: Services) -> None:
        self.services = services

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        request = Request(scope, receive)
        response = await self.handle(request)
        await response(scope, receive, send)

    async def handle(self, request: Request) -> Response:
        services = self.services
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        headers = {"X-Request-Id": request_id}
        if request.method not in ("GET", "POST"):
            return json_response(
                error_body("Use GET or POST.", BAD_REQUEST), 405, {**headers, "Allow": "GET, POST"}
            )
        if wants_graphiql(request):
            if services.settings.graphiql_enabled:
                return HTMLResponse(services.graphiql_html, headers=headers)
            return json_response(error_body("GraphiQL is disabled.", "NOT_FOUND"), 404, headers)
        try:
            caller = services.verifier.verify(request.headers.get("authorization"))
        except AuthError as exc:
            return json_response(
                error_body(str(exc), UNAUTHENTICATED),
                401,
                {**headers, "WWW-Authenticate": 'Bearer realm="gateway"'},
            )
        try:
            gql = await parse_request(request, services.settings.max_body_bytes)
        except RequestError as exc:
            return json_response(error_body(exc.message, exc.code), exc.status, headers)
        if not gql.query:
            return json_response(error_body("No query in the request.", BAD_REQUEST), 400, headers)
        context = services.make_context(caller, request_id)
        allowed = (
            {OperationType.QUERY}
            if gql.method == "GET"
            else {OperationType.QUERY, OperationType.MUTATION}
        )
        try:
            result = await services.schema.execute(
                gql.query,
                variable_values=gql.variables,
                context_value=context,
                operation_name=gql.operation_name,
                allowed_operation_types=allowed,
            )
        except InvalidOperationTypeError:
            return json_response(
                error_body("Mutations are only accepted over POST.", BAD_REQUEST),
                405,
                {**headers, "Allow": "POST"},
            )
        except CannotGetOperationTypeError as exc:
            return json_response(error_body(exc.as_http_error_reason(), BAD_REQUEST), 400, headers)
        body: dict[str, Any] = {}
        if result.errors:
            mask = services.settings.is_production
            body["errors"] = [
                format_error(e, mask=mask, request_id=request_id) for e in result.errors
            ]
        body["data"] = result.data
        return json_response(body, 200, headers)
