"""Debian's Chromium through Playwright, and processes the browser tests run."""

import re
from pathlib import Path

from tests.harness.processes import GATEWAY_CLI, HOST, HttpProcess, child_env, free_port

CHROMIUM = "/usr/bin/chromium"


CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


class RunProcess(HttpProcess):
    """`gateway run` (development: sign-in links, then the server) on a free port."""

    def __init__(self, database_url: str, log_dir: Path) -> None:
        port = free_port()
        argv = [*GATEWAY_CLI, "run", "--host", HOST, "--port", str(port)]
        super().__init__("gateway-run", argv, child_env(database_url), port=port, log_dir=log_dir)

    def links(self) -> list[str]:
        return re.findall(r"http://\S+/graphql#token=\S+", self.log())
