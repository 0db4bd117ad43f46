"""The load a run replays: the dataset's directors and their scopes (from SQL), a token
each, and the request files: persisted GETs as Apollo Client sends them; the same requests
as POSTs of the document's text (as urql, graphql-request or Apollo Client without APQ
send them); and the admins' CohortList by GET and by POST."""

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
        self.post_file = requests_file.with_name("requests-post.tsv")
        self.admin_get_file = requests_file.with_name("requests-admin-get.tsv")
        self.admin_post_file = requests_file.with_name("requests-admin-post.tsv")
        self.admins: list[int] = []
        self.admin_tokens: dict[int, str] = {}
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
            self.admins = [
                r[0] for r in db.execute("SELECT id FROM users WHERE role = 'admin' ORDER BY id")
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
        self.admin_tokens = {a: mint_token(settings, a, "admin", ttl_s) for a in self.admins}
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
        posts: list[str] = []
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
                body = post_body(name, operations[name].body, variables)
                posts.append(f"POST /graphql\t{self.tokens[director]}\t{body}")
                if len(lines) >= config.requests:
                    break
        self.requests_file.write_text("\n".join(lines) + "\n")
        self.post_file.write_text("\n".join(posts) + "\n")
        self.distinct = sorted(set(lines))
        admin_list = operations["CohortList"]
        self.admin_get_file.write_text(
            "".join(
                f"{persisted_get(admin_list.name, admin_list.sha256, None)}\t{token}\n"
                for token in self.admin_tokens.values()
            )
        )
        self.admin_post_file.write_text(
            "".join(
                f"POST /graphql\t{token}\t{post_body(admin_list.name, admin_list.body, None)}\n"
                for token in self.admin_tokens.values()
            )
        )
        return {
            "requests_in_file": len(lines),
            "distinct_requests": len(self.distinct),
            "mix": dict(mix),
            "directors": len(self.directors),
            "admins": len(self.admins),
        }


def persisted_get(name: str, sha256: str, variables: dict[str, Any] | None) -> str:
    """The path and query of a persisted GET, as Apollo Client sends it."""
    params = [("operationName", name)]
    if variables is not None:
        params.append(("variables", json.dumps(variables, separators=(",", ":"))))
    extensions = {"persistedQuery": {"version": 1, "sha256Hash": sha256}}
    params.append(("extensions", json.dumps(extensions, separators=(",", ":"))))
    return "/graphql?" + urllib.parse.urlencode(params, quote_via=urllib.parse.quote)


def post_body(name: str, document: str, variables: dict[str, Any] | None) -> str:
    """The JSON body of a POST of the document's text, as urql or graphql-request send it."""
    body: dict[str, Any] = {"query": document, "operationName": name}
    if variables is not None:
        body["variables"] = variables
    return json.dumps(body, separators=(",", ":"))
