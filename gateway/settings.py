from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from loaders import MODULES
from resolvers.figures import Thresholds

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./var/demo.sqlite3"


class Settings(BaseSettings):
    """Every setting of the gateway, read from the environment with the prefix GATEWAY_."""

    model_config = SettingsConfigDict(env_prefix="GATEWAY_", env_file=".env", extra="ignore")

    env: Literal["development", "production"] = Field(
        "development", description="Profile: production turns GraphiQL/introspection off."
    )
    database_url: str = Field(
        DEFAULT_DATABASE_URL, description="Default database URL of every upstream module."
    )
    upstream_programs_url: str | None = Field(None, description="programs module database URL.")
    upstream_mentorship_url: str | None = Field(None, description="mentorship module database URL.")
    upstream_talentscope_url: str | None = Field(
        None, description="talentscope module database URL."
    )
    upstream_missions_url: str | None = Field(None, description="missions module database URL.")
    upstream_portfolio_url: str | None = Field(None, description="portfolio module database URL.")
    upstream_billing_url: str | None = Field(None, description="billing module database URL.")
    upstream_query_timeout_s: float = Field(
        5.0, description="Per-statement timeout of upstream reads, seconds."
    )
    upstream_pool_size: int = Field(10, description="Connections per upstream engine (PostgreSQL).")

    jwt_secret: SecretStr = Field(
        SecretStr("dev-secret-change-me-0123456789abcdef"),
        description="HS256 secret for bearer tokens.",
    )
    jwt_public_key_file: Path | None = Field(
        None, description="PEM public key; when set, tokens are RS256 and verified with it."
    )
    jwt_private_key_file: Path | None = Field(
        None, description="PEM private key used by `gateway token` to mint RS256 tokens."
    )
    jwt_audience: str | None = Field(None, description="Required `aud` claim, when set.")
    jwt_issuer: str | None = Field(None, description="Required `iss` claim, when set.")

    graphiql: bool | None = Field(
        None, description="Serve GraphiQL on GET; default on in development, off in production."
    )
    introspection: bool | None = Field(
        None, description="Allow introspection; default on in development, off in production."
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="Origins allowed by CORS (never `*` in production)."
    )

    redis_url: str | None = Field(
        None, description="Redis for the cache and the job queue; unset = embedded mode."
    )
    refresh_interval_s: float = Field(
        300.0, description="Prewarm interval; a subtree older than this is served as stale."
    )
    max_body_bytes: int = Field(262_144, description="Largest accepted request body, bytes.")

    # Alert thresholds of spec/METRICS.md.
    alert_low_seat_utilization: float = 0.60
    alert_low_mentor_coverage: float = 0.80
    alert_critical_mentor_coverage: float = 0.50
    alert_low_session_completion: float = 0.70
    alert_low_readiness: float = 60.0
    alert_critical_payment_failure_ratio: float = 0.10

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

    def upstream_urls(self) -> dict[str, str]:
        return {module: self.upstream_url(module) for module in MODULES}

    def upstream_url(self, module: str) -> str:
        if module not in MODULES:
            raise ValueError(f"unknown upstream module {module!r}")
        return getattr(self, f"upstream_{module}_url") or self.database_url

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @cached_property
    def graphiql_enabled(self) -> bool:
        return self.graphiql if self.graphiql is not None else not self.is_production

    @cached_property
    def introspection_enabled(self) -> bool:
        return self.introspection if self.introspection is not None else not self.is_production
