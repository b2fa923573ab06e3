"""Alert rules: they parse, their promtool unit tests pass, and they only read metrics we export."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from mssql2pg.observability.metrics import exported_metric_names
from tests.fixtures.optional_tools import require_tool
from tests.unit.observability.promql_names import metric_names

ROOT = Path(__file__).resolve().parents[3]
ALERTS = ROOT / "monitoring" / "prometheus" / "alerts.yml"
ALERT_TESTS = ROOT / "monitoring" / "prometheus" / "tests" / "alerts_test.yml"
# Series Prometheus itself creates for every scrape target.
PROMETHEUS_OWN = frozenset({"up"})
REQUIRED_ALERTS = {
    "Mssql2pgPipelineDown",
    "Mssql2pgSourceUnreachable",
    "Mssql2pgTargetUnreachable",
    "Mssql2pgHighErrorRate",
    "Mssql2pgReplicationLagHigh",
    "Mssql2pgCaptureStalled",
    "Mssql2pgDeadLettersGrowing",
    "Mssql2pgTablePaused",
    "Mssql2pgTableNeedsResync",
    "Mssql2pgStaleEvents",
    "Mssql2pgTargetWrittenByOthers",
}


def promtool() -> str:
    return require_tool("promtool")


def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_promql_name_extraction() -> None:
    expr = (
        'sum by (table, kind) (rate(mssql2pg_errors_total{table!="", kind=~"a|b"}[5m])) / on (table) group_left () '
        '(x_total or y * 0) > scalar(mssql2pg:alert_threshold:lag_seconds) and up{job="j"} == 0 offset 5m'
    )
    assert metric_names(expr) == {"mssql2pg_errors_total", "x_total", "y", "mssql2pg:alert_threshold:lag_seconds", "up"}


def test_rules_file_is_valid() -> None:
    proc = subprocess.run([promtool(), "check", "rules", str(ALERTS)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_promtool_unit_tests_pass() -> None:
    proc = subprocess.run(
        [promtool(), "test", "rules", str(ALERT_TESTS)], capture_output=True, text=True, check=False, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_required_alert_exists_and_has_a_runbook() -> None:
    alerts = {rule["alert"]: rule for rule in rules() if "alert" in rule}
    assert set(alerts) >= REQUIRED_ALERTS
    docs = (ROOT / "docs" / "operations.md").read_text()
    for name, rule in alerts.items():
        anchor = rule["annotations"]["runbook"].split("#", 1)[1]
        assert anchor == name.lower()
        assert f"### {name}" in docs, f"docs/operations.md has no runbook section for {name}"


def test_every_alert_is_unit_tested_firing_and_not_firing() -> None:
    tests = yaml.safe_load(ALERT_TESTS.read_text())["tests"]
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in tests:
        for check in case.get("alert_rule_test", []):
            (firing if check["exp_alerts"] else quiet).add(check["alertname"])
    alerts = {rule["alert"] for rule in rules() if "alert" in rule}
    assert alerts <= firing, f"never seen firing: {alerts - firing}"
    assert alerts <= quiet, f"never seen quiet: {alerts - quiet}"


def test_rules_only_read_exported_metrics() -> None:
    recorded = {rule["record"] for rule in rules() if "record" in rule}
    allowed = exported_metric_names() | recorded | PROMETHEUS_OWN
    for rule in rules():
        unknown = metric_names(rule["expr"]) - allowed
        assert not unknown, f"{rule.get('alert') or rule.get('record')} reads unknown metrics {unknown}"
