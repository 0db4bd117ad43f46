"""Documents of known pathological shapes, each within the default body and token limits
(or just past one), and the answer each must get under the default settings.

Used by tests/documents/test_limits.py (each gets its stable code) and by the reliability suite
(tests/reliability/test_documents.py: the CPU time each costs to accept or refuse).
"""

from dataclasses import dataclass, field
from typing import Any

from graphql import get_introspection_query

from gateway.documents.dashboard import dashboard_operations

SUMMARY_LEAVES = (
    "totalCohorts activeCohorts activePrograms averageReadiness completionRate "
    "mentorCoverage sessionCompletionRate computedAt stale"
)
SEATS = "seats { total used available paid scholarship sponsored utilization }"


@dataclass(frozen=True)
class Case:
    name: str
    query: str
    status: int  # HTTP status under the default settings
    code: str | None  # the first error's code; None: answered without errors
    variables: dict[str, Any] = field(default_factory=dict)
    operation_name: str | None = None
    admin: bool = False  # asked with the admin's token (else a director's)
    # Refused before graphql-core's validation runs (a bound measured in linear time).
    before_validation: bool = False


def fan_out(n: int, leaf: str = "id", used: bool = True) -> str:
    """`fragment Fi on Director { ...F(i-1) ...F(i-1) }`: 2^n leaves in about 40·n bytes."""
    fragments = [f"fragment F0 on Director {{ {leaf} }}"] + [
        f"fragment F{i} on Director {{ ...F{i - 1} ...F{i - 1} }}" for i in range(1, n + 1)
    ]
    operation = f"{{ me {{ ...F{n} }} }}" if used else "{ me { id } }"
    return " ".join([operation, *fragments])


def repeated(n: int, selection: str = "summary { totalCohorts }") -> str:
    return "{ me { " + " ".join([selection] * n) + " } }"


def nested(levels: int, opening: str = "me { ", closing: str = " }") -> str:
    return "{ " + opening * levels + "id" + closing * levels + " }"


def cycle_fan_out(n: int) -> str:
    fragments = [f"fragment F0 on Director {{ id ...F{n} }}"] + [
        f"fragment F{i} on Director {{ ...F{i - 1} ...F{i - 1} }}" for i in range(1, n + 1)
    ]
    return " ".join([f"{{ me {{ ...F{n} }} }}", *fragments])


def nested_repeats(r: int) -> str:
    """r repeats at each of four levels of the cohort list, by fragments."""

    def times(text: str) -> str:
        return " ".join([text] * r)

    return (
        f"{{ me {{ {times('cohorts { ...C }')} }} }} "
        f"fragment C on CohortConnection {{ {times('edges { ...E }')} }} "
        f"fragment E on CohortEdge {{ {times('node { ...N }')} }} "
        f"fragment N on Cohort {{ {times(SEATS)} }}"
    )


def spread_pairs(n: int) -> str:
    """n distinct fragments spread together, each selecting the same composite field."""
    fragments = " ".join(
        f"fragment G{i} on Director {{ summary {{ totalCohorts {SEATS} }} }}" for i in range(n)
    )
    return "{ me { " + " ".join(f"...G{i}" for i in range(n)) + " } } " + fragments


def operations(n: int) -> str:
    return " ".join(f"query Q{i} {{ me {{ id }} }}" for i in range(n))


def search(length: int) -> str:
    return '{ me { cohorts(filter: {search: "' + "x" * length + '"}) { totalCount } } }'


def aliases(n: int) -> str:
    return "{ me { " + " ".join(f"a{i}: id" for i in range(n)) + " } }"


def variables(n: int) -> str:
    return "query Q(" + " ".join(f"$v{i}: Int" for i in range(n)) + ") { me { id } }"


def directives(n: int) -> str:
    return "{ me { id " + " ".join(["@include(if: true)"] * n) + " } }"


def nested_list(levels: int) -> str:
    return (
        "{ me { cohorts(filter: {status: "
        + "[" * levels
        + "RUNNING"
        + "]" * levels
        + "}) { totalCount } } }"
    )


def nested_object(levels: int) -> str:
    return "{ me { cohorts(first: " + "{a: " * levels + "1" + "}" * levels + ") { totalCount } } }"


def dense_summary(repeats: int) -> str:
    """Valid and wide: the summary's leaves repeated, and its seats five times."""
    inner = " ".join([SUMMARY_LEAVES] * repeats + [SEATS] * 5)
    return "{ me { " + " ".join(["summary { " + inner + " }"] * 5) + " } }"


def dense_operations(n: int, repeats: int) -> str:
    """n operations of valid fields, as many as the token bound allows: the most a valid
    document makes validation visit."""
    inner = " ".join([SUMMARY_LEAVES] * repeats + [SEATS] * 5)
    return " ".join(
        f"query Q{i} {{ me {{ id name email summary {{ {inner} }} }} }}" for i in range(n)
    )


DETAIL = dashboard_operations()["CohortDetail"].body

CASES: list[Case] = [
    # Fragment fan-out: refused while measuring, before validation.
    Case("fragment fan-out n=20", fan_out(20), 400, "TOO_MANY_FIELDS", before_validation=True),
    Case("fragment fan-out n=24", fan_out(24), 400, "TOO_MANY_FIELDS", before_validation=True),
    Case(
        "fragment fan-out n=24 of __typename",
        fan_out(24, "__typename"),
        400,
        "TOO_MANY_FIELDS",
        before_validation=True,
    ),
    Case(
        "fragment fan-out n=24, unused",
        fan_out(24, used=False),
        400,
        "TOO_MANY_FIELDS",
        before_validation=True,
    ),
    Case("fragment fan-out n=6 (64 ids)", fan_out(6), 200, None),
    Case(
        "fragment cycle",
        "{ me { ...A } } fragment A on Director { id ...A }",
        200,
        "GRAPHQL_VALIDATION_FAILED",
    ),
    Case("fragment cycle with fan-out n=24", cycle_fan_out(24), 200, "GRAPHQL_VALIDATION_FAILED"),
    Case("unknown fragment", "{ me { ...Nope } }", 200, "GRAPHQL_VALIDATION_FAILED"),
    Case(
        "400 unknown fragments",
        "{ me { " + " ".join(f"...U{i}" for i in range(400)) + " } }",
        400,
        "TOO_MANY_TOKENS",
        before_validation=True,
    ),
    Case(
        "150 unknown fragments",
        "{ me { " + " ".join(f"...U{i}" for i in range(150)) + " } }",
        200,
        "GRAPHQL_VALIDATION_FAILED",
    ),
    # Repeated fields: what graphql-core's overlapping-fields rule compares pairwise.
    Case(
        "summary repeated 495 times", repeated(495), 400, "TOO_MANY_TOKENS", before_validation=True
    ),
    Case(
        "summary repeated 195 times", repeated(195), 400, "TOO_MANY_FIELDS", before_validation=True
    ),
    Case("summary repeated 6 times", repeated(6), 400, "TOO_MANY_FIELDS", before_validation=True),
    Case("summary repeated 5 times", repeated(5), 200, None),
    Case("id repeated 100 times", repeated(100, "id"), 200, None),
    Case(
        "id repeated 101 times", repeated(101, "id"), 400, "TOO_MANY_FIELDS", before_validation=True
    ),
    Case(
        "4 levels of 3 repeats by fragments",
        nested_repeats(3),
        400,
        "TOO_MANY_FIELDS",
        before_validation=True,
    ),
    Case("4 levels of 2 repeats by fragments", nested_repeats(2), 200, None),
    Case(
        "20 fragments with the same composite field",
        spread_pairs(20),
        400,
        "TOO_MANY_FIELDS",
        before_validation=True,
    ),
    Case("5 fragments with the same composite field", spread_pairs(5), 200, None),
    Case("5 summaries of 20 leaves and 5 seats", dense_summary(2), 200, None),
    Case(
        "8 operations of 71 fields (720 tokens)",
        dense_operations(8, 3),
        200,
        None,
        operation_name="Q0",
    ),
    # Aliases.
    Case("15 aliases", aliases(15), 200, None),
    Case("16 aliases", aliases(16), 400, "TOO_MANY_ALIASES", before_validation=True),
    Case("60 aliases", aliases(60), 400, "TOO_MANY_ALIASES", before_validation=True),
    Case(
        "150 aliases in one selection set",
        aliases(150),
        400,
        "TOO_MANY_FIELDS",
        before_validation=True,
    ),
    # Nesting.
    Case("150 levels of unknown fields", nested(150), 200, "GRAPHQL_VALIDATION_FAILED"),
    Case(
        "260 levels of unknown fields", nested(260), 400, "QUERY_TOO_DEEP", before_validation=True
    ),
    Case(
        "150 nested inline fragments",
        "{ me { " + "... on Director { " * 150 + "id" + " }" * 150 + " } }",
        200,
        None,
    ),
    # Operations.
    Case("10 operations", operations(10), 200, None, operation_name="Q9"),
    Case(
        "11 operations",
        operations(11),
        400,
        "TOO_MANY_OPERATIONS",
        operation_name="Q0",
        before_validation=True,
    ),
    Case(
        "100 operations",
        operations(100),
        400,
        "TOO_MANY_OPERATIONS",
        operation_name="Q0",
        before_validation=True,
    ),
    # Long strings, names and comments.
    Case("a 32,000-character string", search(32_000), 200, None),
    Case(
        "a 40,000-character string", search(40_000), 400, "QUERY_TOO_LONG", before_validation=True
    ),
    Case(
        "a 200,000-character string", search(200_000), 400, "QUERY_TOO_LONG", before_validation=True
    ),
    Case("a 32,000-character comment", "#" + "x" * 32_000 + "\n{ me { id } }", 200, None),
    Case(
        "a 32,000-character block string",
        '{ me { cohorts(filter: {search: """' + "x" * 32_000 + '"""}) { totalCount } } }',
        200,
        None,
    ),
    Case(
        "a 32,000-character field name",
        "{ me { " + "f" * 32_000 + " } }",
        200,
        "GRAPHQL_VALIDATION_FAILED",
    ),
    # Variables, directives, arguments.
    Case("190 unused variables", variables(190), 200, "GRAPHQL_VALIDATION_FAILED"),
    Case("100 repeated directives", directives(100), 200, "GRAPHQL_VALIDATION_FAILED"),
    Case("150 nested lists in an argument", nested_list(150), 200, "BAD_USER_INPUT"),
    Case("150 nested objects in an argument", nested_object(150), 200, "BAD_USER_INPUT"),
    Case(
        "a list of 700 enum values",
        "{ me { cohorts(filter: {status: [" + " ".join(["RUNNING"] * 700) + "]}) "
        "{ totalCount } } }",
        200,
        None,
    ),
    Case(
        "250 repeated arguments",
        "{ me { cohorts(" + " ".join(["first: 1"] * 250) + ") { totalCount } } }",
        200,
        "GRAPHQL_VALIDATION_FAILED",
    ),
    Case(
        "first beyond Int",
        "{ me { cohorts(first: 99999999999) { totalCount } } }",
        200,
        "BAD_USER_INPUT",
    ),
    # Cost.
    Case(
        "100 directors × 100 cohorts",
        "{ directors(first: 100) { nodes { cohorts(first: 100) "
        "{ edges { node { id name status } } } } } }",
        400,
        "QUERY_TOO_COSTLY",
        admin=True,
    ),
    # What legitimate clients send.
    Case("GraphiQL's introspection query", get_introspection_query(), 200, None),
    Case("the cohort detail page", DETAIL, 200, "NOT_FOUND", variables={"id": 999}),
]
