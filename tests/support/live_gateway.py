"""The real gateway (`gateway serve`) in a child process, for clients outside this process
(a browser, Node): the harness's GatewayProcess, with its access log on."""

import json
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from gateway.http.webhooks import signature
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


async def send_change_event(
    url: str, secret: str, cohort_ids: list[int], module: str, timeout_s: float = 60.0
) -> float:
    """Sends a signed upstream change event to the gateway at `url` and checks it was
    accepted (202); returns when it was sent (unix time)."""
    body = json.dumps(
        {
            "id": f"evt-{time.time_ns()}",
            "module": module,
            "occurred_at": "2026-11-24T10:00:00Z",
            "cohort_ids": cohort_ids,
        }
    ).encode()
    sent = time.time()
    async with httpx.AsyncClient(base_url=url, timeout=timeout_s) as http:
        response = await http.post(
            "/webhooks/upstream",
            content=body,
            headers={
                "X-Signature": signature(secret.encode(), body),
                "Content-Type": "application/json",
            },
        )
    assert response.status_code == 202, response.text
    return sent
