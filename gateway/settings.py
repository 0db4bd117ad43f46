import json
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from gateway.settings_checks import (
    DEV_JWT_SECRET,
    DEV_WEBHOOK_SECRET,
    database_url,
    log_level,
    profile_problems,
    settings_problems,
)
from gateway.settings_documents import DocumentSettings
from gateway.settings_figures import FigureSettings
from gateway.settings_files import UPSTREAM_URL_SETTINGS, FileSecretsSource
from gateway.settings_workers import WorkerSettings
from loaders import MODULES

__all__ = ["Settings", "settings_problems"]

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./var/demo.sqlite3"
# What browser clients send besides the CORS-safelisted headers: the token, revalidation,
# W3C trace context, a request id, and Apollo Client's client awareness.
CORS_ALLOW_HEADERS = [
    "Authorization",
    "Content-Type",
    "If-None-Match",
    "X-Request-Id",
    "traceparent",
    "tracestate",
    "apollographql-client-name",
    "apollographql-client-version",
]
# A list setting: comma-separated (as .env.example shows it) or a JSON array.
StrList = Annotated[list[str], NoDecode]


class Settings(DocumentSettings, FigureSettings, WorkerSettings):
    """Every setting of the gateway, read from the environment with the prefix GATEWAY_ (and
    each secret also from the file GATEWAY_<NAME>_FILE names: gateway/settings_files.py)."""

    model_config = SettingsConfigDict(env_prefix="GATEWAY_", env_file=".env", extra="ignore")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        files = FileSecretsSource(settings_cls)
        return init_settings, env_settings, files, dotenv_settings, file_secret_settings

    env: Literal["development", "production"] = Field(
        "development", description="Profile: production turns GraphiQL/introspection off."
    )
    database_url: str = Field(
        DEFAULT_DATABASE_URL,
        description="Default database URL of every upstream module: postgresql://, postgres:// "
        "(both read as postgresql+asyncpg://) or sqlite:///path (sqlite+aiosqlite).",
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
    upstream_pool_size: int = Field(
        10,
        gt=0,
        description=(
            "Connections per upstream engine (PostgreSQL); statements beyond them wait for one "
            "within the query timeout (no overflow: each new connection costs the server a "
            "process and a password exchange)."
        ),
    )

    jwt_secret: SecretStr = Field(
        SecretStr(DEV_JWT_SECRET),
        description="HS256 secret for bearer tokens (never empty; 32 bytes or more in production).",
    )
    jwt_public_key_file: Path | None = Field(
        None, description="PEM public key; when set, tokens are RS256 and verified with it."
    )
    jwt_private_key_file: Path | None = Field(
        None, description="PEM private key used by `gateway token` to mint RS256 tokens."
    )
    jwt_audience: str | None = Field(None, description="Required `aud` claim, when set.")
    jwt_issuer: str | None = Field(None, description="Required `iss` claim, when set.")
    jwt_max_lifetime_s: float = Field(
        86_400.0,
        gt=0,
        description="Longest token lifetime accepted, `exp − iat`, seconds (`iat` is required).",
    )

    graphiql: bool | None = Field(
        None, description="Serve GraphiQL on GET; default on in development, off in production."
    )
    introspection: bool | None = Field(
        None, description="Allow introspection; default on in development, off in production."
    )
    cors_origins: StrList = Field(
        default_factory=list,
        description="Origins allowed by CORS (never `*` or `null` in production).",
    )
    cors_allow_headers: StrList = Field(
        default_factory=lambda: list(CORS_ALLOW_HEADERS),
        description="Request headers a browser on an allowed origin may send.",
    )

    workers: int = Field(1, description="uvicorn worker processes of `gateway serve`.")
    http_keepalive_s: float = Field(
        75.0,
        gt=0,
        description="An idle keep-alive connection is closed after this long; above the idle "
        "timeout of the load balancer in front (60 s on most), so that it closes first.",
    )
    internal_port: int | None = Field(
        None,
        gt=0,
        lt=65536,
        description="Serve /healthz, /readyz and /metrics on this port of `gateway serve`'s "
        "host, and nothing else there; the public port then answers /readyz and /metrics 404.",
    )
    internal_token: SecretStr | None = Field(
        None,
        description="When set, /readyz and /metrics need `Authorization: Bearer <token>` (32 "
        "bytes or more in production).",
    )
    drain_s: float | None = Field(
        None,
        ge=0,
        description="On SIGTERM, `gateway serve` answers /readyz 503 and keeps serving this "
        "long, seconds, before it stops accepting; default 5 in production, 0 in development.",
    )
    log_format: Literal["json", "text"] | None = Field(
        None, description="Log lines: json (default in production) or text (development)."
    )
    log_level: str = Field(
        "INFO", description="Root log level: DEBUG, INFO, WARNING, ERROR or CRITICAL."
    )
    access_log: bool = Field(
        False,
        description="One structured log record per HTTP request: method, path, status, "
        "duration_ms, operation, request_id.",
    )
    tracing: bool = Field(
        False,
        description="OpenTelemetry traces, exported as the standard OTEL_* variables say "
        "(OTLP over HTTP to OTEL_EXPORTER_OTLP_ENDPOINT by default).",
    )
    redis_url: str | None = Field(
        None,
        description=(
            "Redis for the cache (and the job queue unless GATEWAY_QUEUE_REDIS_URL is set); "
            "unset = embedded mode (in production only with GATEWAY_EMBEDDED)."
        ),
    )
    embedded: bool = Field(
        False,
        description=(
            "Production: let `gateway serve` run without Redis on purpose (each replica its own "
            "cache, refresh cycle and persisted-query store). Development runs embedded "
            "whenever GATEWAY_REDIS_URL is unset."
        ),
    )
    redis_cluster: bool = Field(
        False,
        description=(
            "GATEWAY_REDIS_URL names a node of a Redis Cluster: the cache uses the cluster "
            "client (the queue then needs GATEWAY_QUEUE_REDIS_URL)."
        ),
    )
    queue_redis_url: str | None = Field(
        None,
        description=(
            "A standalone Redis for the arq job queue and the refresh cycle's lease; "
            "default GATEWAY_REDIS_URL."
        ),
    )
    refresh_interval_s: float = Field(
        300.0, description="Prewarm interval; a subtree older than this is served as stale."
    )
    refresh_grace_s: float = Field(
        60.0,
        description=(
            "A subtree counts as stale only past the interval plus this, seconds: the time a "
            "cycle takes to rewrite it."
        ),
    )
    cache_enabled: bool = Field(
        True, description="Serve through the subtree cache; off computes every answer live."
    )
    cache_ttl_s: float = Field(
        900.0, description="Serve a cached subtree (marked stale) up to this age, seconds."
    )
    cache_retention_s: float = Field(
        86_400.0,
        description="Keep entries this long, seconds, to answer when an upstream module fails.",
    )
    cache_lock_s: float = Field(
        30.0, description="Cross-process single-flight lock timeout, seconds."
    )
    response_cache_enabled: bool = Field(
        True,
        description=(
            "Serve persisted GETs, and POSTs of known documents, from stored answer bytes "
            "(the fast path)."
        ),
    )
    compression: bool = Field(
        True,
        description=(
            "gzip answers, stored answers (once, when stored) and static files for clients "
            "that accept it."
        ),
    )
    compression_min_bytes: int = Field(
        1_024, ge=0, description="Bodies shorter than this go out uncompressed, bytes."
    )
    answer_rebuild_window_s: float = Field(
        86_400.0,
        gt=0,
        description=(
            "A refresh cycle rebuilds a stored answer (e.g. a cohort detail) while it was "
            "last asked for within this many seconds; others are dropped."
        ),
    )
    answer_max_per_caller: int = Field(
        50,
        gt=0,
        description=(
            "Stored answers kept per caller; storing one more drops their least recently used."
        ),
    )
    answer_rebuild_max: int = Field(
        5_000,
        ge=0,
        description=(
            "Most stored answers (besides every dashboard's own pages) a refresh cycle "
            "rebuilds, most recently used first; the others are dropped."
        ),
    )
    answer_rebuild_share: float = Field(
        0.25,
        ge=0,
        le=1,
        description=(
            "Share of the refresh interval a cycle may spend rebuilding stored answers; "
            "what is left when it runs out is dropped."
        ),
    )
    answer_usage_flush_s: float = Field(
        10.0,
        gt=0,
        description="How often each process writes when stored answers were asked for, s.",
    )
    embedded_scheduler: bool = Field(
        True, description="Embedded mode: refresh every interval inside the gateway process."
    )
    refresh_concurrency: int = Field(
        2,
        gt=0,
        description="Embedded mode: refreshes asked for by reads and webhooks running at once.",
    )
    refresh_queue_max: int = Field(
        10_000,
        gt=0,
        description=(
            "Embedded mode: refreshes waiting at most; more are turned away (a stale read asks "
            "again)."
        ),
    )
    refresh_cohort_batch: int = Field(
        125,
        gt=0,
        le=2000,
        description=(
            "Cohorts per batch job of a refresh cycle (one statement per upstream table per batch)."
        ),
    )
    refresh_director_batch: int = Field(
        250, gt=0, description="Directors' scopes and summaries per batch job of a refresh cycle."
    )
    refresh_answer_batch: int = Field(
        50, gt=0, description="Stored answers (or callers' dashboards) per batch job of a cycle."
    )
    refresh_rate_limit: int = Field(
        6, description="requestRefresh calls allowed per caller per minute."
    )
    webhook_secret: SecretStr = Field(
        SecretStr(DEV_WEBHOOK_SECRET),
        description="HMAC-SHA256 secret of upstream change events (never empty; 32 bytes or more "
        "in production).",
    )
    webhook_max_body_bytes: int = Field(65_536, description="Largest webhook body, bytes.")
    webhook_max_ids: int = Field(
        10_000,
        gt=0,
        description="Most cohort and director ids one change event names, together (413 "
        "TOO_MANY_IDS beyond; nothing is queued).",
    )
    event_dedupe_ttl_s: float = Field(
        7 * 86_400.0, description="How long an event id is remembered, seconds."
    )
    max_body_bytes: int = Field(262_144, description="Largest accepted request body, bytes.")

    field_suggestions: bool | None = Field(
        None, description="`Did you mean` hints in errors; default on in development only."
    )

    # --- subscriptions and the dashboard page ---
    subscriptions_max_connections: int = Field(
        5_000,
        gt=0,
        description="Subscription connections (WebSocket and event streams) one gateway "
        "process holds; more are refused (close 1013, HTTP 503).",
    )
    subscriptions_max_connections_per_caller: int = Field(
        8,
        gt=0,
        description="Subscription connections of one caller in one gateway process; more are "
        "refused (close 4429, HTTP 429).",
    )
    subscriptions_max_per_connection: int = Field(
        4, gt=0, description="Subscriptions multiplexed on one WebSocket (TOO_MANY_SUBSCRIPTIONS)."
    )
    subscriptions_init_timeout_s: float = Field(
        10.0, gt=0, description="A WebSocket must send connection_init within this (close 4408)."
    )
    subscriptions_keepalive_s: float = Field(
        20.0, gt=0, description="An idle event stream gets a comment line this often, seconds."
    )
    dashboard_page: bool | None = Field(
        None, description="Serve GET /dashboard; default on in development, off in production."
    )

    # --- what one connection, one caller or one event may cost before any work ---
    max_header_bytes: int = Field(
        16_384,
        gt=0,
        description="Largest request head (request line and headers), bytes; more is answered "
        "431 before the application reads it.",
    )
    max_headers: int = Field(100, gt=0, description="Most header fields in one request (431).")
    header_timeout_s: float = Field(
        10.0,
        gt=0,
        description="A request head must arrive whole within this of its first byte (of the "
        "connection, for the first request), seconds; else 408 and the connection is closed.",
    )
    subscriptions_max_init_bytes: int = Field(
        8_192,
        gt=0,
        description="Largest WebSocket message before connection_ack (close 1009); every "
        "message is bounded by GATEWAY_MAX_BODY_BYTES.",
    )

    @field_validator("cors_origins", "cors_allow_headers", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                return json.loads(value)
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("database_url", *UPSTREAM_URL_SETTINGS)
    @classmethod
    def _async_driver(cls, value: str | None) -> str | None:
        return None if value is None else database_url(value)

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        return log_level(value)

    @cached_property
    def field_suggestions_enabled(self) -> bool:
        if self.field_suggestions is not None:
            return self.field_suggestions
        return not self.is_production

    @model_validator(mode="after")
    def _queue_on_a_standalone_redis(self) -> "Settings":
        if self.queue_redis_url and not self.redis_url:
            raise ValueError("GATEWAY_QUEUE_REDIS_URL needs GATEWAY_REDIS_URL (the cache) too")
        if self.redis_cluster and not self.redis_url:
            raise ValueError("GATEWAY_REDIS_CLUSTER needs GATEWAY_REDIS_URL")
        if self.redis_cluster and not self.queue_redis_url:
            raise ValueError(
                "arq's queue cannot run on a Redis Cluster: set GATEWAY_QUEUE_REDIS_URL to a "
                "standalone Redis"
            )
        return self

    @property
    def queue_url(self) -> str | None:
        """The job queue's Redis: GATEWAY_QUEUE_REDIS_URL, else the cache's."""
        return self.queue_redis_url or self.redis_url

    @model_validator(mode="after")
    def _safe_for_the_profile(self) -> "Settings":
        """Every problem is reported, one line each (gateway/settings_checks.py)."""
        problems = profile_problems(self)
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @property
    def uses_jwt_secret(self) -> bool:
        return self.jwt_public_key_file is None

    def upstream_urls(self) -> dict[str, str]:
        return {module: self.upstream_url(module) for module in MODULES}

    def upstream_url(self, module: str) -> str:
        if module not in MODULES:
            raise ValueError(f"unknown upstream module {module!r}")
        return getattr(self, f"upstream_{module}_url") or self.database_url

    @property
    def gzip_min_bytes(self) -> int | None:
        """The shortest body compressed; None when compression is off."""
        return self.compression_min_bytes if self.compression else None

    @property
    def fresh_s(self) -> float:
        """Age up to which a subtree is fresh: the refresh interval plus the grace."""
        return self.refresh_interval_s + self.refresh_grace_s

    @property
    def effective_drain_s(self) -> float:
        if self.drain_s is not None:
            return self.drain_s
        return 5.0 if self.is_production else 0.0

    @property
    def effective_log_format(self) -> str:
        return self.log_format or ("json" if self.is_production else "text")

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @cached_property
    def graphiql_enabled(self) -> bool:
        return self.graphiql if self.graphiql is not None else not self.is_production

    @cached_property
    def dashboard_page_enabled(self) -> bool:
        return self.dashboard_page if self.dashboard_page is not None else not self.is_production

    @cached_property
    def introspection_enabled(self) -> bool:
        return self.introspection if self.introspection is not None else not self.is_production
