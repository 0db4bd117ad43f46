"""Prometheus metrics of the gateway and its workers (prometheus-client).

With several uvicorn worker processes (`gateway serve --workers N`, N > 1), each process
writes its samples to files in PROMETHEUS_MULTIPROC_DIR (set by `gateway serve`) and a
scrape of any of them aggregates every process's (prometheus-client's multiprocess mode).
"""

import os

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.multiprocess import MultiProcessCollector

from gateway.supervisor import MULTIPROC_ENV

BUILD_INFO = Gauge(
    "gateway_build_info",
    "1, labelled with this process's version, Python version and cache version (the format "
    "of its Redis keys and stored entries: replicas of two cache versions share nothing).",
    ["version", "python", "cache_version"],
    multiprocess_mode="max",
)

# Subtree kinds: cohort, summary, scope, user.
CACHE_REQUESTS = Counter(
    "gateway_cache_requests_total",
    "Subtree cache look-ups by kind and result (hit, stale, miss, error).",
    ["kind", "result"],
)
SUBTREE_AGE = Histogram(
    "gateway_served_subtree_age_seconds",
    "Age (now − computedAt) of subtrees served from the cache.",
    ["kind"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600),
)
LIVE_FALLBACKS = Counter(
    "gateway_live_answers_total",
    "Subtrees computed live because the cache could not be used (Redis down).",
    ["kind"],
)
UPSTREAM_STATEMENTS = Counter(
    "gateway_upstream_statements_total",
    "Upstream SQL statements by module and outcome.",
    ["module", "outcome"],
)
UPSTREAM_LATENCY = Histogram(
    "gateway_upstream_statement_seconds",
    "Upstream statement latency by module.",
    ["module"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
REQUEST_LATENCY = Histogram(
    "gateway_request_seconds",
    "GraphQL request latency by operation name and outcome.",
    ["operation", "outcome"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
REFRESH_DURATION = Histogram(
    "gateway_refresh_seconds",
    "Duration of refresh runs by kind (all, director, cohort).",
    ["kind"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300),
)
REFRESH_PHASE = Histogram(
    "gateway_refresh_phase_seconds",
    "Duration of each phase of a refresh cycle (cohorts, directors, dashboards, answers).",
    ["phase"],
    buckets=(0.1, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600),
)
REFRESH_BATCHES = Counter(
    "gateway_refresh_batches_total",
    "Batches of refresh cycles by phase and outcome (done, failed).",
    ["phase", "outcome"],
)
REFRESH_LAST_SUCCESS = Gauge(
    "gateway_refresh_last_success_timestamp_seconds",
    "Unix time of the last successful full refresh cycle.",
    multiprocess_mode="mostrecent",
)
REFRESH_LAG = Gauge(
    "gateway_refresh_lag_seconds",
    "now − oldest computedAt among warm director summaries, measured after each cycle.",
    multiprocess_mode="mostrecent",
)
REFRESHES_RUNNING = Gauge(
    "gateway_refreshes_running",
    "Refreshes asked for by reads, webhooks or requestRefresh running in this process "
    "(embedded mode; workers bound theirs with their job slots).",
    multiprocess_mode="livesum",
)
REFRESHES_RUNNING_PEAK = Gauge(
    "gateway_refreshes_running_peak",
    "Most refreshes ever running at once in this process (embedded mode).",
    multiprocess_mode="max",
)
REFRESH_REQUESTS = Counter(
    "gateway_refresh_requests_total",
    "Refresh requests by result: started, duplicate (that target is already pending), "
    "dropped (the pending queue is full; the next read that finds it stale asks again).",
    ["result"],
)
ANSWERS_EVICTED = Counter(
    "gateway_answers_evicted_total",
    "Stored answers dropped because their caller stored more than "
    "GATEWAY_ANSWER_MAX_PER_CALLER (least recently used first).",
)
ANSWER_MISSES = Counter(
    "gateway_answer_misses_total",
    "Stored answers missing when asked for, by outcome: executed (this request ran the "
    "operation), shared (answered from the execution of the same key already running).",
    ["outcome"],
)
ANSWER_REBUILDS = Counter(
    "gateway_answer_rebuilds_total",
    "Stored answers a refresh cycle found built from what it rewrote, by outcome: rebuilt, "
    "unused (not asked for within the window), over_cap (past GATEWAY_ANSWER_REBUILD_MAX), "
    "over_budget (past the cycle's share), failed (could not be rebuilt), gone (expired).",
    ["outcome"],
)
WEBHOOK_EVENTS = Counter(
    "gateway_webhook_events_total",
    "Upstream change events by result (accepted, duplicate, bad_signature, bad_request).",
    ["result"],
)

# Subscriptions (gateway/live).
LIVE_CONNECTIONS = Gauge(
    "gateway_subscription_connections",
    "Open subscription connections by transport (websocket, sse).",
    ["transport"],
    multiprocess_mode="livesum",
)
LIVE_SUBSCRIPTIONS = Gauge(
    "gateway_subscriptions",
    "Active subscriptions by field (dashboard, cohort).",
    ["field"],
    multiprocess_mode="livesum",
)
LIVE_PUSHES = Counter("gateway_subscription_pushes_total", "Updates pushed by field.", ["field"])
LIVE_REFUSALS = Counter(
    "gateway_subscription_refusals_total",
    "Connections refused or ended by reason (caller_limit, process_limit, role, "
    "role_changed, unverifiable, unauthenticated, expired).",
    ["reason"],
)
LIVE_PUBLISHED = Counter(
    "gateway_rewrite_notices_published_total", "Rewrite notices published by this process."
)
LIVE_NOTICES = Counter(
    "gateway_rewrite_notices_received_total", "Rewrite notices received by this process's hub."
)
LIVE_PUSH_DELAY = Histogram(
    "gateway_subscription_push_delay_seconds",
    "From a notice's publication to its update being handed to the connection.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
LIVE_FANOUT_SECONDS = Histogram(
    "gateway_subscription_fanout_seconds",
    "Time to apply one notice: role check, reads, offers to every subscription concerned.",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)


UPSTREAM_REFUSALS = Counter(
    "gateway_upstream_refused_reads_total",
    "Upstream reads refused because a value is outside the contract (docs/upstream.md), "
    "by module and column.",
    ["module", "column"],
)


def observe_refusal(module: str, column: str) -> None:
    UPSTREAM_REFUSALS.labels(module, column).inc()


def observe_statement(module: str, seconds: float, ok: bool) -> None:
    UPSTREAM_STATEMENTS.labels(module, "ok" if ok else "error").inc()
    UPSTREAM_LATENCY.labels(module).observe(seconds)


REFRESH_LAST_DURATION = Gauge(
    "gateway_refresh_last_cycle_seconds",
    "Duration of the last full refresh cycle.",
    multiprocess_mode="mostrecent",
)


def registry_for_scrape() -> CollectorRegistry:
    """Every worker process's samples in multiprocess mode; this process's otherwise."""
    if not os.environ.get(MULTIPROC_ENV):
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    return registry
