"""Node scripts of tests/js (a real Apollo Client, graphql-http's audit, graphql-codegen)
run against a live gateway; their packages come from tests/js's lockfile."""

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

JS_DIR = Path(__file__).parents[1] / "js"
NODE_TIMEOUT_S = 120
NPM_CI_TIMEOUT_S = 600


def node_binary() -> str:
    """`node`, with tests/js's packages installed (`npm ci`) when they are not yet."""
    node = shutil.which("node")
    assert node is not None, "node is not installed (.ci/run installs nodejs)"
    if not (JS_DIR / "node_modules").is_dir():
        subprocess.run(
            ["npm", "ci", "--prefix", str(JS_DIR), "--no-audit", "--no-fund"],
            check=True,
            timeout=NPM_CI_TIMEOUT_S,
        )
    return node


def run_node(node: str, script: str, *args: str, **env: str) -> Any:
    """Runs tests/js/<script> with these environment variables; its stdout, parsed as JSON."""
    completed = subprocess.run(
        [node, str(JS_DIR / script), *args],
        cwd=JS_DIR,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=NODE_TIMEOUT_S,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)
