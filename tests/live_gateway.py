"""The real gateway (`gateway serve`) in a child process, for clients outside this process
(a browser, Node): the harness's GatewayProcess, with its access log on."""

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.harness.processes import GatewayProcess, child_env

_gateways: dict[str, GatewayProcess] = {}  # base URL → the process serving it


@contextmanager
def live_gateway(database_url: str, **settings: str) -> Iterator[str]:
    """Yields the base URL; `settings` are GATEWAY_* variables (name without the prefix).
    `access_log(url)` reads the requests it served so far."""
    with tempfile.TemporaryDirectory(prefix="gateway-live-") as tmp:
        # The tests read the requests it served from its access log.
        env = child_env(database_url, access_log="true", **settings)
        with GatewayProcess("gateway-live", env, Path(tmp)) as gateway:
            _gateways[gateway.url] = gateway
            try:
                yield gateway.url
            finally:
                _gateways.pop(gateway.url, None)


def access_log(url: str) -> list[dict[str, Any]]:
    """The access-log records of /graphql so far (method, path, status, duration_ms,
    operation, request_id…)."""
    return [
        record
        for record in _gateways[url].records()
        if record.get("logger") == "gateway.access" and record["path"] == "/graphql"
    ]
