"""The alert rules of a running cohort, and their order."""

from collections.abc import Iterable
from typing import Any

from resolvers.figures.base import Thresholds


def alert(
    code: str, severity: str, cohort_id: int, value: float, threshold: float, message: str
) -> dict[str, Any]:
    return {
        "code": code,
        "severity": severity,
        "cohort_id": cohort_id,
        "value": value,
        "threshold": threshold,
        "message": message,
    }


def cohort_alerts(cohort: dict[str, Any], t: Thresholds) -> list[dict[str, Any]]:
    """Alerts of one cohort subtree; only running cohorts raise any."""
    if cohort["status"] != "running":
        return []
    cid = cohort["id"]
    out = []
    utilization = cohort["seats"]["utilization"]
    if utilization is not None and utilization < t.low_seat_utilization:
        out.append(
            alert(
                "LOW_SEAT_UTILIZATION",
                "warning",
                cid,
                utilization,
                t.low_seat_utilization,
                f"Seat utilization {utilization:.0%} is below {t.low_seat_utilization:.0%}.",
            )
        )
    coverage = cohort["mentorship"]["mentor_coverage"]
    if coverage is not None and coverage < t.low_mentor_coverage:
        critical = coverage < t.critical_mentor_coverage
        limit = t.critical_mentor_coverage if critical else t.low_mentor_coverage
        out.append(
            alert(
                "LOW_MENTOR_COVERAGE",
                "critical" if critical else "warning",
                cid,
                coverage,
                limit,
                f"Mentor coverage {coverage:.0%} is below {limit:.0%}.",
            )
        )
    completion = cohort["mentorship"]["session_completion_rate"]
    if completion is not None and completion < t.low_session_completion:
        out.append(
            alert(
                "LOW_SESSION_COMPLETION",
                "warning",
                cid,
                completion,
                t.low_session_completion,
                f"Session completion {completion:.0%} is below {t.low_session_completion:.0%}.",
            )
        )
    average = cohort["readiness"]["average"]
    if average is not None and average < t.low_readiness:
        out.append(
            alert(
                "LOW_READINESS",
                "warning",
                cid,
                average,
                t.low_readiness,
                f"Average readiness {average:.1f} is below {t.low_readiness:g}.",
            )
        )
    overdue = len(cohort["milestones"]["overdue"])
    if overdue >= 1:
        out.append(
            alert(
                "OVERDUE_MILESTONE",
                "warning",
                cid,
                float(overdue),
                1.0,
                f"{overdue} milestone(s) overdue.",
            )
        )
    failed = sum(p["failed_count"] for p in cohort["payments"])
    if failed >= 1:
        ratios = [
            (p["failed_cents"] / p["billed_cents"], p["currency"])
            for p in cohort["payments"]
            if p["billed_cents"]
        ]
        worst, currency = max(ratios) if ratios else (0.0, "")
        critical = worst > t.critical_payment_failure_ratio
        out.append(
            alert(
                "PAYMENT_FAILURES",
                "critical" if critical else "warning",
                cid,
                float(failed),
                1.0,
                f"{failed} failed payment(s); worst {currency} {worst:.0%} of billed."
                if currency
                else f"{failed} failed payment(s).",
            )
        )
    return out


SEVERITY_ORDER = {"critical": 0, "warning": 1}


def sort_alerts(alerts: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Critical first, then warning; within a severity by cohort id, then code."""
    return sorted(alerts, key=lambda a: (SEVERITY_ORDER[a["severity"]], a["cohort_id"], a["code"]))
