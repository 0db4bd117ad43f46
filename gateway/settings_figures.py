"""The figures' settings: the alert thresholds of the dashboard's alerts and the readiness
and milestone windows (resolvers/figures/, defined in docs/metrics.md), apart from the
gateway's own settings."""

from pydantic import Field
from pydantic_settings import BaseSettings

from resolvers.figures import Thresholds


class FigureSettings(BaseSettings):
    # Thresholds of the dashboard's alerts (the figures' definitions).
    alert_low_seat_utilization: float = Field(
        0.60, description="LOW_SEAT_UTILIZATION fires below this seat utilization."
    )
    alert_low_mentor_coverage: float = Field(
        0.80, description="LOW_MENTOR_COVERAGE (warning) fires below this coverage."
    )
    alert_critical_mentor_coverage: float = Field(
        0.50, description="LOW_MENTOR_COVERAGE is critical below this coverage."
    )
    alert_low_session_completion: float = Field(
        0.70, description="LOW_SESSION_COMPLETION fires below this session completion rate."
    )
    alert_low_readiness: float = Field(
        60.0, description="LOW_READINESS fires below this average readiness."
    )
    alert_critical_payment_failure_ratio: float = Field(
        0.10,
        description="PAYMENT_FAILURES is critical above this failed/billed ratio in a currency.",
    )

    ready_score: float = Field(70.0, description="Latest readiness score counted as ready.")
    milestone_horizon_days: int = Field(30, description="Upcoming milestones window, days.")

    def thresholds(self) -> Thresholds:
        return Thresholds(
            low_seat_utilization=self.alert_low_seat_utilization,
            low_mentor_coverage=self.alert_low_mentor_coverage,
            critical_mentor_coverage=self.alert_critical_mentor_coverage,
            low_session_completion=self.alert_low_session_completion,
            low_readiness=self.alert_low_readiness,
            critical_payment_failure_ratio=self.alert_critical_payment_failure_ratio,
            ready_score=self.ready_score,
            milestone_horizon_days=self.milestone_horizon_days,
        )
