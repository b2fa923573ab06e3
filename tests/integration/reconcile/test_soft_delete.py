"""Soft-delete mode (issue 13, point 3): a row flagged deleted in the target counts as absent, so a deleted
source row is consistent; a flag set or cleared by mistake is found as a missing or extra key, and ``--repair``
puts the flag back (the key the source no longer has is flagged deleted, not removed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mssql2pg.reconcile.run import Settings, reconcile
from tests.integration.reconcile.conftest import replicated_pair

pytestmark = pytest.mark.integration


def test_soft_deleted_rows_count_as_absent_and_repair_restores_the_flag(
    emulated_source_url: str, target_url: str, tmp_path: Path
) -> None:
    pair = replicated_pair(emulated_source_url, target_url, tmp_path, rows=30, defaults={"delete_mode": "soft"})
    try:
        pair.src.run("DELETE FROM dbo.typed WHERE id IN (1, 2)")
        pair.catch_up()
        assert pair.dst.run("SELECT count(*) FROM dbo.typed WHERE _cdc_deleted")[0][0] == 2  # kept, flagged

        (report,) = reconcile(pair.config, ["dbo.typed"], Settings(settle_seconds=5))
        assert (report.status, report.source_rows, report.target_rows) == ("consistent", 28, 28), report

        pair.dst.run("UPDATE dbo.typed SET _cdc_deleted = false WHERE id = 1")  # a deleted row back to life
        pair.dst.run("UPDATE dbo.typed SET _cdc_deleted = true WHERE id = 5")  # a live row flagged deleted
        (report,) = reconcile(pair.config, ["dbo.typed"], Settings(settle_seconds=5))
        assert report.status == "inconsistent"
        assert (report.extra, report.missing, report.different) == ([{"id": 1}], [{"id": 5}], [])

        (report,) = reconcile(pair.config, ["dbo.typed"], Settings(settle_seconds=5, repair=True))
        assert (report.status, report.error) == ("consistent", None), report
        assert report.repaired_keys == [{"id": 1}, {"id": 5}]
        flags = pair.dst.run("SELECT id, _cdc_deleted FROM dbo.typed WHERE id IN (1, 5) ORDER BY id")
        assert flags == [[1, True], [5, False]]
    finally:
        pair.src.close()
        pair.dst.close()
