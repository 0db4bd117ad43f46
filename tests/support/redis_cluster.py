"""A real Redis Cluster on loopback for tests: three masters (`redis-server
--cluster-enabled yes`), slots assigned by `redis-cli --cluster create`, no replicas.

Each node is a child process with its files in a temporary directory removed on stop; the
cluster bus ports are chosen free as well (`--cluster-port`)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import redis

from tests.harness.processes import HOST, ServerError, free_port
from tests.harness.waiting import CEILING_S, POLL_S


class RedisClusterServer:
    def __init__(self, masters: int = 3) -> None:
        for binary in ("redis-server", "redis-cli"):
            if shutil.which(binary) is None:
                raise ServerError(f"{binary} not found on PATH; install the redis-server package")
        self.masters = masters
        self.ports: list[int] = []
        self._processes: list[subprocess.Popen[bytes]] = []
        self._dir: Path | None = None

    @property
    def url(self) -> str:
        """One node's URL: the cluster client discovers the others from it."""
        return f"redis://{HOST}:{self.ports[0]}/0"

    def node(self, port: int) -> redis.Redis:
        return redis.Redis(host=HOST, port=port, socket_connect_timeout=1.0)

    def start(self) -> Self:
        self._dir = Path(tempfile.mkdtemp(prefix="gateway-redis-cluster-"))
        taken: set[int] = set()
        for n in range(self.masters):
            port, bus = self._free_pair(taken)
            node_dir = self._dir / str(n)
            node_dir.mkdir()
            self.ports.append(port)
            self._processes.append(
                subprocess.Popen(
                    [
                        "redis-server",
                        "--port",
                        str(port),
                        "--cluster-port",
                        str(bus),
                        "--bind",
                        HOST,
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        str(node_dir / "nodes.conf"),
                        "--cluster-node-timeout",
                        "5000",
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--dir",
                        str(node_dir),
                        "--logfile",
                        str(node_dir / "redis.log"),
                    ],  # fmt: skip
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        try:
            for port in self.ports:
                self._wait(lambda port=port: self._ping(port), f"node {port} to start")
            created = subprocess.run(
                [
                    "redis-cli",
                    "--cluster",
                    "create",
                    *[f"{HOST}:{p}" for p in self.ports],
                    "--cluster-replicas",
                    "0",
                    "--cluster-yes",
                ],  # fmt: skip
                capture_output=True,
                text=True,
                timeout=CEILING_S,
                check=False,
            )
            if created.returncode != 0:
                raise ServerError(f"redis-cli --cluster create failed:\n{created.stdout}")
            self._wait(self._cluster_ok, "cluster_state:ok on every node")
        except BaseException:
            self.stop()
            raise
        return self

    def slots(self) -> dict[int, list[tuple[int, int]]]:
        """port → the slot ranges it serves."""
        with self.node(self.ports[0]) as client:
            ranges = client.execute_command("CLUSTER SLOTS")
        out: dict[int, list[tuple[int, int]]] = {p: [] for p in self.ports}
        for start, end, master, *_ in ranges:
            out[int(master[1])].append((int(start), int(end)))
        return out

    def flushall(self) -> None:
        for port in self.ports:
            with self.node(port) as client:
                client.flushall()

    def dbsize(self) -> dict[int, int]:
        out = {}
        for port in self.ports:
            with self.node(port) as client:
                out[port] = int(client.dbsize())
        return out

    def stop(self) -> None:
        for process in self._processes:
            if process.poll() is None:
                process.terminate()
        for process in self._processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._processes = []
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def _free_pair(self, taken: set[int]) -> tuple[int, int]:
        while True:
            port, bus = free_port(), free_port()
            if len({port, bus} | taken) == len(taken) + 2:
                taken.update((port, bus))
                return port, bus

    def _ping(self, port: int) -> bool:
        try:
            with self.node(port) as client:
                return bool(client.ping())
        except redis.RedisError:
            return False

    def _cluster_ok(self) -> bool:
        for port in self.ports:
            try:
                with self.node(port) as client:
                    info = client.execute_command("CLUSTER INFO")  # parsed into a dict
            except redis.RedisError:
                return False
            if info.get("cluster_state") != "ok":
                return False
        return True

    def _wait(self, ready: object, what: str) -> None:
        deadline = time.monotonic() + CEILING_S
        while not ready():  # type: ignore[operator]
            if any(p.poll() is not None for p in self._processes):
                raise ServerError(f"a redis cluster node exited while waiting for {what}")
            if time.monotonic() > deadline:
                raise ServerError(f"timed out waiting for {what}")
            time.sleep(POLL_S)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
