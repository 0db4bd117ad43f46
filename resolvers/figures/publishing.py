"""Portfolio health."""

from collections import Counter
from collections.abc import Sequence
from typing import Any

from resolvers.figures.base import mean, rate
from resolvers.figures.seating import seated_learners

PORTFOLIO_STATUSES = ("draft", "submitted", "published")


def portfolio(
    enrollments: Sequence[Any], item_rows: Sequence[Any], seated: set[int] | None = None
) -> dict[str, Any]:
    """`item_rows`: the cohort's items, `items` each (a published item one by one, with its
    learner and quality score; the others may come counted by status). `seated`: as for
    readiness."""
    seated = seated_learners(enrollments) if seated is None else seated
    by_status: Counter[str] = Counter()
    publishers: set[int] = set()
    qualities: list[float] = []
    for i in item_rows:
        status = i.status
        by_status[status] += i.items
        if status == "published":
            publishers.add(i.learner_id)
            if i.quality_score is not None:
                qualities.append(i.quality_score)
    with_published = len(publishers & seated)
    out: dict[str, Any] = {status: by_status[status] for status in PORTFOLIO_STATUSES}
    out.update(
        learners_with_published=with_published,
        published_rate=rate(with_published, len(seated)),
        average_quality=mean(qualities),
    )
    return out
