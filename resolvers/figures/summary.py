"""The director summary, pooled over cohort subtrees."""

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from resolvers.figures.alerts import sort_alerts
from resolvers.figures.base import rate

# What director_summary reads of a cohort subtree, section by section. A refresh cycle
# pools every director's summary from these alone (summary_inputs): a few hundred bytes a
# cohort instead of its whole subtree.
SUMMARY_INPUTS = {
    "seats": ("total", "used", "available", "paid", "scholarship", "sponsored"),
    "enrollment": ("completed", "enrolled", "withdrawn"),
    "program": ("id", "status"),
    "readiness": ("score_sum", "scored_learners"),
    "mentorship": (
        "covered_learners",
        "active_learners",
        "completed_past_sessions",
        "past_sessions",
    ),
}
SUMMARY_KEEPS = ("id", "status", "alerts", "computed_at", "unavailable", "stale_forced")


def summary_inputs(cohort: dict[str, Any]) -> dict[str, Any]:
    """The part of a cohort subtree a summary is pooled from (director_summary's and its
    caller's reads): director_summary(inputs) == director_summary(subtrees)."""
    out = {key: cohort[key] for key in SUMMARY_KEEPS if key in cohort}
    for section, fields in SUMMARY_INPUTS.items():
        value = cohort.get(section)
        out[section] = None if value is None else {f: value[f] for f in fields}
    return out


def director_summary(cohorts: Sequence[dict[str, Any]], computed_at: str) -> dict[str, Any]:
    """Pooled over cohorts (sums of numerators and denominators), never averaged averages."""
    running = [c for c in cohorts if c["status"] == "running"]
    closed = [c for c in cohorts if c["status"] == "closed"]

    def total(rows: Iterable[dict[str, Any]], section: str, field: str) -> float:
        return sum(c[section][field] for c in rows)

    seat_total = total(running, "seats", "total")
    seat_used = total(running, "seats", "used")
    alerts = sort_alerts(a for c in running for a in c["alerts"])
    by_severity = Counter(a["severity"] for a in alerts)
    by_code = Counter(a["code"] for a in alerts)
    closed_completed = total(closed, "enrollment", "completed")
    closed_base = total(closed, "enrollment", "enrolled") - total(closed, "enrollment", "withdrawn")
    return {
        "computed_at": computed_at,
        "total_cohorts": len(cohorts),
        "active_cohorts": len(running),
        "active_programs": len(
            {c["program"]["id"] for c in running if c["program"]["status"] == "active"}
        ),
        "seats": {
            "total": seat_total,
            "used": seat_used,
            "available": total(running, "seats", "available"),
            "paid": total(running, "seats", "paid"),
            "scholarship": total(running, "seats", "scholarship"),
            "sponsored": total(running, "seats", "sponsored"),
            "utilization": rate(seat_used, seat_total),
        },
        "average_readiness": rate(
            total(running, "readiness", "score_sum"), total(running, "readiness", "scored_learners")
        ),
        "completion_rate": rate(closed_completed, closed_base),
        "mentor_coverage": rate(
            total(running, "mentorship", "covered_learners"),
            total(running, "mentorship", "active_learners"),
        ),
        "session_completion_rate": rate(
            total(running, "mentorship", "completed_past_sessions"),
            total(running, "mentorship", "past_sessions"),
        ),
        "alert_counts": {"critical": by_severity["critical"], "warning": by_severity["warning"]},
        "alerts_by_code": [{"code": code, "count": by_code[code]} for code in sorted(by_code)],
        "alerts": alerts,
    }
