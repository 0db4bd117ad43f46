"""List rows and the list index: every order and filter gives what sorting and
filtering the whole subtrees gives (resolvers/director.py's reference path)."""

import itertools
from typing import Any

import pytest

from resolvers import rows
from resolvers.cohort import CohortMode, CohortStatus
from resolvers.director import CohortFilter, CohortOrderField, _matches, order_key


def cohort(
    id: int, name: str, start: str, utilization: float | None, readiness: float | None
) -> dict[str, Any]:
    return {
        "id": id,
        "name": name,
        "mode": "online" if id % 2 else "onsite",
        "status": ("running", "planned", "closed")[id % 3],
        "program": {"id": 10 + id % 2},
        "track": {"id": 20 + id % 3},
        "start_date": start,
        "seats": {"utilization": utilization},
        "readiness": {"average": readiness},
    }


# Ties on every field, nulls in the two that may be null, ids out of order.
COHORTS = [
    cohort(7, "Beta", "2026-01-05", 0.5, None),
    cohort(3, "alpha", "2026-01-05", None, 61.0),
    cohort(12, "Gamma", "2025-12-01", 0.5, 61.0),
    cohort(1, "beta", "2026-02-01", 0.25, None),
    cohort(5, "Alpha", "2025-12-01", None, 70.5),
    cohort(9, "delta", "2026-02-01", 1.0, 12.0),
]
INDEX = rows.Index(rows.build_index([rows.list_row(c) for c in COHORTS], "t"))  # type: ignore[misc]


def test_a_row_holds_the_sort_and_filter_fields() -> None:
    assert rows.list_row(COHORTS[0]) == [
        7, "Beta", "online", "planned", 11, 21, "2026-01-05", 0.5, None,
    ]  # fmt: skip
    assert rows.list_row({**COHORTS[0], "unavailable": {"payments": "billing"}}) is None
    assert rows.list_row({"row": [1], "seats": None}) == [1]  # a cycle's summary inputs


@pytest.mark.parametrize(
    ("field", "descending"), list(itertools.product(CohortOrderField, [False, True]))
)
def test_every_order_is_the_order_of_the_whole_subtrees(
    field: CohortOrderField, descending: bool
) -> None:
    key = order_key(field, descending)
    expected = [c["id"] for c in sorted(COHORTS, key=key, reverse=descending)]
    ordered = INDEX.ordered(field.value, descending)
    assert [INDEX.ids[i] for i in ordered] == expected
    by_subtree = {c["id"]: key(c) for c in COHORTS}
    row_key = INDEX.sort_key(field.value, descending)
    assert [row_key(i) for i in ordered] == [by_subtree[i] for i in expected]  # cursors


def test_nulls_come_last_in_both_directions_by_id() -> None:
    asc = [INDEX.ids[i] for i in INDEX.ordered("readiness", False)]
    desc = [INDEX.ids[i] for i in INDEX.ordered("readiness", True)]
    assert asc == [9, 3, 12, 5, 1, 7]
    assert desc == [5, 12, 3, 9, 7, 1]


FILTERS = [
    CohortFilter(),
    CohortFilter(status=[CohortStatus.RUNNING]),
    CohortFilter(status=[]),
    CohortFilter(mode=[CohortMode.ONLINE, CohortMode.HYBRID]),
    CohortFilter(program_id=11),
    CohortFilter(track_id=20),
    CohortFilter(search="ALP"),
    CohortFilter(search=""),
    CohortFilter(status=[CohortStatus.PLANNED, CohortStatus.CLOSED], search="a", track_id=22),
]


@pytest.mark.parametrize("where", FILTERS)
def test_every_filter_keeps_what_the_whole_subtrees_keep(where: CohortFilter) -> None:
    ordered = INDEX.ordered("start_date", False)
    kept = INDEX.matching(
        ordered, where.status, where.mode, where.program_id, where.track_id, where.search
    )
    by_id = {c["id"]: c for c in COHORTS}
    assert [INDEX.ids[i] for i in kept] == [
        INDEX.ids[i] for i in ordered if _matches(by_id[INDEX.ids[i]], where)
    ]


def test_an_empty_scope_has_an_empty_index() -> None:
    empty = rows.Index(rows.build_index([], "t"))
    assert (empty.ids, empty.ordered("name", True)) == ([], [])
