"""GraphQL errors with a stable `extensions.code`."""

from graphql import GraphQLError

NOT_FOUND = "NOT_FOUND"
BAD_USER_INPUT = "BAD_USER_INPUT"
FORBIDDEN = "FORBIDDEN"
UNAUTHENTICATED = "UNAUTHENTICATED"
UPSTREAM_UNAVAILABLE = "UPSTREAM_UNAVAILABLE"
RATE_LIMITED = "RATE_LIMITED"
# Answers, not faults: not logged as errors.
EXPECTED_CODES = frozenset(
    {NOT_FOUND, BAD_USER_INPUT, FORBIDDEN, UNAUTHENTICATED, UPSTREAM_UNAVAILABLE, RATE_LIMITED}
)


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
