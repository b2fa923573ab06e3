"""Reconciling while the pipeline runs and the source keeps changing: zero false positives, and real drift is
still found with exactly its keys (issue 13, point 4)."""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator

import pytest

from mssql2pg.emulator import connect
from mssql2pg.pipeline.assembly import Pipeline
from mssql2pg.reconcile.run import Settings, reconcile
from tests.fixtures.waiting import wait_for
from tests.integration.reconcile.conftest import Replicated

pytestmark = pytest.mark.integration


@pytest.fixture
def live(replicated: Replicated, emulated_source_url: str) -> Iterator[Replicated]:
    """The pipeline running, and a writer updating, inserting and deleting rows of dbo.by_uuid all along."""
    stop, writes = threading.Event(), threading.Event()
    written: list[int] = []
    pipeline = Pipeline.from_config(replicated.config)
    runner = threading.Thread(target=pipeline.run, args=(stop,), daemon=True)

    def keep_writing() -> None:
        writer = connect(emulated_source_url)
        rng = random.Random(13)
        n = 10_000
        while not writes.is_set():
            n += 1
            writer.run("UPDATE dbo.by_uuid SET v = v + 1 WHERE v > 1 AND v % 50 = CAST(:m AS int)", m=rng.randrange(50))
            writer.run("INSERT INTO dbo.by_uuid VALUES (md5(CAST(:n AS text))::uuid, 'new', CAST(:n AS int))", n=n)
            writer.run("DELETE FROM dbo.by_uuid WHERE v = CAST(:old AS int)", old=n - 3)
            written.append(n)
        writer.close()

    writer = threading.Thread(target=keep_writing, daemon=True)
    runner.start()
    writer.start()
    try:
        wait_for(lambda: len(written) > 5, what="the writer writing")
        yield replicated
        assert writer.is_alive(), "the writer stopped early"
    finally:
        writes.set()
        writer.join(timeout=30)
        stop.set()
        runner.join(timeout=60)


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
