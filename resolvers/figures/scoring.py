"""TalentScope: readiness and the competency heatmap."""

from collections.abc import Sequence
from typing import Any

from resolvers.figures.base import mean
from resolvers.figures.seating import seated_learners

COMPETENCY_LEVELS = range(6)
# [0,20) [20,40) [40,60) [60,80) [80,100]: 100 falls in the last bucket.
READINESS_BUCKETS = ((0.0, 20.0), (20.0, 40.0), (40.0, 60.0), (60.0, 80.0), (80.0, 100.0))


def readiness(
    enrollments: Sequence[Any],
    latest_scores: Sequence[Any],
    ready_score: float,
    seated: set[int] | None = None,
) -> dict[str, Any]:
    """`seated`: seated_learners(enrollments), when the caller has it already."""
    seated = seated_learners(enrollments) if seated is None else seated
    scores = [r.score for r in latest_scores if r.learner_id in seated]
    last = len(READINESS_BUCKETS) - 1
    counts = [0] * len(READINESS_BUCKETS)
    ready = 0
    for score in scores:
        counts[min(int(score // 20), last)] += 1
        if score >= ready_score:
            ready += 1
    return {
        "average": mean(scores),
        "scored_learners": len(scores),
        "score_sum": sum(scores),
        "ready": ready,
        "distribution": [
            {"lower": lower, "upper": upper, "count": count}
            for (lower, upper), count in zip(READINESS_BUCKETS, counts, strict=True)
        ],
    }


def competency_heatmap(
    enrollments: Sequence[Any], level_learners: Sequence[Any], seated: set[int] | None = None
) -> list[dict[str, Any]]:
    """`level_learners`: per (competency, level), the learners whose latest assessment of
    that competency is at that level (rows with learner_ids). `seated`: as for readiness."""
    seated = seated_learners(enrollments) if seated is None else seated
    # competency → [learners, sum of their levels, learners per level 0..5]
    found: dict[str, list[Any]] = {}
    for row in level_learners:
        learners = sum(1 for learner in row.learner_ids if learner in seated)
        if not learners:
            continue
        acc = found.setdefault(row.competency, [0, 0, [0] * len(COMPETENCY_LEVELS)])
        acc[0] += learners
        acc[1] += row.level * learners
        if row.level in COMPETENCY_LEVELS:
            acc[2][row.level] += learners
    return [
        {
            "competency": competency,
            "learners": learners,
            "levels": counts,
            "average_level": level_sum / learners,
        }
        for competency, (learners, level_sum, counts) in sorted(found.items())
    ]
