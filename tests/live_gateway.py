"""The real gateway under uvicorn in a child process, for clients outside this process
(a browser, Node)."""

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.servers import HOST, START_TIMEOUT_S, ServerError, free_port

ROOT = Path(__file__).resolve().parent.parent
_logs: dict[str, Path] = {}  # base URL → uvicorn's log file


@contextmanager
def live_gateway(database_url: str, **settings: str) -> Iterator[str]:
    """Yields the base URL; `settings` are GATEWAY_* variables (name without the prefix).
    `access_log(url)` reads the requests it served so far."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env |= {
        "GATEWAY_DATABASE_URL": database_url,
        "GATEWAY_EMBEDDED_SCHEDULER": "false",
        "GATEWAY_ACCESS_LOG": "true",  # the tests read the requests it served
        **{f"GATEWAY_{name.upper()}": value for name, value in settings.items()},
    }
    with tempfile.TemporaryDirectory(prefix="gateway-live-") as tmp:
        log_path = Path(tmp) / "uvicorn.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "gateway.main:app",
                    "--host",
                    HOST,
                    "--port",
                    str(port),
                    "--no-use-colors",
                ],  # fmt: skip
                cwd=tmp,  # no .env of the work tree
                env={**env, "PYTHONPATH": str(ROOT)},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        url = f"http://{HOST}:{port}"
        try:
            _wait_until_up(process, url, log_path)
            _logs[url] = log_path
            yield url
        finally:
            _logs.pop(url, None)
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def access_log(url: str) -> list[str]:
    """uvicorn's access-log lines for /graphql so far, e.g. `"GET /graphql?… HTTP/1.1" 200`."""
    lines = _logs[url].read_text(errors="replace").splitlines()
    return [line.split(" - ", 1)[1] for line in lines if ' - "' in line and "/graphql" in line]


def _wait_until_up(process: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait()
            raise ServerError(f"gateway did not start on {url}:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.1)
