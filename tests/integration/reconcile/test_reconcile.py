"""``mssql2pg reconcile`` against the emulator and a target: consistent tables are proven so, and each kind of
drift is found with exactly its keys (issue 13, points 1-3)."""

from __future__ import annotations

import pytest

from mssql2pg.reconcile.run import Settings, TableReport, reconcile
from tests.integration.reconcile.conftest import Replicated

pytestmark = pytest.mark.integration


def _by_table(reports: list[TableReport]) -> dict[str, TableReport]:
    return {str(r.table): r for r in reports}


def test_a_replicated_table_of_every_mapped_type_is_consistent(replicated: Replicated) -> None:
    reports = _by_table(reconcile(replicated.config, settings=Settings(settle_seconds=5)))

    for name in ("dbo.typed", "dbo.by_uuid"):
        report = reports[name]
        assert (report.status, report.error) == ("consistent", None), report
        assert report.source_rows == report.target_rows == replicated.rows
        assert report.differing == 0


def test_each_kind_of_drift_is_found_with_exactly_its_keys(replicated: Replicated) -> None:
    dst = replicated.dst
    dst.run("DELETE FROM dbo.typed WHERE id = 3")
    dst.run("UPDATE dbo.typed SET c_nvarchar = c_nvarchar || ' ' WHERE id = 5")  # a trailing space
    dst.run("UPDATE dbo.typed SET c_nvarchar = upper(c_nvarchar) WHERE id = 9")  # case
    dst.run("UPDATE dbo.typed SET c_nvarchar = '' WHERE id = 14")  # NULL -> ''
    dst.run("UPDATE dbo.typed SET c_dt2 = c_dt2 + interval '1 microsecond' WHERE id = 20")
    dst.run("UPDATE dbo.typed SET c_bin = '\\x0000'::bytea WHERE id = 21")
    dst.run("UPDATE dbo.typed SET c_dto_offset = c_dto_offset + 1 WHERE id = 22")
    dst.run("INSERT INTO dbo.typed (id, _cdc_lsn, _cdc_operation) VALUES (100000, '\\x00'::bytea, 2)")  # an extra row
    dst.run("DELETE FROM dbo.by_uuid WHERE v = 7")
    lost = replicated.src.run("SELECT k::text FROM dbo.by_uuid WHERE v = 7")[0][0]

    reports = _by_table(reconcile(replicated.config, ["dbo.typed", "dbo.by_uuid"], Settings(settle_seconds=5)))

    typed = reports["dbo.typed"]
    assert typed.status == "inconsistent"
    assert typed.missing == [{"id": 3}]
    assert typed.extra == [{"id": 100000}]
    assert sorted(k["id"] for k in typed.different) == [5, 9, 14, 20, 21, 22]
    assert (typed.source_rows, typed.target_rows) == (replicated.rows, replicated.rows)
    assert "--repair" in typed.suggested_action
    by_uuid = reports["dbo.by_uuid"]
    assert by_uuid.missing == [{"k": lost}]
    assert by_uuid.extra == by_uuid.different == []
    # every run is stored per table, with counts, the bounded key lists and the action
    stored = dst.run(
        "SELECT source_table, status, source_rows, target_rows, missing, extra, different, keys, suggested_action, "
        "rechecked FROM mssql2pg.reconciliation_runs ORDER BY source_table"
    )
    assert [r[:7] for r in stored] == [
        ["dbo.by_uuid", "inconsistent", replicated.rows, replicated.rows - 1, 1, 0, 0],
        ["dbo.typed", "inconsistent", replicated.rows, replicated.rows, 1, 1, 6],
    ]
    assert stored[0][7]["missing_keys"] == [{"k": lost}]
    assert stored[1][8] == typed.suggested_action
    assert stored[1][9] is True
