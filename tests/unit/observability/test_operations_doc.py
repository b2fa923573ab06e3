"""docs/operations.md documents every exported metric and every alert threshold."""

from __future__ import annotations

from pathlib import Path

import yaml

from mssql2pg.observability.metrics import exported_metric_names

ROOT = Path(__file__).resolve().parents[3]
DOC = (ROOT / "docs" / "operations.md").read_text()


def family(name: str) -> str:
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and not name.endswith("_total"):
            base = name.removesuffix(suffix)
            if f"{base}_bucket" in exported_metric_names():
                return base
    return name


def test_every_metric_is_documented() -> None:
    missing = sorted({family(n) for n in exported_metric_names()} - {w.strip("`,") for w in DOC.split()})
    assert not missing, f"docs/operations.md does not document {missing}"


def test_every_threshold_is_documented_with_its_default() -> None:
    doc = yaml.safe_load((ROOT / "monitoring" / "prometheus" / "alerts.yml").read_text())
    for rule in doc["groups"][0]["rules"]:
        if rule.get("record", "").startswith("mssql2pg:alert_threshold:"):
            default = rule["expr"].removeprefix("vector(").removesuffix(")")
            assert f"| `{rule['record']}` | `{default}`" in DOC
