"""An open-loop HTTP/1.1 load generator: requests leave at a fixed rate whatever the server does.

wrk is closed-loop (a connection sends its next request only after the previous answer),
so when the server stalls, wrk stops sending and the stall hides in few samples
("coordinated omission"). wrk2 fixes that but is not packaged for Debian. This generator:

- schedules request i at t0 + i / rate, on the event loop's monotonic clock;
- sends it on an idle keep-alive connection, or opens a new one when all are busy (up to
  --max-connections), so a slow answer never delays the requests scheduled after it;
- measures latency from the *scheduled* send time to the last byte of the answer, so any
  lateness of the generator itself (timer granularity, a busy core) counts against the
  server, never in its favour; the send lag (actual − scheduled) is reported to show it;
- counts every status and every socket error; requests still unanswered 10 s after the
  end count as timeouts.

Run on its own process (one core): `python -m bench.openloop --port … --requests FILE …`.
Writes a JSON report; with --samples, also the (scheduled offset, latency) of every request.
"""

import argparse
import asyncio
import contextlib
import gc
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httptools
import orjson

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is installed with uvicorn[standard]
    uvloop = None  # type: ignore[assignment]

DRAIN_TIMEOUT_S = 10.0
DEADLINE_GRACE_S = 5.0
IDLE_MAX_S = 2.0


def load_requests(path: Path, host: str, port: int) -> list[bytes]:
    """The wrk request file (`path?query<TAB>token` per line) as raw HTTP/1.1 requests."""
    out = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        target, token = line.split("\t")
        out.append(
            (
                f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                f"Authorization: Bearer {token}\r\n\r\n"
            ).encode()
        )
    if not out:
        raise SystemExit(f"no requests in {path}")
    return out


class Connection(asyncio.Protocol):
    """One keep-alive connection; one request in flight at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop, keep_body: bool = False) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[tuple[int, int]] | None = None
        self.body_bytes = 0
        self.keep_body = keep_body
        self.body: list[bytes] = []
        self.closed = False
        self.last_used = time.perf_counter()

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(exc or ConnectionResetError("connection closed by the server"))

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.body_bytes = 0
        self.body = []

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)
        if self.keep_body:
            self.body.append(body)

    def on_message_complete(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result((self.parser.get_status_code(), self.body_bytes))
        if not self.parser.should_keep_alive() and self.transport is not None:
            self.closed = True
            self.transport.close()

    def _fail(self, exc: BaseException) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)

    async def request(self, raw: bytes) -> tuple[int, int]:
        assert self.transport is not None
        self.waiter = self.loop.create_future()
        self.transport.write(raw)
        return await self.waiter

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def percentiles(values: list[float], qs: tuple[float, ...]) -> dict[str, float]:
    """Nearest-rank percentiles (ms) of values (seconds), exact on the recorded samples."""
    if not values:
        return {str(q): float("nan") for q in qs}
    ordered = sorted(values)
    out = {}
    for q in qs:
        rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))  # ceil(q% · n)
        out[_qkey(q)] = ordered[rank - 1] * 1000
    return out


def _qkey(q: float) -> str:
    return str(int(q)) if float(q).is_integer() else str(q)


QUANTILES = (50, 90, 95, 99, 99.9)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    # perf_counter, not loop.time(): uvloop's clock has millisecond resolution.
    now = time.perf_counter
    requests = load_requests(Path(args.requests), args.host, args.port)
    idle: list[Connection] = []
    opened = 0
    connect_errors = 0
    freed = asyncio.Event()

    async def connect() -> Connection:
        nonlocal opened
        _, conn = await loop.create_connection(lambda: Connection(loop), args.host, args.port)
        opened += 1
        return conn

    for _ in range(args.connections):
        idle.append(await connect())

    def take_idle() -> Connection | None:
        """The most recently used open connection. Ones idle for longer than IDLE_MAX_S are
        closed instead: the server may be closing them (uvicorn's keep-alive timeout is
        5 s), and a request written into that race would fail for the client's sake."""
        while idle:
            conn = idle.pop()
            if not conn.closed and now() - conn.last_used < IDLE_MAX_S:
                return conn
            conn.close()
        return None

    rate = float(args.rate)
    total = int(round(rate * (args.warmup + args.duration)))
    warm = int(round(rate * args.warmup))
    # Per request: scheduled offset, send lag, latency from schedule, status (or -1 error).
    sched = [0.0] * total
    lag = [float("nan")] * total
    latency = [float("nan")] * total
    status = [0] * total
    socket_errors: Counter[str] = Counter()
    inflight: set[asyncio.Task[None]] = set()
    busy = 0
    peak_busy = 0

    async def one(i: int, due: float, conn: Connection) -> None:
        nonlocal busy, peak_busy
        busy += 1
        peak_busy = max(peak_busy, busy)
        try:
            lag[i] = now() - due
            code, _ = await conn.request(requests[i % len(requests)])
            latency[i] = now() - due
            status[i] = code
        except Exception as exc:  # noqa: BLE001 - every failure is counted, by kind
            socket_errors[type(exc).__name__] += 1
            status[i] = -1
        finally:
            busy -= 1
            if conn.closed:
                conn.close()
            else:
                conn.last_used = now()
                idle.append(conn)
                freed.set()

    gc.collect()
    gc.freeze()
    gc.disable()
    t0 = now() + 0.05
    t0_wall = time.time() + (t0 - now())
    # Requests not sent within this bound count as errors (never an unbounded run).
    deadline = t0 + args.warmup + args.duration + DEADLINE_GRACE_S
    unsent = 0
    for i in range(total):
        due = t0 + i / rate
        sched[i] = due - t0
        delay = due - now()
        if delay > 0:
            await asyncio.sleep(delay)
        if now() > deadline:
            unsent = total - i  # the server fell so far behind that the run is cut short
            break
        conn: Connection | None = take_idle()
        while conn is None and now() <= deadline:
            if opened < args.max_connections:
                try:
                    conn = await connect()
                except OSError as exc:
                    connect_errors += 1
                    socket_errors[f"connect:{type(exc).__name__}"] += 1
                    break
            else:
                freed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(freed.wait(), max(0.0, deadline - now()))
                conn = take_idle()
        if conn is None:
            status[i] = -1
            continue
        task = loop.create_task(one(i, due, conn))
        inflight.add(task)
        task.add_done_callback(inflight.discard)
    end_sched = now()
    timeouts = 0
    if inflight:
        done, pending = await asyncio.wait(set(inflight), timeout=DRAIN_TIMEOUT_S)
        timeouts = len(pending)
        for task in pending:
            task.cancel()
    gc.enable()
    for conn in idle:
        conn.close()

    measured = range(warm, total)
    lat = [latency[i] for i in measured if status[i] > 0]
    lags = [lag[i] for i in measured if lag[i] == lag[i]]
    statuses = Counter(status[i] for i in measured)
    non_2xx = sum(n for code, n in statuses.items() if code > 0 and not 200 <= code < 300)
    errors = sum(n for code, n in statuses.items() if code == -1)
    unanswered = statuses.get(0, 0)  # never sent (cut short) or cancelled after the drain
    report: dict[str, Any] = {
        "rate_target": rate,
        "t0_wall": t0_wall,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "scheduled": len(measured),
        "completed": len(lat),
        "achieved_rate": len(lat) / args.duration if args.duration else 0.0,
        "schedule_span_s": end_sched - t0,
        "statuses": {str(k): v for k, v in sorted(statuses.items()) if k > 0},
        "non_2xx": non_2xx,
        "socket_errors": errors,
        # Scheduled but never answered: still in flight 10 s after the end, or never sent.
        "unanswered": unanswered,
        "socket_error_kinds": dict(socket_errors),
        "timeouts": timeouts,
        "latency_ms": {**percentiles(lat, QUANTILES), "max": max(lat) * 1000 if lat else 0.0},
        "send_lag_ms": {**percentiles(lags, (50, 99)), "max": max(lags) * 1000 if lags else 0.0},
        "unsent": unsent,
        "connections_opened": opened,
        "peak_in_flight": peak_busy,
    }
    report["_samples"] = [
        [round(sched[i], 6), round(latency[i] * 1000, 4) if status[i] > 0 else None]
        for i in measured
    ]
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--requests", required=True, help="wrk request file")
    parser.add_argument("--rate", type=float, default=1000.0, help="requests per second")
    parser.add_argument("--duration", type=float, default=30.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds sent, not measured")
    parser.add_argument("--connections", type=int, default=32, help="opened up front")
    parser.add_argument("--max-connections", type=int, default=1024)
    parser.add_argument("--out", required=True, help="JSON report")
    parser.add_argument("--samples", default=None, help="JSON [offset_s, latency_ms] per request")
    args = parser.parse_args(argv)
    started = time.time()
    runner = uvloop.run if uvloop is not None else asyncio.run
    report = runner(run(args))
    report["started_at"] = started
    samples = report.pop("_samples")
    if args.samples:
        Path(args.samples).write_bytes(orjson.dumps(samples))
    Path(args.out).write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
