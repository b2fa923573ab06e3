"""The per-table report: keys a live re-check could not compare are listed apart and do not make a table
inconsistent (no false positive on a consistent, live system)."""

from __future__ import annotations

from mssql2pg.model import TableId
from mssql2pg.reconcile.run import TableReport, suggest


def test_unsettled_keys_are_reported_apart_and_bounded() -> None:
    report = TableReport(TableId("dbo", "t"), "dbo.t", "consistent", unsettled=[{"id": 1}, {"id": 2}, {"id": 3}])

    doc = report.as_json(max_keys=2)

    assert doc["status"] == "consistent"
    assert doc["unsettled_keys"] == [{"id": 1}, {"id": 2}]
    assert doc["unsettled_total"] == 3
    assert doc["different_total"] == doc["missing_total"] == doc["extra_total"] == 0
    assert "run reconcile again" in suggest(report)


def test_a_consistent_table_without_unsettled_keys_needs_nothing() -> None:
    report = TableReport(TableId("dbo", "t"), "dbo.t", "consistent")

    assert report.as_json(max_keys=2)["unsettled_keys"] == []
    assert suggest(report) == "none"
