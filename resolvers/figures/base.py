"""Conventions shared by every figure: rates, means, instants, thresholds."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True)
class Thresholds:
    """Alert thresholds and fixed limits (settings; defaults are docs/metrics.md's)."""

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
