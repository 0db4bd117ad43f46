"""Subscriptions (scenario s): on the gateway of the open loop (production profile, the
best worker count, the persisted-query manifest) and the run's worker and Redis:

1. the fast path under wrk without subscribers (as scenario b);
2. `subscribers` subscriptions on as many WebSocket connections, from bench/subscribers.py
   in a process of its own: for each of `subscribers` / 2 directors, their dashboard
   (DashboardUpdates) and one cohort of their scope (CohortUpdates);
3. the gateway's memory with them connected and idle, against before: per subscription;
4. the fast path under wrk again, with them connected;
5. one full refresh cycle (`gateway refresh --all`, run by the worker): the rewrite notice
   is read off Redis by this process as it is published, and every subscriber's next
   update is timed from it: the delay from the rewrite (the cycle's notice, published when
   its subtrees and answers are in place) to the push reaching the client.
"""

import contextlib
import json
import statistics
import threading
import time
from typing import Any

import redis as redis_sync

from bench.scenarios.closed_loop import measure
from bench.setup import GATEWAY, Rig, Server, log
from tests.harness.processes import ROOT, ChildProcess
from tests.harness.waiting import wait_until

CYCLE_TIMEOUT_S = 600.0
READY_TIMEOUT_S = 600.0


class NoticeListener:
    """Every rewrite notice on the gateway's channel, with the time it arrived here."""

    def __init__(self, client: redis_sync.Redis, channel: str) -> None:
        self.client = client  # held: a collected client disconnects its pool, ours included
        self.pubsub = client.pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe(channel)
        self.notices: list[tuple[float, dict[str, Any]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="notices", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            message = self.pubsub.get_message(timeout=0.2)
            if message is not None and message["type"] == "message":
                self.notices.append((time.time(), json.loads(message["data"])))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.pubsub.close()
        self.client.close()


def plan(rig: Rig, count: int) -> dict[str, Any]:
    from gateway.documents.dashboard import dashboard_operations

    operations = dashboard_operations()
    workload = rig.workload
    directors = [d for d in workload.directors if workload.scopes[d]][: max(1, count // 2)]
    subscribers = []
    for director in directors:
        token = workload.tokens[director]
        subscribers.append({"token": token, "operation": "DashboardUpdates"})
        cohort = workload.scopes[director][0]
        subscribers.append(
            {"token": token, "operation": "CohortUpdates", "variables": {"id": cohort}}
        )
    return {
        "operations": {n: operations[n].sha256 for n in ("DashboardUpdates", "CohortUpdates")},
        "subscribers": subscribers[:count],
        "directors": len(directors),
    }


def subscriptions(rig: Rig, server: Server, count: int) -> dict[str, Any]:
    spec = plan(rig, count)
    (rig.work / "subscribers.json").write_text(json.dumps(spec))
    result: dict[str, Any] = {
        "subscribers": len(spec["subscribers"]),
        "directors": spec["directors"],
    }
    result["fast_path_without"] = measure(rig, server, "s0")
    before = server.child.memory()
    argv = [
        GATEWAY[0], "-m", "bench.subscribers", str(rig.work / "subscribers.json"),
        f"ws://127.0.0.1:{server.port}/graphql",
    ]  # fmt: skip
    generator = rig.start_child(
        ChildProcess("subscribers", argv, rig.env(), log_dir=rig.work, cwd=ROOT)
    )

    def lines() -> list[str]:
        return generator.log().splitlines()

    try:
        wait_until(
            lambda: any(x.startswith(("READY", "E ")) for x in lines()),
            "every subscriber's first update",
            timeout_s=READY_TIMEOUT_S,
            process=generator,
        )
        errors = [x for x in lines() if x.startswith("E ")]
        if errors:
            raise RuntimeError(f"{len(errors)} subscribers failed, e.g. {errors[:3]}")
        ready = next(x for x in lines() if x.startswith("READY"))
        result["connect_all_s"] = float(ready.split()[2])
        time.sleep(2.0)  # settle: the first results are sent, the initial reads collected
        idle = server.child.memory()
        grown_kb = (idle["rss_mb"] - before["rss_mb"]) * 1024
        result["memory"] = {
            "before_rss_mb": before["rss_mb"],
            "idle_rss_mb": idle["rss_mb"],
            "before_pss_mb": before["pss_mb"],
            "idle_pss_mb": idle["pss_mb"],
            "per_subscription_kb": round(grown_kb / len(spec["subscribers"]), 1),
        }
        log(f"subscriptions: {result['subscribers']} connected; memory {result['memory']}")

        result["fast_path_with"] = measure(rig, server, "s1")
        without = result["fast_path_without"]["throughput"]
        result["fast_path_ratio"] = round(result["fast_path_with"]["throughput"] / without, 3)

        listener = NoticeListener(rig.redis(0), rig.cache_keys().rewrites_channel())
        try:
            seen = len(lines())
            triggered = time.time()
            rig.run_child(
                "refresh-all", [*GATEWAY, "refresh", "--all"], env=rig.env(), timeout_s=60,
                cwd=rig.source,
            )  # fmt: skip

            def updated() -> bool:
                ids = {int(x.split()[1]) for x in lines()[seen:] if x.startswith("U ")}
                return len(ids) >= len(spec["subscribers"])

            with contextlib.suppress(AssertionError):  # the figures say who was not updated
                wait_until(
                    updated, "every subscriber's update", timeout_s=CYCLE_TIMEOUT_S,
                    process=generator,
                )  # fmt: skip
        finally:
            listener.close()
        result["cycle"] = delays(lines()[seen:], listener.notices, triggered, spec)
        log(f"subscriptions: one cycle: {result['cycle']}")
    finally:
        rig.stop_child(generator)
    return result


def delays(
    events: list[str],
    notices: list[tuple[float, dict[str, Any]]],
    triggered: float,
    spec: dict[str, Any],
) -> dict[str, Any]:
    """Each subscriber's first update after the cycle was asked for, timed from the latest
    notice received before it (the one whose push it is)."""
    from bench.results import percentile

    notice_times = sorted(t for t, _ in notices if t >= triggered)
    first: dict[int, float] = {}
    for line in events:
        if line.startswith("U "):
            _, index, at = line.split()
            first.setdefault(int(index), float(at))
    samples = []
    for at in first.values():
        causes = [t for t in notice_times if t <= at]
        if causes:
            samples.append(at - causes[-1])
    cycle_notice = next((n for t, n in notices if t >= triggered and n["cohorts"]), {})
    return {
        "expected": len(spec["subscribers"]),
        "updated": len(first),
        "notices": len(notice_times),
        "notice_cohorts": sum(len(ids) for ids in cycle_notice.get("cohorts", {}).values()),
        "notice_summaries": len(cycle_notice.get("summaries", [])),
        "trigger_to_notice_s": round(notice_times[0] - triggered, 2) if notice_times else None,
        "delay_p50_s": round(percentile(samples, 50), 3) if samples else None,
        "delay_p95_s": round(percentile(samples, 95), 3) if samples else None,
        "delay_max_s": round(max(samples), 3) if samples else None,
        "delay_mean_s": round(statistics.fmean(samples), 3) if samples else None,
    }
