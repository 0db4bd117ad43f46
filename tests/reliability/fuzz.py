"""GraphQL documents generated from schema.graphql by hypothesis-graphql.

Generation costs a few milliseconds a document, so it runs in two processes (the 2-core
box's gateway is idle meanwhile). Seeds are fixed: a run is reproducible."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_FILE = ROOT / "schema.graphql"


def generate(seed: int, positive: int, negative: int) -> list[tuple[str, str]]:
    """(mode, document): `positive` valid operations (queries and mutations) and
    `negative` ones with exactly one schema violation each."""
    from hypothesis_graphql import Mode, from_schema

    sdl = SCHEMA_FILE.read_text()
    out: list[tuple[str, str]] = []
    for mode, count, offset in (("positive", positive, 0), ("negative", negative, 1)):
        if count:
            strategy = from_schema(sdl, mode=Mode.POSITIVE if mode == "positive" else Mode.NEGATIVE)
            out += [(mode, d) for d in _draw(strategy, seed * 10 + offset, count)]
    return out


def _draw(strategy: object, seed: int, count: int) -> list[str]:
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as fixed_seed

    found: list[str] = []

    @fixed_seed(seed)
    @settings(
        max_examples=count,
        phases=[Phase.generate],
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(document: str) -> None:
        found.append(document)

    collect()
    # Hypothesis may stop short of max_examples; never more than asked.
    return found[:count]


# Hypothesis slows down as one run grows (it mutates what it has seen): many small runs,
# each with its own seed, generate the same number of documents several times faster.
CHUNK = 250


def generate_parallel(positive: int, negative: int, processes: int = 2) -> list[tuple[str, str]]:
    jobs = []
    seed = 0
    for mode, total in (("positive", positive), ("negative", negative)):
        for start in range(0, total, CHUNK):
            seed += 1
            size = min(CHUNK, total - start)
            jobs.append(
                (seed, size if mode == "positive" else 0, size if mode == "negative" else 0)
            )
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(processes, mp_context=context) as pool:
        parts = list(pool.map(generate, *zip(*jobs, strict=True)))
    return [item for part in parts for item in part]
