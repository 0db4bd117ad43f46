"""BENCHMARKS.md from one run's results (bench/results/<timestamp>.json)."""

import math
from pathlib import Path
from typing import Any

from bench.scenarios import execution

ANALYSIS = Path(__file__).resolve().parent / "analysis.md"

NAMES = {
    "a": "(a) limit: bare Starlette + 1 Redis GET",
    "b": "(b) response fast path",
    "c": "(c) subtree cache + execution",
    "d": "(d) no cache (live from upstream)",
    "s0": "(s0) fast path, before the subscribers",
    "s1": "(s1) fast path, subscribers connected",
    "p": "(p) fast path, the same requests by POST (document text)",
    "z": "(z) fast path, `Accept-Encoding: gzip`",
    "xg": "(xg) fast path, admins' CohortList by GET",
    "xp": "(xp) fast path, admins' CohortList by POST",
}
FAST_ROWS = ("b", "p", "z", "xg", "xp")


def _ms(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.2f}" if value < 100 else f"{value:,.0f}"


def _pct(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{100 * value:.{digits}f} %"


def _num(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:,.{digits}f}"


def summary_table(results: dict[str, Any]) -> str:
    lines = [
        "| Scenario | Workers | Throughput (req/s) | p50 (ms) | p95 (ms) | p99 (ms) "
        "| Non-2xx | Socket errors | Cache hit rate | Upstream statements / request "
        "| Server CPU / request (µs) | Gateway RSS (MB) | Other load (cores) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    best = results.get("best_workers")
    for row in results.get("scenarios", []):
        scenario = row["scenario"]
        name = NAMES[scenario]
        if scenario in ("a", "b") and row["workers"] == best and len(_worker_counts(results)) > 1:
            name += " ✱"
        if scenario in FAST_ROWS:
            hit = _pct(row.get("response_hit_rate"))
        elif scenario == "c":
            hit = _pct(row.get("subtree_hit_rate")) + " (subtrees)"
        else:
            hit = "–"
        stmts = row.get("statements_per_request")
        rss = "–" if scenario == "a" else f"{row['memory']['rss_mb']:,.0f}"
        lines.append(
            f"| {name} | {row['workers']} | {row['throughput']:,.0f} | {_ms(row['p50_ms'])} "
            f"| {_ms(row['p95_ms'])} | {_ms(row['p99_ms'])} | {row['non_2xx']} "
            f"| {row['socket_errors']} | {hit} | {_num(stmts, 3) if stmts is not None else '–'} "
            f"| {row['server_cpu_us_per_request']:,.0f} | {rss} "
            f"| {row['cpu']['other_cores']:.2f} |"
        )
    ol = results.get("open_loop")
    if ol:
        lat = ol["latency_ms"]
        sent = ol["scheduled"] + ol["rate_target"] * ol["warmup_s"]
        stmts = ol["statements"] / max(1.0, sent)
        rss = (results.get("memory") or {}).get("gateway", {}).get("rss_mb", 0)
        lines.append(
            f"| (b) fast path, **open loop at {ol['rate_target']:,.0f} req/s** for "
            f"{ol['duration_s']:.0f} s | {ol['workers']} | {ol['achieved_rate']:,.0f} "
            f"| {_ms(lat['50'])} | {_ms(lat['95'])} | {_ms(lat['99'])} | {ol['non_2xx']} "
            f"| {ol['socket_errors'] + ol['unanswered']} | {_pct(ol.get('response_hit_rate'))} "
            f"| {_num(stmts, 3)} | – | {rss:,.0f} | {ol['cpu']['other_cores']:.2f} |"
        )
    return "\n".join(lines)


def _worker_counts(results: dict[str, Any]) -> list[int]:
    return sorted({r["workers"] for r in results.get("scenarios", [])})


def ratios(results: dict[str, Any]) -> list[str]:
    out = []
    rows = results.get("scenarios", [])
    for workers in _worker_counts(results):
        a = next((r for r in rows if r["scenario"] == "a" and r["workers"] == workers), None)
        b = next((r for r in rows if r["scenario"] == "b" and r["workers"] == workers), None)
        if a and b and a["throughput"]:
            out.append(
                f"(b)/(a) with {workers} worker{'s' if workers > 1 else ''}: "
                f"**{b['throughput'] / a['throughput']:.2f}** "
                f"({b['throughput']:,.0f} / {a['throughput']:,.0f} req/s)"
            )
    return out


def variant_lines(results: dict[str, Any]) -> list[str]:
    """POST against GET, gzip against plain, from the same server in adjacent windows."""
    rows = {r["scenario"]: r for r in results.get("scenarios", []) if r["scenario"] != "b"}
    last = max(_worker_counts(results), default=None)
    base = next(
        (r for r in results.get("scenarios", []) if r["scenario"] == "b" and r["workers"] == last),
        None,
    )
    out = []
    for name, over, under, what in [
        ("p", "p", base, "POST (document text) / persisted GET, the load's mix"),
        ("z", "z", base, "gzip / plain, the load's mix"),
        ("xp", "xp", rows.get("xg"), "POST / persisted GET, the admins' CohortList"),
    ]:
        row = rows.get(over)
        if row is None or under is None or not under["throughput"]:
            continue
        out.append(
            f"({name}) {what}: **{row['throughput'] / under['throughput']:.2f}** "
            f"({row['throughput']:,.0f} / {under['throughput']:,.0f} req/s; server CPU "
            f"{row['server_cpu_us_per_request']:,.0f} / {under['server_cpu_us_per_request']:,.0f}"
            f" µs per request; {row.get('bytes_per_request', 0):,} / "
            f"{under.get('bytes_per_request', 0):,} bytes read per answer)"
        )
    return out


def targets_table(results: dict[str, Any]) -> str:
    lines = ["| Target | Goal | Measured | Met | Margin |", "|---|---:|---:|:---:|---:|"]
    for t in results.get("evaluation", []):
        value = t["value"]
        unit = t["unit"]
        if value is None:
            shown = "not measured"
        elif t["target"].startswith("hit rate"):
            shown = _pct(value, 3)
        elif unit == "×":
            shown = f"{value:.2f} ×"
        elif unit == "errors":
            shown = f"{value}"
        else:
            shown = f"{_num(value)} {unit}"
        goal = t["goal"]
        goal_shown = (
            _pct(goal, 1) if t["target"].startswith("hit rate")
            else f"{goal} {unit}".strip()
        )  # fmt: skip
        margin = t.get("margin_pct")
        if margin is None:
            margin_shown = "–"
        elif t["target"].startswith("hit rate"):
            margin_shown = f"{100 * (value - goal):+.2f} points"
        elif margin >= 100 and goal:
            margin_shown = f"{value / goal:,.0f} × the goal"
        else:
            margin_shown = f"{margin:+.1f} %"
        note = f" ({t['note']})" if t.get("note") else ""
        lines.append(
            f"| {t['target']}{note} | {goal_shown} | {shown} | {'✅' if t['met'] else '❌'} "
            f"| {margin_shown} |"
        )
    return "\n".join(lines)


def _profile_section(title: str, prof: dict[str, Any]) -> list[str]:
    if not prof or "error" in prof:
        return [f"**{title}**: {prof.get('error', 'not run') if prof else 'not run'}", ""]
    out = [
        f"**{title}** — {prof.get('what', '')}; {prof['samples']:,} CPU samples.",
        "",
        "Self time by package (innermost Python frame): "
        + ", ".join(f"{name} {pct} %" for name, pct in prof["package_self_pct"][:10])
        + ".",
        "",
        "| Function (self) | % of CPU samples |",
        "|---|---:|",
    ]
    out += [f"| `{name}` | {pct} |" for name, pct in prof["self_pct"][:12]]
    out += ["", "| Function (inclusive) | % of CPU samples |", "|---|---:|"]
    out += [f"| `{name}` | {pct} |" for name, pct in prof["inclusive_pct"][:18]]
    out.append("")
    return out


def render(results: dict[str, Any], results_path: Path) -> str:
    m = results["machine"]
    cfg = results["config"]
    pre = results.get("prewarm", {})
    cold = results.get("cold_detail") or {}
    mem = results.get("memory") or {}
    ol = results.get("open_loop") or {}
    hit = results.get("hit_rate") or {}
    first = results.get("first_visits") or {}
    rev = results.get("revision") or {}
    load = results.get("load") or {}
    lines = [
        "# Benchmarks",
        "",
        "Generated by `make bench` (bench/run.py) — do not edit by hand; the analysis comes "
        "from bench/analysis.md.",
        "",
        f"- **Date**: {results['started_at']} (UTC), {results['total_seconds']:.0f} s in all",
        f"- **Command**: `{results['command']}`",
        f"- **Machine**: {m['nproc']} cores, {m['cpu_model']}, {m['memory_gb']} GB RAM, "
        f"{m['os']}, Linux {m['kernel']}, Python {m['python']}",
        f"- **Code**: commit {rev.get('commit', '?')}"
        + (
            f" with uncommitted changes in {len(rev['modified_files'])} files"
            if rev.get("modified_files")
            else ""
        ),
        *(
            [
                "- **Warning**: the gateway's code changed while the benchmark ran (other "
                "people's edits); scenarios started later ran the newer code."
            ]
            if rev.get("code_at_start") and rev.get("code_at_start") != rev.get("code_at_end")
            else []
        ),
        *(
            [f"- **Source tree**: `{rev['source']}` (not this work tree)"]
            if rev.get("source") and Path(rev["source"]) != Path(__file__).resolve().parents[1]
            else []
        ),
        f"- **Raw results**: `{_relative(results_path)}` (gitignored)",
        "",
        "## Results",
        "",
        f"Closed loop (wrk, {cfg['connections']} connections, {cfg['threads']} thread, "
        f"{cfg['warmup']:.0f} s warm-up then {cfg['duration']:.0f} s measured per row); the last "
        f"row is open loop (bench/openloop.py, {ol.get('duration_s', 0):.0f} s measured after "
        f"{ol.get('warmup_s', 0):.0f} s). Latency in ms. ✱ = worker count with the best fast-path "
        "throughput, used for (c), (d) and the open-loop row.",
        "",
        summary_table(results),
        "",
        *[f"- {line}" for line in ratios(results)],
        *[f"- {line}" for line in variant_lines(results)],
        "",
        "## Targets",
        "",
        targets_table(results),
        "",
        "## Other measurements",
        "",
    ]
    for label, name in (("sqlite", "SQLite"), ("postgres", "PostgreSQL")):
        p = pre.get(label)
        if not p:
            continue
        runs = ", ".join(
            f"{r['total_s']:.1f}" + ("" if r.get("clean", True) else "†") for r in p["runs"]
        )
        lines.append(
            f"- **Full prewarm on {name}** (`gateway refresh --all --sync`: every cohort "
            f"subtree, every director's summary, then the DirectorSummary and CohortList answers "
            f"of every director and admin): median **{p['median_total_s']:.1f} s** = subtrees "
            f"{p['median_subtrees_s']:.1f} s + answers {p['median_responses_s']:.1f} s "
            f"(runs: {runs} s; † = other processes used the CPU, left out of the median)"
            + (f"; seeding {name} took {p['seed_s']:.0f} s" if p.get("seed_s") else "")
            + "."
        )
    if cold:
        lines.append(
            f"- **Cold cohort detail** ({cold['samples']} sequential requests, each for a "
            f"cohort whose subtree and answer were just deleted; {cold['response_misses']:.0f} "
            f"answer misses and {cold['cohort_misses']:.0f} subtree misses counted): p50 "
            f"{_ms(cold['p50_ms'])} ms, **p95 {_ms(cold['p95_ms'])} ms**, p99 "
            f"{_ms(cold['p99_ms'])} ms, max {_ms(cold['max_ms'])} ms; "
            f"{cold['statements_per_request']:.1f} upstream statements each."
        )
    live = results.get("subscriptions")
    if live:
        cycle, memory = live["cycle"], live["memory"]
        lines.append(
            f"- **Subscriptions** (bench/scenarios/subscriptions.py): {live['subscribers']:,} "
            f"WebSocket subscribers, a dashboard and a cohort for each of {live['directors']} "
            f"directors, connected in {live['connect_all_s']:.1f} s. Idle, the gateway grew from "
            f"{memory['before_rss_mb']:.0f} to {memory['idle_rss_mb']:.0f} MB RSS (PSS "
            f"{memory['before_pss_mb']:.0f} to {memory['idle_pss_mb']:.0f} MB): "
            f"**{memory['per_subscription_kb']:.1f} KB per subscription**. Fast path "
            f"{live['fast_path_without']['throughput']:,.0f} req/s without them, "
            f"{live['fast_path_with']['throughput']:,.0f} with them (**"
            f"{live['fast_path_ratio']:.2f} ×**). One full cycle (`gateway refresh --all`): its "
            f"notice ({cycle['notice_cohorts']:,} cohorts, {cycle['notice_summaries']} summaries) "
            f"came {cycle['trigger_to_notice_s']} s after the request, at the cycle's end; "
            f"**{cycle['updated']:,} of {cycle['expected']:,}** subscribers updated, delay from "
            f"the notice to the update at the client p50 {cycle['delay_p50_s']} s, **p95 "
            f"{cycle['delay_p95_s']} s**, max {cycle['delay_max_s']} s."
        )
    if hit:
        r = hit["response"]
        lines.append(
            f"- **Cache hit rate over the run** (response fast path, every measured fast-path "
            f"window: {', '.join(_window_name(w) for w in hit['windows'])}): "
            f"**{_pct(hit['rate'], 3)}** — {r.get('hit', 0):,.0f} hits, {r.get('miss', 0):,.0f} "
            f"misses, {r.get('stale', 0):,.0f} stale, {r.get('error', 0):,.0f} errors."
        )
    if first:
        fr = first["response_cache"]
        lines.append(
            f"- **First visits** (before the measured windows, every one of the "
            f"{first['requests']:,} distinct requests of the load file once): "
            f"{fr['hit']:,.0f} answered from the prewarm, {fr['miss']:,.0f} first CohortDetail "
            f"visits executed and stored, in {first['seconds']:.1f} s."
        )
    if mem:
        g = mem["gateway"]
        per = ", ".join(f"{p['rss_mb']:.0f}" for p in g["processes"])
        lines.append(
            f"- **Memory at the end**: gateway RSS **{g['rss_mb']:.0f} MB** summed over its "
            f"{len(g['processes'])} processes ({per} MB; PSS sum {g['pss_mb']:.0f} MB); Redis "
            f"used_memory **{mem['redis_used_memory_mb']:.1f} MB** (RSS "
            f"{mem['redis_used_memory_rss_mb']:.1f} MB), keys {mem['redis_keys']}."
        )
        serving = [
            p for p in g["processes"] if "spawn_main" in p["cmd"] or "--worker" in p["cmd"]
        ] or g["processes"]
        uv = bool(serving) and all(p["uvloop"] and p["httptools"] for p in serving)
        lines.append(
            f"- **Server**: `gateway serve --workers N`; uvloop and httptools loaded in every "
            f"worker process: {'yes' if uv else 'NO'} (checked in /proc/<pid>/maps)."
        )
    cycles = results.get("refresh_cycles") or []
    if cycles:
        lines.append(
            "- **Worker refresh cycles during the load** (arq cron, every "
            f"{cfg['refresh_interval']:.0f} s): "
            + "; ".join(
                f"{c['started_at'][11:19]} UTC, {c['total_s']:.1f} s "
                f"(subtrees {c['subtrees_s']:.1f} s"
                + (f", answers {c['responses_s']:.1f} s)" if c["responses_s"] is not None else ")")
                for c in cycles
            )
            + "."
        )
    if ol:
        lines.append(
            f"- **Open-loop generator health**: {ol['scheduled']:,} requests scheduled, "
            f"{ol['completed']:,} answered; send lag (actual − scheduled) p50 "
            f"{ol['send_lag_ms']['50']:.2f} ms, p99 {ol['send_lag_ms']['99']:.2f} ms, max "
            f"{ol['send_lag_ms']['max']:.2f} ms; {ol['connections_opened']} connections, at most "
            f"{ol['peak_in_flight']} requests in flight; p99.9 {_ms(ol['latency_ms']['99.9'])} ms, "
            f"max {_ms(ol['latency_ms']['max'])} ms."
        )
        split = ol.get("by_time") or {}
        parts = []
        for key, label in (
            ("before_stale", "before the last cycle's entries turned stale"),
            ("from_stale", f"from that moment ({(split.get('stale_at') or '')[11:19]} UTC) on"),
            ("during_cycles", "while a worker refresh cycle ran"),
        ):
            part = split.get(key)
            if part:
                parts.append(
                    f"{label} ({part['count']:,} requests): p50 {_ms(part['p50_ms'])}, p95 "
                    f"{_ms(part['p95_ms'])}, p99 {_ms(part['p99_ms'])}, "
                    f"max {_ms(part['max_ms'])} ms"
                )
        if parts:
            lines.append("- **Open loop over time**: " + "; ".join(parts) + ".")
    lines.append(
        f"- **Load**: {load.get('directors', 0)} directors, {load.get('requests_in_file', 0):,} "
        f"requests in the file cycled through ({load.get('distinct_requests', 0):,} distinct), "
        f"mix {load.get('mix', {})}; director scopes hold "
        f"{results.get('directors', {}).get('scope_cohorts_min', '?')}–"
        f"{results.get('directors', {}).get('scope_cohorts_max', '?')} cohorts (median "
        f"{results.get('directors', {}).get('scope_cohorts_median', '?')})."
    )
    lines += cycles_lines(results.get("cycles"))
    lines += execution.report_lines(results.get("execution"))
    lines += ["", "## Profiles", ""]
    profiles = results.get("profiles") or {}
    if profiles.get("fast_path"):
        lines += _profile_section("Fast path under load", profiles["fast_path"])
    for label, name in (("sqlite", "SQLite"), ("postgres", "PostgreSQL")):
        if pre.get(label, {}).get("profile"):
            lines += _profile_section(f"Full prewarm on {name}", pre[label]["profile"])
    if not profiles and not any(pre.get(x, {}).get("profile") for x in ("sqlite", "postgres")):
        lines += ["(profiling off)", ""]
    lines += ["## Method", "", METHOD.format(**cfg).strip(), ""]
    if ANALYSIS.exists():
        lines += ["## Analysis", "", ANALYSIS.read_text().strip(), ""]
    return "\n".join(lines) + "\n"


def _window_name(w: dict[str, Any]) -> str:
    name = "open loop" if w["scenario"] == "open-loop" else f"({w['scenario']})"
    extra = (
        f", {w['refresh_cycles_overlapping']} refresh cycle(s) overlapping"
        if w["refresh_cycles_overlapping"]
        else ""
    )
    return f"{name} {w['workers']}w {_pct(w['hit_rate'], 3)}{extra}"


def _relative(path: Path) -> str:
    try:
        return str(path.relative_to(Path(__file__).resolve().parent.parent))
    except ValueError:
        return str(path)


METHOD = """
One process, `bench/run.py`, does everything on this machine, in this order:

1. **Data.** The `{scale}` scale (`gateway seed --scale {scale}`) in `{database}`, seeded only
   when the file is missing or does not hold the scale's directors and cohorts. A private
   `redis-server` (no persistence) on a free port; the trusted-documents manifest from
   `gateway manifest build`; one HS256 token per director (`gateway.auth.mint_token`).
2. **Prewarm timings.** `gateway refresh --all --sync` {prewarm_runs}× on SQLite and {prewarm_runs}×
   on a private PostgreSQL (tests/harness/servers.py `PostgresServer`: initdb, `fsync=off`, seeded
   with the same scale); the figures are the times the command prints (its own start-up
   excluded), medians quoted. The last SQLite run leaves the cache warm for the load; then
   `gateway worker` (arq) starts and keeps refreshing every {refresh_interval:.0f} s as in
   production.
3. **Servers.** The gateway is `gateway serve --workers N` (uvicorn, uvloop, httptools, no
   access log) with `GATEWAY_ENV=production`, Redis, the manifest, and for (c)
   `GATEWAY_RESPONSE_CACHE_ENABLED=false`, for (d) `GATEWAY_CACHE_ENABLED=false`. The limit
   (a) is `bench/limit_app.py`, a bare Starlette route doing one Redis GET (redis-py +
   hiredis, as the gateway) of the stored answer keyed by Authorization header + query
   string, served by uvicorn with the same loop, parser and worker count. Each scenario gets
   a freshly started server.
4. **Load.** `wrk -t{threads} -c{connections} --timeout 30s -s bench/requests.lua`: a file of
   {requests} persisted GETs (`operationName`, `variables`, `extensions.persistedQuery`, as
   Apollo Client sends them), each with its own director's bearer token, directors in a
   shuffled round robin over all of them, the operation drawn with weights {mix}, CohortDetail
   ids drawn from that director's scope (SQL over track_directors ⋈ cohorts). Each wrk
   thread pre-formats every request once and cycles through them. Before the first window,
   every distinct request is sent once (the first visit of each page): CohortDetail answers,
   which the prewarm does not cover, get stored, and the answer bytes are copied for the
   limit app. Then per scenario: {warmup:.0f} s warm-up (discarded), {duration:.0f} s measured.
   Worker counts {workers} are measured for (a) and (b); the best fast-path one runs the rest.
   On the fast-path server of the last worker count, right after its (b) window: (p) the
   same requests as POSTs of the document's text (`query`, `operationName`, `variables`, as
   urql and graphql-request send them); (z) the same GETs with `Accept-Encoding: gzip`; (xg)
   and (xp) the admins' first CohortList page by persisted GET and by POST of its text.
   No closed-loop window shares the cores with a refresh cycle of the bench's own worker:
   each starts once no cycle holds the lease and the next cron boundary lies beyond it.
   wrk is closed loop: its latencies are those of a saturated server with
   {connections} requests in flight, and wrk counts statuses ≥ 400 as errors (no request sends
   If-None-Match, so no 304s can occur); socket errors are connect + read + write + timeout.
5. **Open loop.** wrk2 is not packaged here and autocannon's rate mode still waits for
   answers, so `bench/openloop.py` (Python, uvloop, httptools, its own process) sends request
   *i* at t0 + i/{rate:.0f} s on an idle keep-alive connection, opening another when all are
   busy (never waiting for an answer before sending), and measures each latency from the
   *scheduled* send time to the last byte: no coordinated omission, and any lateness of the
   generator itself counts against the server (its send lag is reported). {open_loop_warmup:.0f} s
   warm-up, {open_loop_duration:.0f} s measured, every status and socket error counted.
6. **Counters.** The gateway's Prometheus counters (`gateway_cache_requests_total`,
   `gateway_upstream_statements_total`) are read before and after each window. With several
   uvicorn workers a `/metrics` scrape shows one process only, so the gateway runs with
   `PROMETHEUS_MULTIPROC_DIR` and the harness sums the per-process files
   (prometheus-client's MultiProcessCollector). Hit rate = hits / all look-ups of the
   response cache over every measured fast-path window (first visits excluded, refresh cycles
   included). Statements per request = statement delta / requests answered in the window.
7. **Cold cohort detail.** {cold_samples} sequential CohortDetail requests on an otherwise idle
   gateway, each for a different cohort whose subtree and stored answer were deleted just
   before (so: answer miss, subtree miss, live computation, store), timed at the client.
8. **Memory.** RSS (and PSS) of every process of the gateway (uvicorn supervisor + workers)
   from /proc at the end; Redis `INFO memory` used_memory after the limit's copies are
   dropped.
9. **Profiles.** py-spy (`--nonblocking`, 250 Hz) on the fast path's workers for
   {profile_seconds:.0f} s under wrk load after the measured windows, and on an extra prewarm
   run whenever a prewarm misses its target.
"""


def main(argv: list[str] | None = None) -> int:
    """Re-render BENCHMARKS.md from a results file (e.g. after editing bench/analysis.md)."""
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m bench.report", description=main.__doc__)
    parser.add_argument("results", type=Path, help="bench/results/<timestamp>.json")
    parser.add_argument("--output", type=Path, default=Path("BENCHMARKS.md"))
    args = parser.parse_args(argv)
    args.output.write_text(render(json.loads(args.results.read_text()), args.results.resolve()))
    print(f"wrote {args.output}")
    return 0


def cycles_lines(found: dict[str, Any] | None) -> list[str]:
    """The refresh side (bench/cycles.py): per-cohort cost, and 1 vs 2 workers."""
    if not found:
        return []
    cost, out = found["per_cohort_cost"], found["scale_out"]
    old = ", ".join(f"{r['wall_s']:.1f}" for r in cost["runs"]["baseline"])
    new = ", ".join(f"{r['wall_s']:.1f}" for r in cost["runs"]["this_tree"])
    one = ", ".join(f"{r['cycle_s']:.1f}" for r in out["runs"]["1"])
    two = ", ".join(f"{r['cycle_s']:.1f}" for r in out["runs"]["2"])
    return [
        f"- **Subtree phase against {cost['baseline']}** (bench/subtree_phase.py on the same "
        f"PostgreSQL, {cost['cohorts']:,} cohorts, alternately): median "
        f"**{cost['median_s']:.1f} s** vs {cost['median_baseline_s']:.1f} s, ratio "
        f"**{cost['ratio']:.2f}** (target ≤ {cost['target_ratio']:.2f}; runs {new} vs {old} s); "
        f"CPU per cohort {cost['median_cpu_ms_per_cohort']['this_tree']} ms vs "
        f"{cost['median_cpu_ms_per_cohort']['baseline']} ms.",
        f"- **Refresh cycle, 1 vs 2 workers** (`gateway worker` processes, the whole cycle as "
        f"its coordinator logs it, alternately): median **{out['median_1_worker_s']:.1f} s** "
        f"with 1, **{out['median_2_workers_s']:.1f} s** with 2, ratio **{out['ratio']:.2f}** "
        f"(target ≤ {out['target_ratio']:.2f}; runs {one} and {two} s).",
    ]


if __name__ == "__main__":
    raise SystemExit(main())
