"""The alert rules (deploy/prometheus/alerts.yaml): promtool's unit tests against synthetic
series pass, every alert is tested and has its runbook in docs/operations.md, and every
metric they read is one the gateway or its workers export."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY, generate_latest

import gateway.metrics  # noqa: F401  (registers the metrics)
import workers.metrics  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yaml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "alerts.test.yaml"
OPERATIONS = ROOT / "docs" / "operations.md"
# Series that come from Prometheus itself (`up`) or the blackbox exporter's /readyz probe.
FOREIGN = {"up", "probe_success"}


def rules() -> list[dict]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is missing: bash .ci/install-system test (Debian's prometheus)")
    return path


def test_promtool_checks_the_rules() -> None:
    done = subprocess.run(
        [promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules())} rules found" in done.stdout


def test_promtool_unit_tests_pass() -> None:
    done = subprocess.run(
        [promtool(), "test", "rules", RULE_TESTS.name],
        cwd=RULE_TESTS.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_is_tested_firing() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    firing = {
        case["alertname"]
        for test in tests
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert firing == {rule["alert"] for rule in rules()}


def test_the_stalled_cycle_reads_the_newest_record_of_every_instance() -> None:
    """A worker that never coordinated reports 0: the rule must not fire on it."""
    (stalled,) = [r for r in rules() if r["alert"] == "DashboardRefreshStalled"]
    assert "max(gateway_refresh_last_success_timestamp_seconds)" in stalled["expr"]


def test_every_alert_has_its_runbook_section() -> None:
    headings = re.findall(r"^#### Runbook: (\w+)$", OPERATIONS.read_text(), re.MULTILINE)
    alerts = [rule["alert"] for rule in rules()]
    assert sorted(headings) == sorted(alerts)
    for rule in rules():
        anchor = f"docs/operations.md#runbook-{rule['alert'].lower()}"
        assert rule["annotations"]["runbook"] == anchor
        assert rule["labels"]["severity"] in ("warning", "critical")


def exported_series() -> set[str]:
    names = set()
    for line in generate_latest(REGISTRY).decode().splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            suffixes = ("_bucket", "_count", "_sum") if kind == "histogram" else ("",)
            names |= {name + suffix for suffix in suffixes}
    return names


def test_every_series_the_rules_read_is_exported() -> None:
    exported = exported_series()
    for rule in rules():
        expr = re.sub(r"\{[^}]*\}|\[[^]]*\]", "", rule["expr"])  # matchers, ranges
        words = set(re.findall(r"\b[a-z_][a-z0-9_]*\b", expr))
        series = {w for w in words if w.startswith("gateway_")} | (words & FOREIGN)
        assert series, rule["alert"]
        assert series - FOREIGN <= exported, (rule["alert"], series - FOREIGN - exported)
