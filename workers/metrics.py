"""Prometheus metrics of a worker process only (`gateway worker --metrics-port N`).

The refresh cycle's own metrics (phases, batches, upstream statements) are in
gateway/metrics.py: the embedded scheduler records them too."""

from prometheus_client import Counter, Gauge

REDIS_UP = Gauge(
    "gateway_worker_redis_up",
    "1 while the worker reaches the queue's Redis, 0 during an outage.",
    multiprocess_mode="livesum",
)
REDIS_OUTAGES = Counter(
    "gateway_worker_redis_outages_total",
    "Redis outages the worker rode out (or is riding out).",
)
REDIS_OUTAGE_SECONDS = Counter(
    "gateway_worker_redis_outage_seconds_total",
    "Seconds spent without Redis, counted when it comes back.",
)
HEARTBEAT = Gauge(
    "gateway_worker_heartbeat_timestamp_seconds",
    "Unix time of the worker's last heartbeat (what `gateway worker --check` reads).",
    multiprocess_mode="max",
)
