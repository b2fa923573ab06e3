"""Reconciling while the pipeline runs and the source keeps changing: zero false positives, and real drift is
still found with exactly its keys (issue 13, point 4)."""

from __future__ import annotations

import pytest

from mssql2pg.reconcile.run import Settings, reconcile
from tests.fixtures.waiting import wait_for
from tests.integration.reconcile.conftest import Replicated

pytestmark = pytest.mark.integration


def test_no_false_positive_while_the_source_changes(live: Replicated) -> None:
    for _ in range(3):
        (report,) = reconcile(live.config, ["dbo.by_uuid"], Settings(settle_seconds=30))
        assert (report.status, report.error) == ("consistent", None), report
        assert report.confirmed


def test_drift_on_a_live_table_is_found_with_exactly_its_keys(live: Replicated) -> None:
    key = live.src.run("SELECT k::text FROM dbo.by_uuid WHERE v = 1")[0][0]  # v = 1 is never written again
    wait_for(lambda: bool(live.dst.run("SELECT 1 FROM dbo.by_uuid WHERE k = :k", k=key)), what="row replicated")
    live.dst.run("UPDATE dbo.by_uuid SET code = 'CODE 1' WHERE k = :k", k=key)  # a case change

    (report,) = reconcile(live.config, ["dbo.by_uuid"], Settings(settle_seconds=30))

    assert report.status == "inconsistent"
    assert report.different == [{"k": key}]
    assert report.missing == report.extra == []
    assert report.confirmed
