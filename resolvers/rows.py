"""List rows: what a cohort list sorts and filters on, a few dozen bytes a cohort.

A scope's list index (written beside its summary by every refresh that writes the scope,
gateway/refresh/service.py) holds one row per cohort of the scope, in id order, and each
sort field's ascending order: a page is cut from it and only the page's subtrees are read
(resolvers/director.py). Row and key are those of the subtree itself (`list_row`), so an
index agrees with the subtrees it was built from, and a page cut from it is the page the
whole subtrees would give.
"""

from collections.abc import Sequence
from enum import Enum
from typing import Any

# Row layout.
ID, NAME, MODE, STATUS, PROGRAM_ID, TRACK_ID, START_DATE, SEAT_UTILIZATION, READINESS = range(9)
# Sort field (CohortOrderField's value) → row position.
SORT_POSITIONS = {
    "start_date": START_DATE,
    "name": NAME,
    "seat_utilization": SEAT_UTILIZATION,
    "readiness": READINESS,
}
# Fields whose null stand-in sorts as text.
_TEXT_FIELDS = frozenset({"start_date", "name"})


def list_row(cohort: dict[str, Any]) -> list[Any] | None:
    """A subtree's row (or the one a refresh cycle carries in its summary inputs); None
    when a module was unavailable for it: no index then."""
    if "row" in cohort:
        return cohort["row"]  # type: ignore[no-any-return]
    if cohort.get("unavailable"):
        return None  # not stored: the cached subtree is another one
    seats, readiness = cohort.get("seats"), cohort.get("readiness")
    if seats is None or readiness is None:
        return None
    return [
        cohort["id"],
        cohort["name"],
        cohort["mode"],
        cohort["status"],
        cohort["program"]["id"],
        cohort["track"]["id"],
        cohort["start_date"],
        seats["utilization"],
        readiness["average"],
    ]


def sort_key(field: str, descending: bool):  # type: ignore[no-untyped-def]
    """[present, value, id] of a row: nulls sort last in both directions; ties by id."""
    position = SORT_POSITIONS[field]
    empty: Any = "" if field in _TEXT_FIELDS else 0.0

    def key(row: list[Any]) -> list[Any]:
        value = row[position]
        present = value is not None
        flag = (1 if present else 0) if descending else (0 if present else 1)
        return [flag, value if present else empty, row[ID]]

    return key


def build_index(rows: list[list[Any]], computed_at: str) -> dict[str, Any]:
    """The list index of a scope from its rows (any order): rows by id, and per sort
    field the ascending order as positions into them, with how many are not null (they
    come first)."""
    rows = sorted(rows, key=lambda r: r[ID])
    orders: dict[str, list[int]] = {}
    present: dict[str, int] = {}
    for field, position in SORT_POSITIONS.items():
        keys = [sort_key(field, descending=False)(r) for r in rows]
        orders[field] = sorted(range(len(rows)), key=keys.__getitem__)
        present[field] = sum(1 for r in rows if r[position] is not None)
    return {"rows": rows, "orders": orders, "present": present, "computed_at": computed_at}


def ordered(index: dict[str, Any], field: str, descending: bool) -> list[list[Any]]:
    """The index's rows in a sort order. Descending is ascending reversed, the nulls
    apart: they stay last, by id descending, as a descending sort of the keys gives."""
    rows, order = index["rows"], index["orders"][field]
    if not descending:
        return [rows[i] for i in order]
    cut = index["present"][field]
    return [rows[i] for i in order[:cut][::-1]] + [rows[i] for i in order[cut:][::-1]]


def row_filter(
    status: Sequence[Enum] | None,
    mode: Sequence[Enum] | None,
    program_id: int | None,
    track_id: int | None,
    search: str | None,
):  # type: ignore[no-untyped-def]
    """A row predicate with CohortFilter's meaning (all given conditions hold); None
    when nothing is filtered."""
    tests: list[Any] = []
    if status is not None:
        statuses = {s.value for s in status}
        tests.append(lambda r: r[STATUS] in statuses)
    if mode is not None:
        modes = {m.value for m in mode}
        tests.append(lambda r: r[MODE] in modes)
    if program_id is not None:
        tests.append(lambda r: r[PROGRAM_ID] == program_id)
    if track_id is not None:
        tests.append(lambda r: r[TRACK_ID] == track_id)
    if search:
        needle = search.casefold()
        tests.append(lambda r: needle in r[NAME].casefold())
    if not tests:
        return None
    return lambda r: all(test(r) for test in tests)
