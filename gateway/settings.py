import json
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from loaders import MODULES
from resolvers.figures import Thresholds

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./var/demo.sqlite3"
# Development defaults: fine on a laptop, refused in production.
DEV_JWT_SECRET = "dev-secret-change-me-0123456789abcdef"
DEV_WEBHOOK_SECRET = "dev-webhook-secret-change-me"
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
MIN_SECRET_BYTES = 32


def settings_problems(error: ValidationError) -> list[str]:
    """One line per problem, naming the variable, never echoing a value (it may be a secret)."""
    lines = []
    for problem in error.errors():
        message = str(problem["msg"]).removeprefix("Value error, ")
        location = ".".join(str(part) for part in problem["loc"])
        variable = f"GATEWAY_{location.upper()}: " if location else ""
        lines += [f"{variable}{line}" for line in message.splitlines()]
    return lines


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
    log_format: Literal["json", "text"] | None = Field(
        None, description="Log lines: json (default in production) or text (development)."
    )
    log_level: str = Field("INFO", description="Root log level.")
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
            "unset = embedded mode."
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
        True, description="Serve persisted GETs from stored answer bytes (the fast path)."
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
    worker_heartbeat_file: Path = Field(
        Path("/tmp/gateway-worker.heartbeat"),
        description=(
            "File a worker rewrites every 5 s for `gateway worker --check`; give each worker "
            "sharing a filesystem its own."
        ),
    )
    worker_heartbeat_max_age_s: float = Field(
        30.0, gt=0, description="`gateway worker --check` fails when the heartbeat is older."
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
    event_dedupe_ttl_s: float = Field(
        7 * 86_400.0, description="How long an event id is remembered, seconds."
    )
    max_body_bytes: int = Field(262_144, description="Largest accepted request body, bytes.")

    # Alert thresholds of spec/METRICS.md.
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

    # --- persisted queries and limits ---
    persisted_manifest: Path | None = Field(
        None,
        description="Trusted documents: an apollo-persisted-query-manifest or a {hash: document} "
        "JSON map, loaded at start-up.",
    )
    persisted_only: bool = Field(
        False, description="Reject documents not in the manifest (PERSISTED_QUERY_NOT_IN_LIST)."
    )
    persisted_only_log_only: bool = Field(
        False, description="Only log what persisted-only mode would reject; reject nothing."
    )
    persisted_only_allow_apq: bool = Field(
        False, description="In persisted-only mode, also accept documents registered through APQ."
    )
    apq_enabled: bool = Field(True, description="Automatic Persisted Queries (Apollo protocol).")
    apq_ttl_s: int = Field(
        86_400, gt=0, description="Lifetime of an APQ document in Redis, seconds."
    )
    apq_memory_entries: int = Field(
        2_000, gt=0, description="APQ documents kept in process memory (LRU)."
    )
    max_document_chars: int = Field(
        32_768,
        gt=0,
        description="Longest document, characters (checked before it is parsed).",
    )
    max_depth: int = Field(
        10, gt=0, description="Deepest field nesting; `{ me { id } }` has depth 2."
    )
    max_aliases: int = Field(15, ge=0, description="Most aliased fields in one document.")
    max_tokens: int = Field(
        800,
        gt=0,
        description="Most lexical tokens in one document (parsing and validating cost about "
        "20–40 µs of CPU per token).",
    )
    max_cost: int = Field(
        50_000,
        gt=0,
        description="Most field resolutions: each field costs the product of the `first` "
        "arguments (or their defaults) of the paginated fields above it.",
    )
    max_fields: int = Field(
        500,
        gt=0,
        description="Most field selections in one operation or fragment, fragments expanded.",
    )
    max_selections: int = Field(
        100,
        gt=0,
        description="Most fields merged into one selection set (inline fragments and spreads "
        "flattened).",
    )
    max_repeated_fields: int = Field(
        5,
        gt=0,
        description="Most fields sharing one response name in one selection set (validation "
        "compares them pairwise).",
    )
    max_operations: int = Field(10, gt=0, description="Most operations in one document.")
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

    @field_validator("cors_origins", "cors_allow_headers", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                return json.loads(value)
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

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
        """Empty secrets break every request (JWT) or let anyone sign (webhooks); production
        wants secrets of its own, at least MIN_SECRET_BYTES long (RFC 7518 §3.2 for HS256),
        and CORS origins that name pages. Every problem is reported, one line each."""
        problems = []
        uses_jwt_secret = self.jwt_public_key_file is None
        internal = self.internal_token
        for variable, value, default, needed in (
            ("GATEWAY_JWT_SECRET", self.jwt_secret, DEV_JWT_SECRET, uses_jwt_secret),
            ("GATEWAY_WEBHOOK_SECRET", self.webhook_secret, DEV_WEBHOOK_SECRET, True),
            ("GATEWAY_INTERNAL_TOKEN", internal or SecretStr(""), "", internal is not None),
        ):
            secret = value.get_secret_value().encode()
            if not needed:
                continue
            if not secret:
                problems.append(f"{variable} is empty")
            elif self.is_production and secret == default.encode():
                problems.append(f"{variable} is the development value: set it in production")
            elif self.is_production and len(secret) < MIN_SECRET_BYTES:
                problems.append(
                    f"{variable} has {len(secret)} bytes: at least {MIN_SECRET_BYTES} in production"
                )
        if self.is_production and "*" in self.cors_origins:
            problems.append(
                "GATEWAY_CORS_ORIGINS: `*` is not allowed in production; list the origins"
            )
        if self.is_production and any(o.strip().lower() == "null" for o in self.cors_origins):
            # Sandboxed frames, file: pages and some redirects all send `Origin: null`.
            problems.append(
                "GATEWAY_CORS_ORIGINS: `null` is not allowed in production: any page can send it"
            )
        if problems:
            raise ValueError("\n".join(problems))
        return self

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
    def fresh_s(self) -> float:
        """Age up to which a subtree is fresh: the refresh interval plus the grace."""
        return self.refresh_interval_s + self.refresh_grace_s

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
