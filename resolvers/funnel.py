"""Mission funnel (Missions MXP)."""

import strawberry

from resolvers.scalars import Date


@strawberry.type(description="Funnel counts over a set of mission submissions.")
class FunnelCounts:
    started: int = strawberry.field(description="Submissions of any status.")
    submitted: int = strawberry.field(
        description="Submissions with status submitted, approved or rejected."
    )
    approved: int = strawberry.field(description="Submissions with status approved.")
    rejected: int = strawberry.field(description="Submissions with status rejected.")
    approval_rate: float | None = strawberry.field(
        description="approved / (approved + rejected); null when nothing was reviewed."
    )
    median_review_hours: float | None = strawberry.field(
        description=(
            "Median of (reviewed_at − submitted_at) in hours over approved or rejected "
            "submissions with both timestamps; mean of the two middle values for an even "
            "count; null when there are none."
        )
    )


@strawberry.type(description="The funnel of one mission.")
class MissionFunnelStep(FunnelCounts):
    mission_id: int = strawberry.field(description="Mission id.")
    title: str = strawberry.field(description="Mission title.")
    due_date: Date = strawberry.field(description="Mission due date.")


@strawberry.type(description="Funnel over all submissions to the cohort's missions.")
class MissionFunnel(FunnelCounts):
    missions: list[MissionFunnelStep] = strawberry.field(
        description="The same funnel per mission of the cohort, ordered by mission id."
    )
