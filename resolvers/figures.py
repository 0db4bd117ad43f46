"""The figures of spec/METRICS.md as pure functions of loader rows and a clock.

Inputs are rows (anything with the column attributes); outputs are JSON-native dicts
(ints, floats, strings, lists) keyed by the Python field names of the schema types,
so a subtree can be cached as bytes and served by the schema unchanged.
Where METRICS.md is silent, the choice is documented in docs/metrics-notes.md.
"""

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from statistics import median
from typing import Any

ENROLLMENT_STATUSES = ("active", "completed", "withdrawn", "deferred")
SEAT_TYPES = ("paid", "scholarship", "sponsored")
SEATED_STATUSES = frozenset({"active", "completed"})
PORTFOLIO_STATUSES = ("draft", "submitted", "published")
COMPETENCY_LEVELS = range(6)
# [0,20) [20,40) [40,60) [60,80) [80,100]: 100 falls in the last bucket.
READINESS_BUCKETS = ((0.0, 20.0), (20.0, 40.0), (40.0, 60.0), (60.0, 80.0), (80.0, 100.0))
SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True)
class Thresholds:
    """Alert thresholds and fixed limits (settings; defaults are METRICS.md's)."""

    low_seat_utilization: float = 0.60
    low_mentor_coverage: float = 0.80
    critical_mentor_coverage: float = 0.50
    low_session_completion: float = 0.70
    low_readiness: float = 60.0
    critical_payment_failure_ratio: float = 0.10
    ready_score: float = 70.0
    milestone_horizon_days: int = 30


def rate(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def iso_instant(value: datetime) -> str:
    """ISO-8601 UTC with microseconds and a Z suffix; naive values are taken as UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --- learner sets and seats -----------------------------------------------------------


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


# --- mentorship -----------------------------------------------------------------------


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


# --- talentscope ----------------------------------------------------------------------


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


# --- missions -------------------------------------------------------------------------


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


# --- portfolio ------------------------------------------------------------------------


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


# --- billing --------------------------------------------------------------------------


CENTS_BY_STATUS = {status: f"{status}_cents" for status in ("paid", "pending", "failed")}


def payments(payment_totals: Sequence[Any], refund_totals: Sequence[Any]) -> list[dict[str, Any]]:
    """`payment_totals`: payments summed by (currency, status, past_due), past_due meaning
    due before today (rows with amount_cents, the sum, and payments, the count);
    `refund_totals`: refunds summed by the payment's currency (amount_cents, refunds)."""

    def empty() -> dict[str, Any]:
        return dict.fromkeys(
            (
                "billed_cents",
                "paid_cents",
                "pending_cents",
                "failed_cents",
                "refunded_cents",
                "overdue_cents",
                "refund_count",
                "failed_count",
            ),
            0,
        )

    by_currency: dict[str, dict[str, Any]] = defaultdict(empty)
    for p in payment_totals:
        acc = by_currency[p.currency]
        amount, status = p.amount_cents, p.status
        acc["billed_cents"] += amount
        if status in CENTS_BY_STATUS:
            acc[CENTS_BY_STATUS[status]] += amount
            if status == "failed":
                acc["failed_count"] += p.payments
            elif status == "pending" and p.past_due:
                acc["overdue_cents"] += amount
    for r in refund_totals:
        acc = by_currency[r.currency]
        acc["refunded_cents"] += r.amount_cents
        acc["refund_count"] += r.refunds
    return [
        {
            "currency": currency,
            **acc,
            "collection_rate": rate(acc["paid_cents"], acc["billed_cents"]),
        }
        for currency, acc in sorted(by_currency.items())
    ]


# --- milestones -----------------------------------------------------------------------


def milestones(rows: Sequence[Any], today: date, horizon_days: int) -> dict[str, Any]:
    open_rows = sorted(
        (m for m in rows if m.completed_at is None), key=lambda m: (m.due_date, m.id)
    )
    horizon = today + timedelta(days=horizon_days)

    def view(m: Any) -> dict[str, Any]:
        return {"id": m.id, "title": m.title, "due_date": m.due_date.isoformat()}

    return {
        "upcoming": [view(m) for m in open_rows if today <= m.due_date <= horizon],
        "overdue": [view(m) for m in open_rows if m.due_date < today],
    }


# --- alerts ---------------------------------------------------------------------------


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


# --- director summary -----------------------------------------------------------------


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
