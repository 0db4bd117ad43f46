"""Running uvicorn: one process, or uvicorn's supervisor over N worker processes.

`gateway serve --workers N` (N > 1) checks the settings, then replaces itself (exec: same
pid, same signals) with `python -m gateway.supervisor`, which imports nothing but
uvicorn: the supervisor stays small (about 28 MB resident instead of about 41 MB with
the settings stack loaded) while every worker imports the application itself.

With several workers, their Prometheus samples are shared through files
(prometheus-client's multiprocess mode, see gateway/metrics.py): in
PROMETHEUS_MULTIPROC_DIR when it is set (emptied first, as the library requires), else
in a temporary directory removed at exit.
"""

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

APP = "gateway.main:app"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
GRACEFUL_SHUTDOWN_S = 20


def run_uvicorn(host: str, port: int, workers: int) -> None:
    import uvicorn

    uvicorn.run(
        APP,
        host=host,
        port=port,
        workers=workers,
        loop="uvloop",
        http="httptools",
        # gateway.main configures logging in every worker process.
        log_config=None,
        access_log=False,
        proxy_headers=False,
        # SIGTERM: stop accepting, let in-flight requests finish for up to this long.
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )


def metrics_dir(workers: int) -> Path | None:
    """Prepares the multiprocess metrics directory; returns it when it is ours to remove."""
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        Path(given).mkdir(parents=True, exist_ok=True)
        for stale in Path(given).glob("*.db"):
            stale.unlink()
        return None
    if workers <= 1:
        return None
    ours = Path(tempfile.mkdtemp(prefix="gateway-metrics-"))
    os.environ[MULTIPROC_ENV] = str(ours)  # inherited by the worker processes
    return ours


def serve(host: str, port: int, workers: int) -> None:
    ours = metrics_dir(workers)
    try:
        run_uvicorn(host, port, workers)
    finally:
        if ours is not None:
            shutil.rmtree(ours, ignore_errors=True)


def exec_supervisor(host: str, port: int, workers: int) -> None:
    """Replaces this process with the light supervisor (does not return)."""
    argv = [sys.executable, "-m", "gateway.supervisor", host, str(port), str(workers)]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, argv)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.supervisor")
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("workers", type=int)
    args = parser.parse_args(argv)
    serve(args.host, args.port, args.workers)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
