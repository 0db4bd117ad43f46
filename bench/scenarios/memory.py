"""Memory at the end of the load: the gateway's processes (RSS and PSS) and Redis."""

from typing import Any

from bench.setup import Rig, Server, log


def final_memory(rig: Rig, server: Server) -> dict[str, Any]:
    info: dict[str, Any] = rig.redis(0).info("memory")  # type: ignore[assignment]
    keyspace: dict[str, Any] = rig.redis(0).info("keyspace")  # type: ignore[assignment]
    result = {
        "gateway": server.child.memory(),
        "gateway_workers": server.workers,
        "redis_used_memory_mb": round(info["used_memory"] / 1024 / 1024, 1),
        "redis_used_memory_rss_mb": round(info["used_memory_rss"] / 1024 / 1024, 1),
        "redis_keys": {db: v.get("keys") for db, v in keyspace.items()},
    }
    log(
        f"memory: gateway RSS {result['gateway']['rss_mb']} MB "
        f"(PSS {result['gateway']['pss_mb']} MB), Redis {result['redis_used_memory_mb']} MB"
    )
    return result
