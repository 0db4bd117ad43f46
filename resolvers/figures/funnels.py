"""Missions: the cohort's mission funnel and each mission's."""

from collections import Counter, defaultdict
from collections.abc import Sequence
from statistics import median
from typing import Any

from resolvers.figures.base import SECONDS_PER_HOUR, rate

REVIEWED = frozenset({"approved", "rejected"})
MICROSECONDS_PER_SECOND = 1_000_000


class _Funnel:
    """Counts and review durations of some submissions, gathered in one pass."""

    __slots__ = ("hours", "started", "statuses")

    def __init__(self) -> None:
        self.started = 0
        self.statuses: Counter[str] = Counter()
        self.hours: list[float] = []

    def add(self, status: str, hours: list[float], submissions: int) -> None:
        self.started += submissions
        self.statuses[status] += submissions
        self.hours.extend(hours)

    def figures(self) -> dict[str, Any]:
        approved, rejected = self.statuses["approved"], self.statuses["rejected"]
        return {
            "started": self.started,
            "submitted": self.statuses["submitted"] + approved + rejected,
            "approved": approved,
            "rejected": rejected,
            "approval_rate": rate(approved, approved + rejected),
            "median_review_hours": median(self.hours) if self.hours else None,
        }


def _review_hours(s: Any) -> list[float]:
    """Hours from submission to review of the reviewed submissions, each as timedelta's
    total_seconds() / 3600 (the same float)."""
    if s.status not in REVIEWED:
        return []
    return [us / MICROSECONDS_PER_SECOND / SECONDS_PER_HOUR for us in s.review_us]


def funnel(submission_counts: Sequence[Any]) -> dict[str, Any]:
    """`submission_counts`: submissions counted by status (`submissions`), with `review_us`
    the microseconds from submitted_at to reviewed_at of each that has both."""
    out = _Funnel()
    for s in submission_counts:
        out.add(s.status, _review_hours(s), s.submissions)
    return out.figures()


def mission_funnel(missions: Sequence[Any], submission_counts: Sequence[Any]) -> dict[str, Any]:
    """`submission_counts`: as for `funnel`, by mission_id too."""
    # One pass: each count is the cohort's and its mission's.
    overall = _Funnel()
    by_mission: dict[int, _Funnel] = defaultdict(_Funnel)
    for s in submission_counts:
        status, hours, submissions = s.status, _review_hours(s), s.submissions
        overall.add(status, hours, submissions)
        by_mission[s.mission_id].add(status, hours, submissions)
    out = overall.figures()
    out["missions"] = [
        {
            "mission_id": m.id,
            "title": m.title,
            "due_date": m.due_date.isoformat(),
            **(by_mission[m.id] if m.id in by_mission else _Funnel()).figures(),
        }
        for m in sorted(missions, key=lambda m: m.id)
    ]
    return out
