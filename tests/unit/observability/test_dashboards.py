"""Perses dashboards: well-formed, every panel placed, and every query reads only metrics we export."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from mssql2pg.observability.metrics import exported_metric_names
from tests.fixtures.optional_tools import require_tool
from tests.unit.observability.promql_names import metric_names

ROOT = Path(__file__).resolve().parents[3]
DASHBOARDS = sorted((ROOT / "monitoring" / "perses" / "dashboards").glob("*.y*ml"))
ALERTS = ROOT / "monitoring" / "prometheus" / "alerts.yml"
REQUIRED_METRICS = {
    "mssql2pg_rows_applied_total",  # throughput
    "mssql2pg_lag_seconds",  # lag
    "mssql2pg_errors_total",  # errors
    "mssql2pg_dead_letters",  # dead letters
    "mssql2pg_schema_changes",  # schema changes
    "mssql2pg_process_cpu_seconds_total",  # CPU
    "mssql2pg_process_resident_memory_bytes",  # memory
    "mssql2pg_table_state",  # per-table state
    "mssql2pg_target_conflicts_total",  # the target written by others (issue 17)
}


def load(path: Path) -> dict[str, Any]:
    text = path.read_text()
    assert "\n---" not in text, "Perses v0.54 reads only the first document of a multi-document YAML file"
    doc: dict[str, Any] = yaml.safe_load(text)
    return doc


def queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    out = []
    for name, panel in dashboard["spec"]["panels"].items():
        for query in panel["spec"]["queries"]:
            assert query["kind"] == "TimeSeriesQuery"
            plugin = query["spec"]["plugin"]
            assert plugin["kind"] == "PrometheusTimeSeriesQuery"
            out.append((name, plugin["spec"]["query"]))
    return out


def recorded_names() -> set[str]:
    doc = yaml.safe_load(ALERTS.read_text())
    return {rule["record"] for group in doc["groups"] for rule in group["rules"] if "record" in rule}


def test_there_is_a_dashboard() -> None:
    assert DASHBOARDS


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_shape(path: Path) -> None:
    dash = load(path)
    assert dash["kind"] == "Dashboard"
    assert dash["metadata"]["project"] == "mssql2pg"
    assert " " not in dash["metadata"]["name"]
    panels = dash["spec"]["panels"]
    placed = []
    for layout in dash["spec"]["layouts"]:
        assert layout["kind"] == "Grid"
        for item in layout["spec"]["items"]:
            assert item["x"] + item["width"] <= 24
            placed.append(item["content"]["$ref"].removeprefix("#/spec/panels/"))
    assert sorted(placed) == sorted(panels), "every panel is placed exactly once and every reference exists"
    for name, panel in panels.items():
        assert panel["spec"]["queries"], f"panel {name} has no query"
        plugin = panel["spec"]["plugin"]
        assert plugin["kind"] in {"TimeSeriesChart", "StatChart"}
        if plugin["kind"] == "StatChart":
            assert "calculation" in plugin["spec"], f"StatChart {name} needs a calculation"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_query_uses_only_exported_metrics(path: Path) -> None:
    allowed = exported_metric_names() | recorded_names()
    used: set[str] = set()
    for panel, query in queries(load(path)):
        names = metric_names(query)
        assert names, f"panel {panel}: no metric found in {query!r}"
        assert names <= allowed, f"panel {panel} queries metrics the pipeline does not export: {names - allowed}"
        used |= names
    if path.name == "mssql2pg.yaml":
        assert used >= REQUIRED_METRICS


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_query_is_valid_promql(path: Path, tmp_path: Path) -> None:
    promtool = require_tool("promtool")
    rules = [{"record": f"panel:{panel}:q{i}", "expr": q} for i, (panel, q) in enumerate(queries(load(path)))]
    rules_file = tmp_path / "queries.yml"
    rules_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    proc = subprocess.run([promtool, "check", "rules", str(rules_file)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
