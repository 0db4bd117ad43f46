"""The load a run replays: the dataset's directors and their scopes (from SQL), a token
each, and the request file (persisted GETs as Apollo Client sends them)."""

import contextlib
import json
import random
import sqlite3
import statistics
import urllib.parse
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.config import JWT_SECRET, Config


class Workload:
    def __init__(self, requests_file: Path) -> None:
        self.requests_file = requests_file
        self.directors: list[int] = []
        self.scopes: dict[int, list[int]] = {}
        self.tokens: dict[int, str] = {}
        self.distinct: list[str] = []  # every distinct line of the request file

    def load_dataset(self, sqlite_path: Path) -> dict[str, Any]:
        """The directors, their scopes and tokens; how large the scopes are."""
        with contextlib.closing(sqlite3.connect(sqlite_path)) as db:
            self.directors = [
                r[0] for r in db.execute("SELECT id FROM users WHERE role = 'director' ORDER BY id")
            ]
            scopes: dict[int, set[int]] = defaultdict(set)
            for director, cohort in db.execute(
                "SELECT td.director_id, c.id FROM track_directors td "
                "JOIN cohorts c ON c.track_id = td.track_id"
            ):
                scopes[director].add(cohort)
        self.scopes = {d: sorted(scopes[d]) for d in self.directors}
        from gateway.auth import mint_token
        from gateway.settings import Settings

        settings = Settings(_env_file=None, jwt_secret=JWT_SECRET)  # type: ignore[call-arg]
        ttl_s = 4 * 3600
        self.tokens = {d: mint_token(settings, d, "director", ttl_s) for d in self.directors}
        sizes = [len(s) for s in self.scopes.values()]
        return {
            "count": len(self.directors),
            "scope_cohorts_min": min(sizes),
            "scope_cohorts_median": statistics.median(sizes),
            "scope_cohorts_max": max(sizes),
        }

    def write_requests(self, config: Config) -> dict[str, Any]:
        """The load: directors in a shuffled round robin, each request its own director's
        token, the operation drawn by the mix, CohortDetail ids from the director's scope."""
        from gateway.documents.dashboard import dashboard_operations

        operations = dashboard_operations()
        rng = random.Random(config.seed)
        names = list(config.weights)
        weights = [config.weights[n] for n in names]
        order = list(self.directors)
        lines: list[str] = []
        mix: dict[str, int] = defaultdict(int)
        while len(lines) < config.requests:
            rng.shuffle(order)
            for director in order:
                name = rng.choices(names, weights)[0]
                variables = None
                if name == "CohortDetail":
                    if not self.scopes[director]:
                        name = "DirectorSummary"
                    else:
                        variables = {"id": rng.choice(self.scopes[director])}
                mix[name] += 1
                target = persisted_get(name, operations[name].sha256, variables)
                lines.append(f"{target}\t{self.tokens[director]}")
                if len(lines) >= config.requests:
                    break
        self.requests_file.write_text("\n".join(lines) + "\n")
        self.distinct = sorted(set(lines))
        return {
            "requests_in_file": len(lines),
            "distinct_requests": len(self.distinct),
            "mix": dict(mix),
            "directors": len(self.directors),
        }


def persisted_get(name: str, sha256: str, variables: dict[str, Any] | None) -> str:
    """The path and query of a persisted GET, as Apollo Client sends it."""
    params = [("operationName", name)]
    if variables is not None:
        params.append(("variables", json.dumps(variables, separators=(",", ":"))))
    extensions = {"persistedQuery": {"version": 1, "sha256Hash": sha256}}
    params.append(("extensions", json.dumps(extensions, separators=(",", ":"))))
    return "/graphql?" + urllib.parse.urlencode(params, quote_via=urllib.parse.quote)
