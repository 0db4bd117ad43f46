"""Cohort and its figures (docs/metrics.md)."""

from enum import Enum
from typing import Any

import strawberry

from resolvers.context import Context
from resolvers.errors import upstream_unavailable
from resolvers.funnel import MissionFunnel
from resolvers.projection import NotProjected, projects
from resolvers.scalars import Date, DateTime, SafeInt


@strawberry.enum(description="Cohort lifecycle status.")
class CohortStatus(Enum):
    PLANNED = "planned"
    RUNNING = "running"
    CLOSED = "closed"


@strawberry.enum(description="Delivery mode of a cohort.")
class CohortMode(Enum):
    ONLINE = "online"
    HYBRID = "hybrid"
    ONSITE = "onsite"


@strawberry.enum(description="Alert severity.")
class Severity(Enum):
    CRITICAL = "critical"
    WARNING = "warning"


@strawberry.enum(description="Alert codes of docs/metrics.md.")
class AlertCode(Enum):
    LOW_SEAT_UTILIZATION = "LOW_SEAT_UTILIZATION"
    LOW_MENTOR_COVERAGE = "LOW_MENTOR_COVERAGE"
    LOW_SESSION_COMPLETION = "LOW_SESSION_COMPLETION"
    LOW_READINESS = "LOW_READINESS"
    OVERDUE_MILESTONE = "OVERDUE_MILESTONE"
    PAYMENT_FAILURES = "PAYMENT_FAILURES"


@strawberry.type(description="A program (programs module).")
class Program:
    id: int = strawberry.field(description="Program id.")
    name: str = strawberry.field(description="Program name.")
    status: str = strawberry.field(description="Program status: active or archived.")


@strawberry.type(description="A track of a program (programs module).")
class Track:
    id: int = strawberry.field(description="Track id.")
    name: str = strawberry.field(description="Track name.")


@strawberry.type(description="Seats of a cohort, or pooled over running cohorts in a summary.")
class Seats:
    total: SafeInt = strawberry.field(description="seat_capacity (summed in a summary).")
    used: int = strawberry.field(description="Seated enrollments: status active or completed.")
    available: SafeInt = strawberry.field(
        description="max(total − used, 0); in a summary, the sum of each cohort's available."
    )
    paid: int = strawberry.field(description="Seated enrollments with seat_type paid.")
    scholarship: int = strawberry.field(
        description="Seated enrollments with seat_type scholarship."
    )
    sponsored: int = strawberry.field(description="Seated enrollments with seat_type sponsored.")
    utilization: float | None = strawberry.field(description="used / total; null when total is 0.")


@strawberry.type(description="Enrollments counted by seat type, over all enrollments.")
class SeatTypeCounts:
    paid: int = strawberry.field(description="Enrollments with seat_type paid.")
    scholarship: int = strawberry.field(description="Enrollments with seat_type scholarship.")
    sponsored: int = strawberry.field(description="Enrollments with seat_type sponsored.")


@strawberry.type(description="Enrollment breakdown of a cohort.")
class Enrollment:
    enrolled: int = strawberry.field(description="Every enrollment of the cohort.")
    active: int = strawberry.field(description="Enrollments with status active.")
    completed: int = strawberry.field(description="Enrollments with status completed.")
    withdrawn: int = strawberry.field(description="Enrollments with status withdrawn.")
    deferred: int = strawberry.field(description="Enrollments with status deferred.")
    by_seat_type: SeatTypeCounts = strawberry.field(
        description="Enrollments by seat type, over all enrolled."
    )
    completion_rate: float | None = strawberry.field(
        description="completed / (enrolled − withdrawn); null when that is 0."
    )


@strawberry.type(description="A mentor with an active assignment in the cohort.")
class MentorStats:
    id: int = strawberry.field(description="Mentor id.")
    name: str | None = strawberry.field(description="Mentor name (null if the mentor row is gone).")
    max_learners: int | None = strawberry.field(description="The mentor's max_learners.")
    active_learners: int = strawberry.field(
        description="Distinct learners with an active assignment to this mentor in the cohort."
    )
    completed_sessions: int = strawberry.field(
        description="This mentor's sessions in the cohort with status completed."
    )
    no_show_sessions: int = strawberry.field(
        description="This mentor's sessions in the cohort with status no_show."
    )


@strawberry.type(
    description="Mentorship figures (Mentorship OS). Active assignment: ended_at null."
)
class Mentorship:
    mentor_count: int = strawberry.field(
        description="Distinct mentors with an active assignment in the cohort."
    )
    active_learners: int = strawberry.field(description="Enrollments with status active.")
    covered_learners: int = strawberry.field(
        description="Active learners with at least one active assignment."
    )
    mentor_coverage: float | None = strawberry.field(
        description="coveredLearners / activeLearners; null when there are no active learners."
    )
    learners_per_mentor: float | None = strawberry.field(
        description="activeLearners / mentorCount; null when mentorCount is 0."
    )
    past_sessions: int = strawberry.field(
        description="Sessions with scheduled_at ≤ computedAt and status other than cancelled."
    )
    completed_past_sessions: int = strawberry.field(
        description="Past sessions with status completed."
    )
    session_completion_rate: float | None = strawberry.field(
        description="completedPastSessions / pastSessions; null when there are none."
    )
    upcoming_sessions: int = strawberry.field(
        description="Sessions with status scheduled and scheduled_at > computedAt."
    )
    mentors: list[MentorStats] = strawberry.field(
        description="Each mentor with an active assignment in the cohort, ordered by mentor id."
    )


@strawberry.type(description="Readiness score bucket: lower ≤ score < upper (100 is in the last).")
class ReadinessBucket:
    lower: float = strawberry.field(description="Inclusive lower bound.")
    upper: float = strawberry.field(
        description="Exclusive upper bound, except 100 which the last bucket includes."
    )
    count: int = strawberry.field(description="Scored seated learners in this bucket.")


@strawberry.type(
    description="Readiness (TalentScope): latest score per seated learner in the cohort."
)
class Readiness:
    average: float | None = strawberry.field(
        description="Mean of the latest scores; learners without a score left out; null if none."
    )
    scored_learners: int = strawberry.field(description="Seated learners with a score.")
    ready: int = strawberry.field(description="Scored seated learners whose latest score is ≥ 70.")
    distribution: list[ReadinessBucket] = strawberry.field(
        description="Counts in [0,20), [20,40), [40,60), [60,80), [80,100]."
    )


@strawberry.type(description="One competency row of the heatmap.")
class CompetencyRow:
    competency: str = strawberry.field(description="Competency name.")
    learners: int = strawberry.field(description="Seated learners with a level in it.")
    levels: list[int] = strawberry.field(
        description="Six counts: learners whose latest level is 0, 1, 2, 3, 4, 5."
    )
    average_level: float = strawberry.field(description="Mean latest level over those learners.")


@strawberry.type(description="Portfolio health (Portfolio Engine).")
class PortfolioHealth:
    draft: int = strawberry.field(description="The cohort's items with status draft.")
    submitted: int = strawberry.field(description="The cohort's items with status submitted.")
    published: int = strawberry.field(description="The cohort's items with status published.")
    learners_with_published: int = strawberry.field(
        description="Distinct seated learners with at least one published item."
    )
    published_rate: float | None = strawberry.field(
        description="learnersWithPublished / seated; null when nobody is seated."
    )
    average_quality: float | None = strawberry.field(
        description="Mean quality_score over published items that have one; null if none."
    )


@strawberry.type(description="Payments of a cohort in one currency (Subscription & Billing).")
class CurrencyPayments:
    currency: str = strawberry.field(description="ISO 4217 code.")
    billed_cents: SafeInt = strawberry.field(
        description="Sum of amount over all payments, refunded ones included."
    )
    paid_cents: SafeInt = strawberry.field(description="Sum over payments with status paid.")
    pending_cents: SafeInt = strawberry.field(description="Sum over payments with status pending.")
    failed_cents: SafeInt = strawberry.field(description="Sum over payments with status failed.")
    overdue_cents: SafeInt = strawberry.field(
        description="Sum over pending payments with due_date before today (UTC)."
    )
    refunded_cents: SafeInt = strawberry.field(description="Sum of the refunds of these payments.")
    refund_count: int = strawberry.field(description="How many refunds.")
    failed_count: int = strawberry.field(description="How many payments have status failed.")
    collection_rate: float | None = strawberry.field(
        description="paidCents / billedCents; null when nothing was billed."
    )


@strawberry.type(description="An open milestone.")
class Milestone:
    id: int = strawberry.field(description="Milestone id.")
    title: str = strawberry.field(description="Milestone title.")
    due_date: Date = strawberry.field(description="Due date.")


@strawberry.type(description="Open milestones, each list ordered by due date then id.")
class Milestones:
    upcoming: list[Milestone] = strawberry.field(
        description="Open, with today ≤ due date ≤ today + 30 days."
    )
    overdue: list[Milestone] = strawberry.field(description="Open, with due date before today.")


@strawberry.type(description="An alert raised by a running cohort.")
class Alert:
    code: AlertCode = strawberry.field(description="The rule that fired.")
    severity: Severity = strawberry.field(description="critical or warning.")
    cohort_id: int = strawberry.field(description="The cohort that raised it.")
    value: float = strawberry.field(
        description=(
            "The figure: the rate or average compared; for OVERDUE_MILESTONE the number of "
            "overdue milestones, for PAYMENT_FAILURES the number of failed payments."
        )
    )
    threshold: float = strawberry.field(
        description="The threshold crossed (for critical mentor coverage, the critical one)."
    )
    message: str = strawberry.field(description="One line for people.")


def stale_of(root: Any, context: Context) -> bool:
    return context.is_stale(root)


@projects(stale_of)
def _stale(root: Any, info: strawberry.Info[Context, None]) -> bool:
    return info.context.is_stale(root)


def _section(name: str) -> Any:
    """A section whose upstream module may be down: served from the last cached subtree
    with an UPSTREAM_UNAVAILABLE error on its path, or null with that error."""

    def available(root: Any, context: Context) -> Any:
        if root.get("unavailable", {}).get(name) is not None:
            raise NotProjected  # the ordinary way: it reports the outage
        return root[name]

    @projects(available)
    def resolve(root: Any, info: strawberry.Info[Context, None]) -> Any:
        value = root[name]
        module = root.get("unavailable", {}).get(name)
        if module is not None:
            error = upstream_unavailable(module, info.path.as_list())
            if value is None:
                raise error
            info.context.deferred_errors.append(error)
        return value

    return resolve


SECTION_NOTE = " Null only when its upstream module is unavailable and nothing is cached."


@strawberry.type(description="A cohort and every figure of docs/metrics.md, as of computedAt.")
class Cohort:
    id: int = strawberry.field(description="Cohort id.")
    name: str = strawberry.field(description="Cohort name.")
    mode: CohortMode = strawberry.field(description="Delivery mode.")
    status: CohortStatus = strawberry.field(description="planned, running or closed.")
    start_date: Date = strawberry.field(description="First day.")
    end_date: Date = strawberry.field(description="Last day.")
    track: Track = strawberry.field(description="The track the cohort belongs to.")
    program: Program = strawberry.field(description="The program of that track.")
    seats: Seats = strawberry.field(description="Seat figures.")
    enrollment: Enrollment = strawberry.field(description="Enrollment breakdown.")
    mentorship: Mentorship | None = strawberry.field(
        resolver=_section("mentorship"), description="Mentorship figures." + SECTION_NOTE
    )
    readiness: Readiness | None = strawberry.field(
        resolver=_section("readiness"), description="Readiness figures." + SECTION_NOTE
    )
    competencies: list[CompetencyRow] | None = strawberry.field(
        resolver=_section("competencies"),
        description="Competency heatmap: one row per competency with a level, by name."
        + SECTION_NOTE,
    )
    mission_funnel: MissionFunnel | None = strawberry.field(
        resolver=_section("mission_funnel"), description="Mission funnel." + SECTION_NOTE
    )
    portfolio: PortfolioHealth | None = strawberry.field(
        resolver=_section("portfolio"), description="Portfolio health." + SECTION_NOTE
    )
    payments: list[CurrencyPayments] | None = strawberry.field(
        resolver=_section("payments"),
        description="Payments per currency, ordered by currency code." + SECTION_NOTE,
    )
    milestones: Milestones = strawberry.field(description="Upcoming and overdue milestones.")
    alerts: list[Alert] = strawberry.field(
        description="Alerts of this cohort (running cohorts only), in docs/metrics.md rule order."
    )
    flags: list[AlertCode] = strawberry.field(description="The codes of this cohort's alerts.")
    computed_at: DateTime = strawberry.field(
        description="When these figures were computed; every figure is as of this instant."
    )
    stale: bool = strawberry.field(
        resolver=_stale,
        description=(
            "True when computedAt is older than the refresh interval plus its grace, or when "
            "a section is an older copy because its upstream module is unavailable."
        ),
    )
