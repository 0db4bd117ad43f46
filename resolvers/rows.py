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

    def key(row: Sequence[Any]) -> list[Any]:
        value = row[position]
        present = value is not None
        flag = (1 if present else 0) if descending else (0 if present else 1)
        return [flag, value if present else empty, row[ID]]

    return key


def build_index(rows: list[list[Any]], computed_at: str) -> dict[str, Any]:
    """The list index of a scope from its rows (any order): the rows by id, stored as
    columns (a few lists to decode rather than one per cohort); per sort field the
    ascending order as positions, with how many are not null (they come first)."""
    rows = sorted(rows, key=lambda r: r[ID])
    columns = [list(column) for column in zip(*rows, strict=True)] if rows else [[]] * 9
    orders: dict[str, list[int]] = {}
    present: dict[str, int] = {}
    for field, position in SORT_POSITIONS.items():
        key = sort_key(field, descending=False)
        keys = [key(r) for r in rows]
        orders[field] = sorted(range(len(rows)), key=keys.__getitem__)
        present[field] = sum(1 for r in rows if r[position] is not None)
    return {"columns": columns, "orders": orders, "present": present, "computed_at": computed_at}


class Index:
    """A decoded list index: rows are positions into its columns."""

    def __init__(self, entry: dict[str, Any]) -> None:
        self.columns: list[list[Any]] = entry["columns"]
        self.orders: dict[str, list[int]] = entry["orders"]
        self.present: dict[str, int] = entry["present"]

    @property
    def ids(self) -> list[int]:
        return self.columns[ID]

    def row(self, i: int) -> list[Any]:
        return [column[i] for column in self.columns]

    def ordered(self, field: str, descending: bool) -> list[int]:
        """Rows in a sort order. Descending is ascending reversed, the nulls apart: they
        stay last, by id descending, as a descending sort of the keys gives."""
        order = self.orders[field]
        if not descending:
            return order
        cut = self.present[field]
        return order[:cut][::-1] + order[cut:][::-1]

    def sort_key(self, field: str, descending: bool):  # type: ignore[no-untyped-def]
        """sort_key of the row at a position."""
        values, ids = self.columns[SORT_POSITIONS[field]], self.columns[ID]
        empty: Any = "" if field in _TEXT_FIELDS else 0.0

        def key(i: int) -> list[Any]:
            value = values[i]
            present = value is not None
            flag = (1 if present else 0) if descending else (0 if present else 1)
            return [flag, value if present else empty, ids[i]]

        return key

    def matching(
        self,
        rows: list[int],
        status: Sequence[Enum] | None,
        mode: Sequence[Enum] | None,
        program_id: int | None,
        track_id: int | None,
        search: str | None,
    ) -> list[int]:
        """The rows where every given condition of CohortFilter holds, in their order."""
        columns = self.columns
        if status is not None:
            statuses, column = {s.value for s in status}, columns[STATUS]
            rows = [i for i in rows if column[i] in statuses]
        if mode is not None:
            modes, column = {m.value for m in mode}, columns[MODE]
            rows = [i for i in rows if column[i] in modes]
        if program_id is not None:
            column = columns[PROGRAM_ID]
            rows = [i for i in rows if column[i] == program_id]
        if track_id is not None:
            column = columns[TRACK_ID]
            rows = [i for i in rows if column[i] == track_id]
        if search:
            needle, column = search.casefold(), columns[NAME]
            rows = [i for i in rows if needle in column[i].casefold()]
        return rows
