"""The gateway's Prometheus counters summed over all its worker processes.

The gateway's /metrics serves the default registry of whichever uvicorn worker accepted the
scrape, so with `--workers 2` each scrape shows one process's counters. The harness runs the
gateway with PROMETHEUS_MULTIPROC_DIR set (prometheus-client then keeps every counter in a
per-process file there) and sums the files with prometheus-client's MultiProcessCollector:
the same counters /metrics would show for a single process, for the whole gateway."""

from collections import defaultdict
from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector

Counters = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def read_counters(directory: Path) -> Counters:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))
    out: Counters = defaultdict(float)
    for metric in registry.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total"):
                out[(sample.name, tuple(sorted(sample.labels.items())))] += sample.value
    return dict(out)


def delta(after: Counters, before: Counters) -> Counters:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v - before.get(k, 0.0)}


def total(counters: Counters, name: str, **labels: str) -> float:
    return sum(
        value
        for (metric, sample_labels), value in counters.items()
        if metric == name and all(dict(sample_labels).get(k) == v for k, v in labels.items())
    )


CACHE = "gateway_cache_requests_total"
STATEMENTS = "gateway_upstream_statements_total"
SUBTREE_KINDS = ("cohort", "summary", "scope", "user")
RESULTS = ("hit", "stale", "miss", "error")


def cache_summary(counters: Counters) -> dict[str, dict[str, float]]:
    """kind → result → count, for the response cache and each subtree kind."""
    return {
        kind: {result: total(counters, CACHE, kind=kind, result=result) for result in RESULTS}
        for kind in ("response", *SUBTREE_KINDS)
    }


def hit_rate(summary: dict[str, dict[str, float]], kinds: tuple[str, ...]) -> float | None:
    hits = sum(summary[k]["hit"] for k in kinds)
    looked = sum(sum(summary[k].values()) for k in kinds)
    return hits / looked if looked else None
