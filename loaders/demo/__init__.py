"""Deterministic synthetic upstream data for demos, tests and benchmarks.

`seed(urls, scale=..., seed=..., today=...)` creates the tables of the six upstream
modules (docs/upstream.md) and fills them with a realistic dataset. The same
(scale, seed, today) always writes the same rows: every random draw comes from
`random.Random(seed)` or from per-cohort generators seeded by it, and every date is
derived from `today`, never from the wall clock.

Running cohorts are given an archetype (see RUNNING_ARCHETYPES) so that every alert
of docs/metrics.md fires somewhere and healthy cohorts raise none, by construction
rather than by luck. Nothing is ever dated on `today` itself except milestone due
dates, so "past" and "future" do not depend on the time of day a test runs at.
"""

from loaders.demo.scale import SCALES, Scale, SeedReport
from loaders.demo.writer import checksum, seed

__all__ = ["SCALES", "Scale", "SeedReport", "checksum", "seed"]
