"""The figures of docs/metrics.md as pure functions of loader rows and a clock.

Inputs are rows (anything with the column attributes); outputs are JSON-native dicts
(ints, floats, strings, lists) keyed by the Python field names of the schema types,
so a subtree can be cached as bytes and served by the schema unchanged. One module per
family of figures; this package exports them all.
"""

from resolvers.figures.alerts import SEVERITY_ORDER, alert, cohort_alerts, sort_alerts
from resolvers.figures.base import SECONDS_PER_HOUR, Thresholds, iso_instant, mean, rate
from resolvers.figures.billing import CENTS_BY_STATUS, payments
from resolvers.figures.funnels import MICROSECONDS_PER_SECOND, REVIEWED, funnel, mission_funnel
from resolvers.figures.mentoring import mentorship
from resolvers.figures.publishing import PORTFOLIO_STATUSES, portfolio
from resolvers.figures.schedule import milestones
from resolvers.figures.scoring import (
    COMPETENCY_LEVELS,
    READINESS_BUCKETS,
    competency_heatmap,
    readiness,
)
from resolvers.figures.seating import (
    ENROLLMENT_STATUSES,
    SEAT_TYPES,
    SEATED_STATUSES,
    active_learners,
    enrollment,
    seated_learners,
    seats,
)
from resolvers.figures.summary import (
    SUMMARY_INPUTS,
    SUMMARY_KEEPS,
    director_summary,
    summary_inputs,
)

__all__ = [
    "CENTS_BY_STATUS",
    "COMPETENCY_LEVELS",
    "ENROLLMENT_STATUSES",
    "MICROSECONDS_PER_SECOND",
    "PORTFOLIO_STATUSES",
    "READINESS_BUCKETS",
    "REVIEWED",
    "SEATED_STATUSES",
    "SEAT_TYPES",
    "SECONDS_PER_HOUR",
    "SEVERITY_ORDER",
    "SUMMARY_INPUTS",
    "SUMMARY_KEEPS",
    "Thresholds",
    "active_learners",
    "alert",
    "cohort_alerts",
    "competency_heatmap",
    "director_summary",
    "enrollment",
    "funnel",
    "iso_instant",
    "mean",
    "milestones",
    "mentorship",
    "mission_funnel",
    "payments",
    "portfolio",
    "rate",
    "readiness",
    "seated_learners",
    "seats",
    "sort_alerts",
    "summary_inputs",
]
