"""Mentorship: coverage, sessions, and each mentor's figures."""

from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

from resolvers.figures.base import rate
from resolvers.figures.seating import active_learners


def mentorship(
    enrollments: Sequence[Any],
    active_assignments: Sequence[Any],
    session_counts: Sequence[Any],
    mentors_by_id: dict[int, Any],
) -> dict[str, Any]:
    """`session_counts`: the cohort's sessions counted by (mentor_id, status, past), past
    meaning scheduled at or before now (rows with `sessions`, the count)."""
    active = active_learners(enrollments)
    learners_by_mentor: dict[int, set[int]] = defaultdict(set)
    for a in active_assignments:
        learners_by_mentor[a.mentor_id].add(a.learner_id)
    assigned = set().union(*learners_by_mentor.values()) if learners_by_mentor else set()
    covered = len(active & assigned)
    mentor_count = len(learners_by_mentor)

    past = completed_past = upcoming = 0
    by_mentor_status: Counter[tuple[int, str]] = Counter()
    for s in session_counts:
        status, sessions = s.status, s.sessions
        if s.past:
            if status != "cancelled":
                past += sessions
                if status == "completed":
                    completed_past += sessions
        elif status == "scheduled":
            upcoming += sessions
        if status == "completed" or status == "no_show":
            by_mentor_status[(s.mentor_id, status)] += sessions

    mentors = []
    for mentor_id in sorted(learners_by_mentor):
        mentor = mentors_by_id.get(mentor_id)
        mentors.append(
            {
                "id": mentor_id,
                "name": mentor.name if mentor is not None else None,
                "max_learners": mentor.max_learners if mentor is not None else None,
                "active_learners": len(learners_by_mentor[mentor_id]),
                "completed_sessions": by_mentor_status[(mentor_id, "completed")],
                "no_show_sessions": by_mentor_status[(mentor_id, "no_show")],
            }
        )
    return {
        "mentor_count": mentor_count,
        "active_learners": len(active),
        "covered_learners": covered,
        "mentor_coverage": rate(covered, len(active)),
        "learners_per_mentor": rate(len(active), mentor_count),
        "past_sessions": past,
        "completed_past_sessions": completed_past,
        "session_completion_rate": rate(completed_past, past),
        "upcoming_sessions": upcoming,
        "mentors": mentors,
    }
