"""`python -m tests.reliability.report`: the headline figures of the last `make reliability`
run, from tests/reliability/results/*.json, as Markdown (printed and written to
results/summary.md)."""

from __future__ import annotations

import json
import sys
from typing import Any

from tests.reliability.harness import RESULTS_DIR


def load(name: str) -> dict[str, Any] | None:
    path = RESULTS_DIR / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def rows() -> list[tuple[str, str, str]]:
    out: list[tuple[str, str, str]] = []

    def add(area: str, figure: str, value: object) -> None:
        out.append((area, figure, str(value)))

    if m := load("isolation_matrix"):
        add("isolation", "probes judged (requests sent)", f"{m['probes_judged']} ({m['requests']})")
        add("isolation", "leaks", m["leaks"])
        add(
            "isolation",
            "ordered pair × page × transport × state cells covered",
            f"{m['ordered_pair_page_transport_state_cells_covered']}"
            f" / {m['ordered_pair_page_transport_state_cells_expected']}",
        )
        add(
            "isolation",
            "revalidations with another caller's ETag (304s)",
            f"{m['etag_probes_with_another_callers_etag']} (0 expected)",
        )
        add(
            "isolation",
            "NOT_FOUND variants per transport",
            m["not_found_answer_variants_per_transport"],
        )
    if s := load("isolation_scope_change"):
        for r in s["rounds"]:
            add(
                "isolation",
                f"track {s['track']} handed {r['from']}→{r['to']}: "
                "leaks, lost/gained, webhook→refreshed",
                f"{r['leaks']}, {r['lost_access_confirmed']}/{r['gained_access_confirmed']} of "
                f"{r['expected_each']}, {r['webhook_to_refreshed_s']} s",
            )
    if r := load("isolation_refresh_race"):
        add(
            "isolation",
            "stale answers outliving a refresh (race, bug 1)",
            f"{r['stale_answers_after_refresh']} in {r['rounds_with_stale_answers']}/{r['rounds']} "
            f"rounds, up to {r['longest_remaining_stale_ttl_s']} s more",
        )
    if s := load("subscriptions_webhook_push"):
        add(
            "subscriptions",
            f"signed webhook → graphql-ws update, {s['rounds']} rounds (p50 / p95 / max)",
            f"{s['p50_s']} / {s['p95_s']} / {s['max_s']} s (bound {s['bound_s']} s)",
        )
    if f := load("fault_redis_restart"):
        add(
            "faults",
            "Redis killed: 5xx / transport errors / requests",
            f"{f['all']['http_5xx']} / {f['all']['transport_errors']} / {f['all']['requests']}",
        )
        add(
            "faults",
            "Redis down: answers served live (p95)",
            f"{f['answers_served_live_while_down']} ({f['while_down']['p95_ms']} ms)",
        )
        add(
            "faults",
            "response hit rate recovered after restart in",
            f"{f['seconds_to_recover_hit_rate_after_restart']} s",
        )
    if f := load("fault_upstream_unavailable"):
        add(
            "faults",
            "billing down: requests, 5xx, UPSTREAM_UNAVAILABLE answers",
            f"{f['load']['requests']}, {f['load']['http_5xx']}, "
            f"{f['load']['error_codes'].get('UPSTREAM_UNAVAILABLE', 0)}",
        )
        add(
            "faults",
            "billing down: cohorts stale-from-cache / null (nothing cached)",
            f"{f['detail_checks']['stale_payments']} / {f['detail_checks']['null_payments']}",
        )
        add(
            "faults",
            "billing down: summaries marked / unmarked (bug 2)",
            f"{f['summaries_marked']} / {f['summaries_unmarked']}",
        )
    if f := load("fault_worker_sigkill"):
        for t in f["trials"]:
            add(
                "faults",
                f"worker SIGKILL at {t['phase_at_kill']}: partial entries, next cycle",
                f"{len(t['partial_entries_at_kill'])}, done in {t['kill_to_next_cycle_done_s']} s, "
                f"{len(t['directors_unrefreshed'])} directors unrefreshed",
            )
    if f := load("fault_gateway_restart"):
        add(
            "faults",
            "SIGTERM restart: in flight / drained 200 / closed unanswered",
            f"{f['in_flight_at_sigterm']} / {f['in_flight_completed_200']} / "
            f"{f['in_flight_connection_closed']}",
        )
        add(
            "faults",
            "SIGTERM restart: 5xx, drain, unavailable",
            f"{f['all']['http_5xx']}, {f['drain_s']} s, {f['unavailable_s']} s "
            f"(errors {f['errors_by_kind']})",
        )
    if z := load("fuzz"):
        add(
            "bad input",
            "fuzz requests / 5xx / INTERNAL_SERVER_ERROR",
            f"{z['requests']} / {z['http_5xx']} / {z['internal_server_errors']}",
        )
        add("bad input", "fuzz codes seen", ", ".join(z["codes_seen"]))
    if c := load("bad_input_cancelled_sibling"):
        add(
            "bad input",
            "a failing field cancelling its siblings (bug 3): answers",
            ", ".join(f"{k}: {v}" for k, v in c["outcomes"].items()),
        )
    if c := load("bad_input_corpus"):
        add("bad input", "corpus cases as expected", f"{c['as_expected']} / {c['cases']}")
        add(
            "bad input",
            "Redis keys changed, SQLite checksum changed",
            f"{len(c['redis_keys_changed'])}, "
            f"{c['sqlite_checksum_before'] != c['sqlite_checksum_after']}",
        )
    if d := load("documents_cpu"):
        add(
            "documents",
            "pathological documents: code as expected",
            f"{d['as_expected']} / {d['documents']}",
        )
        w = d["worst_decision"]
        add(
            "documents",
            f"worst CPU to accept or refuse, median of {d['runs_per_document']} (bound)",
            f"{w['median']} ms, {w['case']} ({d['bound_ms']:.0f} ms)",
        )
        add("documents", "largest single run", f"{d['largest_single_run_ms']} ms")
        r = d["worst_refused_request"]
        add("documents", "worst refused request, whole", f"{r['median']} ms, {r['case']}")
        add("documents", "the same document again (cached)", f"≤ {d['again_from_cache_ms_max']} ms")
    if m := load("identity_matrix"):
        add("identity", "cells judged (user × claim, token rules, table changes)", m["cells"])
        add(
            "identity",
            "served when it should be refused / refused when it should be served / other",
            f"{m['served_when_it_should_be_refused']} / {m['refused_when_it_should_be_served']}"
            f" / {m['other_answers']}",
        )
        add(
            "identity",
            "demotion, deletion, admin demotion: event → refreshed",
            f"{m['demotion_event_to_refreshed_s']} s, {m['deletion_event_to_refreshed_s']} s, "
            f"{m['admin_demotion_event_to_refreshed_s']} s",
        )
    if f := load("bounds_amplification_flood"):
        before, after = f["cycle_before"], f["cycle_after"]
        add(
            "bounds",
            f"{f['flood_requests']} distinct-variable GETs from one director: answers kept",
            f"{f['answers_kept_by_the_flooder']} (cap {f['cap_per_caller']})",
        )
        add(
            "bounds",
            "cycle before → after the flood (time on remembered answers, its cap)",
            f"{before['cycle_s']} → {after['cycle_s']} s ({after['remembered_s']} s of "
            f"{f['remembered_cap_s']:.0f} s; {after['rebuilt']} rebuilt, "
            f"{after['dropped']} dropped)",
        )
    if f := load("bounds_refresh_storm"):
        add(
            "bounds",
            f"bench scale, embedded, interval {f['refresh_interval_s']} s, {f['load_s']:.0f} s "
            "of reads: cycles completed (s each)",
            f"{f['cycles_completed']} ({', '.join(f'{c:.1f}' for c in f['cycle_s'])})",
        )
        add(
            "bounds",
            "refreshes running at once, most (bound); started / merged / turned away",
            f"{f['refreshes_running_peak']:.0f} ({f['refresh_concurrency']}); "
            f"{f['refresh_requests']['started']:.0f} / {f['refresh_requests']['duplicate']:.0f}"
            f" / {f['refresh_requests']['dropped']:.0f}",
        )
        add(
            "bounds",
            "storm requests: answers, p50 / p95",
            f"{f['statuses']}, {f['p50_ms']} / {f['p95_ms']} ms",
        )
    if r := load("bounds_revocation_matrix"):
        add(
            "bounds",
            "cohort-only events (moved, track handed over): rounds, failures on 5 transports",
            f"{len(r['rounds'])}, {len(r['failures'])}",
        )
        spans = [x["event_to_refreshed_s"] for x in r["rounds"]]
        add("bounds", "event → re-scoped (max)", f"{max(spans, default=0)} s")
    if f := load("bounds_surfaces"):
        c, fr, h, sl = f["connections"], f["frames"], f["header_64_mib"], f["slow_heads"]
        add(
            "bounds",
            "1,000 WebSocket inits and event streams at once, one director: admitted (limit 8)",
            f"{c['admitted']}; RSS {c['rss_mib_before']} → {c['rss_mib_holding']} MiB",
        )
        add(
            "bounds",
            "unauthenticated 15 MiB frames (1, then 3): close; peak RSS before → after",
            f"{fr['close'][0]}; {fr['peak_rss_mib_before']} → {fr['peak_rss_mib_after_three']} MiB",
        )
        add(
            "bounds",
            "64 MiB header: status, answered in; peak RSS before → after",
            f"{h['status']}, {h['answered_s']} s; {h['peak_rss_mib_before']} → "
            f"{h['peak_rss_mib_after']} MiB",
        )
        add(
            "bounds",
            f"{sl['sockets']} heads a byte a second: cut (timeout), /healthz meanwhile (max)",
            f"{sl['statuses']} after {sl['cut_after_s_max']} s ({sl['header_timeout_s']} s), "
            f"{sl['healthz_meanwhile']['max_ms']} ms",
        )
        a = f["apq_registrations"]
        add(
            "bounds",
            f"{a['attempts']} APQ registrations of {a['document_kib']} KiB, one director: kept, "
            "Redis growth",
            f"{a['registered']} (429: {a['refused_429']}), {a['redis_grew_mib']} MiB",
        )
    if f := load("bounds_demotion_after_bulk_event"):
        add(
            "bounds",
            f"demotion after a {f['bulk_event_ids']}-id event: WebSocket closed after (goal)",
            f"{f['demotion_to_close_s']} s ({f['goal_s']} s), close {f['close'][0]}",
        )
    if s := load("soak"):
        load_ = s["load"]
        add(
            "soak",
            f"{s['duration_s']:.0f} s at {s['target_rate_per_s']:.0f}/s: requests, errors",
            f"{load_['requests']}, {load_['requests'] - load_['by_status'].get('200', 0)}",
        )
        add(
            "soak",
            "p50 / p95 / p99",
            f"{load_['p50_ms']} / {load_['p95_ms']} / {load_['p99_ms']} ms",
        )
        add(
            "soak",
            "response hit rate, cohort subtree hit rate",
            f"{s['response_hit_rate']}, {s['subtree_hit_rate']['cohort']}",
        )
        rss = s["rss_mb"]["gateway"]
        add(
            "soak",
            "gateway RSS start / middle / end (limit)",
            f"{rss['start']} / {rss['middle']} / {rss['end']} MB ({rss['limit']})",
        )
        add("soak", "refresh cycles, webhooks", f"{s['refresh_cycles_seen']}, {s['webhooks']}")
    return out


def main() -> int:
    lines = ["| area | figure | value |", "|---|---|---|"]
    lines += [f"| {a} | {f} | {v} |" for a, f, v in rows()]
    text = "\n".join(lines) + "\n"
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "summary.md").write_text(text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
