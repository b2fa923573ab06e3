"""``reconcile --repair`` (issue 13, point 5): the differing keys are rewritten from the source in one locked
target transaction, then re-checked; what was fixed is reported, and the table is consistent afterwards - also
while the pipeline runs and the source changes."""

from __future__ import annotations

from typing import Any

import pytest

from mssql2pg.reconcile import repair
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


def test_a_change_the_pipeline_applies_between_the_repairs_read_and_its_write_is_kept(
    replicated: Replicated, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The repair reads the source, then takes the table lock to write. A change committed at the source after
    that read and applied by the running pipeline before the lock carries a later LSN than the repair's
    position: the repair must not put the older row it read back over it (nothing would replay that change)."""
    src, dst = replicated.src, replicated.dst
    read_rows = repair._source_rows

    def read_then_the_pipeline_applies(*args: Any, **kwargs: Any) -> list[Any]:
        rows = read_rows(*args, **kwargs)
        src.run("UPDATE dbo.by_uuid SET code = 'newer' WHERE v = 7")  # committed after the repair's read
        replicated.catch_up()  # ... and applied before the repair's write
        return rows

    monkeypatch.setattr(repair, "_source_rows", read_then_the_pipeline_applies)
    key = src.run("SELECT k::text FROM dbo.by_uuid WHERE v = 7")[0][0]
    dst.run("UPDATE dbo.by_uuid SET code = 'drifted' WHERE k = :k", k=key)

    (report,) = reconcile(replicated.config, ["dbo.by_uuid"], Settings(settle_seconds=5, repair=True))

    assert dst.run("SELECT code FROM dbo.by_uuid WHERE k = :k", k=key) == [["newer"]]
    assert report.status == "consistent", report
