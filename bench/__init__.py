"""`make bench`: the load benchmark of the gateway (see BENCHMARKS.md)."""
