"""``reconcile --repair`` (issue 13, point 5): the differing keys are rewritten from the source in one locked
target transaction, then re-checked; what was fixed is reported, and the table is consistent afterwards - also
while the pipeline runs and the source changes."""

from __future__ import annotations

import pytest

from mssql2pg.reconcile.run import Settings, reconcile
from tests.integration.reconcile.conftest import Replicated

pytestmark = pytest.mark.integration


def test_repair_fixes_missing_extra_and_different_rows_of_every_type(replicated: Replicated) -> None:
    dst = replicated.dst
    dst.run("DELETE FROM dbo.typed WHERE id IN (3, 4)")
    dst.run("UPDATE dbo.typed SET c_dto_offset = 0, c_nvarchar = 'x ', c_bin = '\\x00' WHERE id = 8")
    dst.run("UPDATE dbo.typed SET c_dt2 = c_dt2 + interval '1 us' WHERE id = 9")
    dst.run("INSERT INTO dbo.typed (id, _cdc_lsn, _cdc_operation) VALUES (5000, '\\x00', 2)")

    (report,) = reconcile(replicated.config, ["dbo.typed"], Settings(settle_seconds=5, repair=True))

    assert (report.status, report.error) == ("consistent", None), report
    assert report.repaired == 5
    assert sorted(k["id"] for k in report.repaired_keys) == [3, 4, 8, 9, 5000]
    assert report.target_rows == report.source_rows == replicated.rows
    (again,) = reconcile(replicated.config, ["dbo.typed"], Settings(settle_seconds=5))
    assert again.status == "consistent"
    assert again.differing == 0
    # repaired rows carry a source LSN, so the applier's guard orders later changes against them
    (lsn,) = dst.run("SELECT _cdc_lsn FROM dbo.typed WHERE id = 3")[0]
    assert bytes(lsn) != b"\x00" * 10


def test_repair_while_the_pipeline_runs_and_the_source_changes(live: Replicated) -> None:
    key = live.src.run("SELECT k::text FROM dbo.by_uuid WHERE v = 1")[0][0]
    live.dst.run("DELETE FROM dbo.by_uuid WHERE k = :k", k=key)

    (report,) = reconcile(live.config, ["dbo.by_uuid"], Settings(settle_seconds=30, repair=True))

    assert report.repaired == 1, report
    assert report.repaired_keys == [{"k": key}]
    assert report.status == "consistent"
    (again,) = reconcile(live.config, ["dbo.by_uuid"], Settings(settle_seconds=30))
    assert again.status == "consistent", again
