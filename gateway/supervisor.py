"""Running uvicorn: one process, or N worker processes under a small supervisor.

`gateway serve --workers N` (N > 1) checks the settings, then replaces itself (exec: same
pid, same signals) with `python -m gateway.supervisor`, which:

- starts N workers, `python -m gateway.supervisor --worker`, each a single-process
  uvicorn on its own listening socket bound with SO_REUSEPORT, so the kernel spreads
  new connections evenly over the workers. (uvicorn's own supervisor shares one socket:
  whichever worker wakes first accepts a whole burst of connections, and keep-alive
  connections then stay unevenly spread: measured, one worker took about two thirds.)
- restarts a worker that exits (ever more slowly while it keeps crashing soon after
  starting), and stops (exit 1) when one exits before it ever served: a broken setting,
  application or port fails the same way on every restart;
- on SIGTERM or SIGINT, passes SIGTERM on: each worker drains (GATEWAY_DRAIN_S: /readyz
  answers 503 while it keeps serving, gateway/drain.py), then stops accepting and lets its
  in-flight requests finish (up to GRACEFUL_SHUTDOWN_S), then exits;
- imports none of the application (about 10 MB resident) and needs no multiprocessing
  resource tracker.

Written here rather than taken from uvicorn (whose supervisor shares one socket) or
gunicorn (another server and configuration to run) because it is this small.

With several workers, their Prometheus samples are shared through files
(prometheus-client's multiprocess mode, see gateway/metrics.py): in
PROMETHEUS_MULTIPROC_DIR when it is set (emptied first, as the library requires), else
in a temporary directory removed at exit. A worker that exits (restarted or stopped) is
marked dead there, so its live gauges (connections, subscriptions, running refreshes)
leave the scrape; its counters stay, as a scrape's totals must.
"""

import argparse
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

APP = "gateway.main:app"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
GRACEFUL_SHUTDOWN_S = 20
BACKLOG = 2048
STARTUP_FAILURE = 3  # uvicorn's exit code when the application fails to start
POLL_S = 0.2
RESTART_DELAY_S = 1.0  # before restarting a worker that exited; doubled while it keeps
MAX_RESTART_DELAY_S = 30.0  # crashing within STABLE_S of starting, up to this
STABLE_S = 10.0

log = logging.getLogger("gateway.supervisor")


def _uvicorn_options() -> dict[str, object]:
    # The request head and WebSocket message bounds (the HTTP protocol class among them).
    from gateway.http.protocol import server_options
    from gateway.settings import Settings  # in the process that serves (checked by the CLI)

    return {
        # Longer than the load balancer's idle timeout: else it may reuse a connection the
        # server is closing at that moment, and answer 502 (GATEWAY_HTTP_KEEPALIVE_S).
        "timeout_keep_alive": Settings().http_keepalive_s,
        "loop": "uvloop",
        **server_options(),
        # gateway.main configures logging in every worker process.
        "log_config": None,
        "access_log": False,
        "proxy_headers": False,
        "backlog": BACKLOG,
        # SIGTERM: stop accepting, let in-flight requests finish for up to this long.
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_S,
        # Subscriptions (WebSocket): the sans-I/O implementation (no task per connection)
        # and no permessage-deflate, whose zlib state costs about 250 KB a connection.
        "ws": "websockets-sansio",
        "ws_per_message_deflate": False,
    }


def draining_server(config: Any, drain_s: float, ready_fd: int | None = None) -> Any:
    """uvicorn's Server, draining on the first SIGTERM or SIGINT once it serves: /readyz
    answers 503 for `drain_s` while it keeps serving, then uvicorn's own shutdown (stop
    accepting, finish in-flight requests). A second signal stops it at once. Once serving,
    it writes a byte to `ready_fd`: the supervisor tells a failed start from a crash by it."""
    import uvicorn

    from gateway import drain

    class Server(uvicorn.Server):
        drain_until: float | None = None
        drain_signal = signal.SIGTERM

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if self.started and ready_fd is not None:
                os.write(ready_fd, b"1")
                os.close(ready_fd)

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            if drain_s > 0 and self.started and self.drain_until is None:
                self.drain_until = time.monotonic() + drain_s
                self.drain_signal = signal.Signals(sig)
                drain.start()
                log.info(
                    "received %s: draining (/readyz 503) for %g s, then stopping",
                    self.drain_signal.name,
                    drain_s,
                )
                return
            super().handle_exit(sig, frame)

        async def on_tick(self, counter: int) -> bool:
            if self.drain_until is not None and time.monotonic() >= self.drain_until:
                self.drain_until = float("inf")  # drained: uvicorn's own exit from here
                super().handle_exit(self.drain_signal, None)
            return await super().on_tick(counter)

    return Server(config)


def run_single(
    host: str, port: int, internal_port: int | None = None, drain_s: float = 0.0
) -> None:
    """One process: its listening socket(s) (and the internal port's, when set)."""
    import uvicorn

    metrics_dir(1)
    ports = [port] if internal_port is None else [port, internal_port]
    sockets = [listening(host, p, reuseport=False) for p in ports]
    config = uvicorn.Config(APP, host=host, port=port, **_uvicorn_options())  # type: ignore[arg-type]
    draining_server(config, drain_s).run(sockets=sockets)


def listening(host: str, port: int, *, reuseport: bool) -> socket.socket:
    if reuseport:
        sock = reuseport_socket(host, port)
    else:
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    sock.listen(BACKLOG)
    return sock


def reuseport_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock


def run_worker(
    host: str,
    port: int,
    ready_fd: int | None = None,
    internal_port: int | None = None,
    drain_s: float = 0.0,
) -> None:
    """One of N workers: its own SO_REUSEPORT socket, then uvicorn on it."""
    import uvicorn

    ports = [port] if internal_port is None else [port, internal_port]
    sockets = [listening(host, p, reuseport=True) for p in ports]
    config = uvicorn.Config(APP, host=host, port=port, **_uvicorn_options())  # type: ignore[arg-type]
    server = draining_server(config, drain_s, ready_fd)
    server.run(sockets=sockets)
    if not server.started:
        sys.exit(STARTUP_FAILURE)


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


def mark_dead(pid: int) -> None:
    """Drops a dead worker's live gauges from the multiprocess samples (its files of
    livesum/liveall/… gauges), so a scrape no longer counts what it held."""
    path = os.environ.get(MULTIPROC_ENV)
    if not path:
        return
    from prometheus_client.multiprocess import mark_process_dead

    try:
        mark_process_dead(pid, path)
    except OSError as exc:
        log.warning("could not mark worker [%d] dead for the metrics: %s", pid, exc)


def _stop_with_parent(parent: int) -> None:
    """In a worker, before exec: SIGTERM when the supervisor dies, even by SIGKILL, so no
    worker is left holding the port (Linux; elsewhere the workers outlive a killed
    supervisor)."""
    if sys.platform == "linux":
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
        if os.getppid() != parent:  # the supervisor died before prctl took effect
            os._exit(1)


@dataclass
class Slot:
    process: subprocess.Popen[bytes]
    ready_r: int  # read end of the worker's readiness pipe; -1 once it is ready
    ready_at: float | None = None


def _close_ready(slot: Slot) -> None:
    if slot.ready_r >= 0:
        os.close(slot.ready_r)
        slot.ready_r = -1


class Supervisor:
    def __init__(
        self,
        host: str,
        port: int,
        workers: int,
        internal_port: int | None = None,
        drain_s: float = 0.0,
    ):
        self.host = host
        self.port = port
        self.internal_port = internal_port
        self.drain_s = drain_s
        self.slots: list[Slot | None] = [None] * workers
        self.backoff_s = [RESTART_DELAY_S] * workers
        self.stopping = False
        self.failed = False

    def _spawn(self, index: int) -> None:
        ready_r, ready_w = os.pipe()
        os.set_blocking(ready_r, False)
        argv = [sys.executable, "-m", "gateway.supervisor", "--worker", self.host, str(self.port)]
        argv += ["--ready-fd", str(ready_w), "--drain-s", str(self.drain_s)]
        if self.internal_port is not None:
            argv += ["--internal-port", str(self.internal_port)]
        parent = os.getpid()
        try:
            process = subprocess.Popen(
                argv, pass_fds=(ready_w,), preexec_fn=lambda: _stop_with_parent(parent)
            )
        finally:
            os.close(ready_w)
        self.slots[index] = Slot(process, ready_r)

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        if not self.stopping:
            log.info("received %s, stopping the workers", signal.Signals(signum).name)
        self.stopping = True

    def run(self) -> int:
        # A port already in use is reported here, once: first a plain bind, which fails
        # even against another SO_REUSEPORT group (a second gateway on the same port would
        # otherwise silently share its connections); then a bound, never listening
        # SO_REUSEPORT socket is held, so the port stays ours while workers come and go.
        ports = [self.port] if self.internal_port is None else [self.port, self.internal_port]
        probes = []
        try:
            for port in ports:
                check = socket.socket(
                    socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM
                )
                with check:
                    check.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    check.bind((self.host, port))
                probes.append(reuseport_socket(self.host, port))
        except OSError as exc:
            log.error("cannot bind %s:%d: %s", self.host, port, exc)
            for probe in probes:
                probe.close()
            return 1
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        log.info("started supervisor process [%d]", os.getpid())
        try:
            for index in range(len(self.slots)):
                self._spawn(index)
            self._watch()
        finally:
            self._terminate()
            for probe in probes:
                probe.close()
        log.info("stopped supervisor process [%d]", os.getpid())
        return 1 if self.failed else 0

    def _watch(self) -> None:
        while not self.stopping:
            time.sleep(POLL_S)
            for index, slot in enumerate(self.slots):
                if slot is None or self.stopping:
                    continue
                if slot.ready_at is None:
                    try:
                        if os.read(slot.ready_r, 1):
                            slot.ready_at = time.monotonic()
                            _close_ready(slot)
                    except BlockingIOError:
                        pass
                code = slot.process.poll()
                if code is None:
                    continue
                mark_dead(slot.process.pid)
                if slot.ready_at is None:
                    # It never served: the application, a setting or the port is broken and
                    # would fail the same way on every restart.
                    log.error("worker [%d] failed to start (%d); stopping", slot.process.pid, code)
                    self.failed = self.stopping = True
                    return
                # A worker that crashes soon after starting is restarted ever more slowly.
                if time.monotonic() - slot.ready_at < STABLE_S:
                    self.backoff_s[index] = min(self.backoff_s[index] * 2, MAX_RESTART_DELAY_S)
                else:
                    self.backoff_s[index] = RESTART_DELAY_S
                log.warning("worker [%d] exited (%d); restarting", slot.process.pid, code)
                self.slots[index] = None
                deadline = time.monotonic() + self.backoff_s[index]
                while not self.stopping and time.monotonic() < deadline:
                    time.sleep(POLL_S)
                if not self.stopping:
                    self._spawn(index)

    def _terminate(self) -> None:
        alive = [s.process for s in self.slots if s is not None and s.process.poll() is None]
        for child in alive:
            child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.drain_s + GRACEFUL_SHUTDOWN_S + 5
        for child in alive:
            try:
                child.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.error("worker [%d] did not stop in time; killing it", child.pid)
                child.kill()
                child.wait()
            mark_dead(child.pid)
        for slot in self.slots:
            if slot is not None:
                _close_ready(slot)


def serve(
    host: str, port: int, workers: int, internal_port: int | None = None, drain_s: float = 0.0
) -> int:
    if workers <= 1:
        run_single(host, port, internal_port, drain_s)
        return 0
    ours = metrics_dir(workers)
    try:
        return Supervisor(host, port, workers, internal_port, drain_s).run()
    finally:
        if ours is not None:
            shutil.rmtree(ours, ignore_errors=True)


def exec_supervisor(
    host: str,
    port: int,
    workers: int,
    log_format: str,
    log_level: str,
    internal_port: int | None = None,
    drain_s: float = 0.0,
) -> None:
    """Replaces this process with the supervisor (does not return)."""
    argv = [sys.executable, "-m", "gateway.supervisor", host, str(port), str(workers)]
    argv += ["--log-format", log_format, "--log-level", log_level, "--drain-s", str(drain_s)]
    if internal_port is not None:
        argv += ["--internal-port", str(internal_port)]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, argv)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.supervisor")
    parser.add_argument("--worker", action="store_true", help="run one worker (internal)")
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("workers", type=int, nargs="?", default=1)
    parser.add_argument("--ready-fd", type=int, default=None, help="internal")
    parser.add_argument("--log-format", default="text")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--internal-port", type=int, default=None)
    parser.add_argument("--drain-s", type=float, default=0.0)
    args = parser.parse_args(argv)
    if args.worker:
        run_worker(args.host, args.port, args.ready_fd, args.internal_port, args.drain_s)
        return 0
    from gateway.logs import configure

    configure(args.log_format, args.log_level)
    return serve(args.host, args.port, args.workers, args.internal_port, args.drain_s)


if __name__ == "__main__":
    raise SystemExit(main())
