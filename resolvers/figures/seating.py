"""Learner sets of a cohort, its seats and its enrollment breakdown."""

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from resolvers.figures.base import rate

ENROLLMENT_STATUSES = ("active", "completed", "withdrawn", "deferred")
SEAT_TYPES = ("paid", "scholarship", "sponsored")
SEATED_STATUSES = frozenset({"active", "completed"})


def seated_learners(enrollments: Iterable[Any]) -> set[int]:
    return {e.learner_id for e in enrollments if e.status in SEATED_STATUSES}


def active_learners(enrollments: Iterable[Any]) -> set[int]:
    return {e.learner_id for e in enrollments if e.status == "active"}


def seats(seat_capacity: int, enrollments: Sequence[Any]) -> dict[str, Any]:
    by_type: Counter[str] = Counter()
    for e in enrollments:
        if e.status in SEATED_STATUSES:
            by_type[e.seat_type] += 1
    used = by_type.total()
    return {
        "total": seat_capacity,
        "used": used,
        "available": max(seat_capacity - used, 0),
        "paid": by_type["paid"],
        "scholarship": by_type["scholarship"],
        "sponsored": by_type["sponsored"],
        "utilization": rate(used, seat_capacity),
    }


def enrollment(enrollments: Sequence[Any]) -> dict[str, Any]:
    by_status: Counter[str] = Counter()
    by_type: Counter[str] = Counter()
    for e in enrollments:
        by_status[e.status] += 1
        by_type[e.seat_type] += 1
    enrolled = len(enrollments)
    out: dict[str, Any] = {"enrolled": enrolled}
    out.update({status: by_status[status] for status in ENROLLMENT_STATUSES})
    out["by_seat_type"] = {seat_type: by_type[seat_type] for seat_type in SEAT_TYPES}
    out["completion_rate"] = rate(by_status["completed"], enrolled - by_status["withdrawn"])
    return out
