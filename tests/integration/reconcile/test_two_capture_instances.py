"""A source table fed by two capture instances (SQL Server's way to follow a schema change): reconcile compares
it and ``--repair`` rewrites its keys through the target table the pipeline applies (one per source table, an
encoder per capture instance)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from mssql2pg.config import load_config
from mssql2pg.emulator import connect
from mssql2pg.pipeline.assembly import Pipeline
from mssql2pg.reconcile.run import Settings, reconcile
from tests.e2e.pipeline_process import write_config
from tests.fixtures.emulator import enable_table

pytestmark = pytest.mark.integration


def test_a_table_with_two_capture_instances_is_compared_and_repaired(
    emulated_source_url: str, target_url: str, tmp_path: Path
) -> None:
    src = connect(emulated_source_url)
    src.run("CREATE SCHEMA dbo")
    src.run("CREATE TABLE dbo.evolve (id int PRIMARY KEY, a varchar(20))")
    enable_table(src, "dbo", "evolve")
    src.run("INSERT INTO dbo.evolve SELECT g, 'a' || g FROM generate_series(1, 20) g")
    src.run("ALTER TABLE dbo.evolve ADD COLUMN b int")
    enable_table(src, "dbo", "evolve", capture_instance="dbo_evolve_v2")
    src.run("UPDATE dbo.evolve SET b = id * 10")
    src.close()
    config = load_config(write_config(tmp_path / "p.yaml", emulated_source_url, target_url, ["dbo.evolve"]))
    Pipeline.from_config(config).run(threading.Event(), until_caught_up=True)
    dst = connect(target_url)
    try:
        assert dst.run("SELECT count(*) FROM dbo.evolve WHERE b = id * 10")[0][0] == 20  # both instances applied

        (report,) = reconcile(config, settings=Settings(settle_seconds=5))
        assert (report.status, report.error, report.source_rows) == ("consistent", None, 20), report

        dst.run("UPDATE dbo.evolve SET b = -1 WHERE id = 3")  # a column only the newer instance captures
        dst.run("DELETE FROM dbo.evolve WHERE id = 4")
        (report,) = reconcile(config, settings=Settings(settle_seconds=5, repair=True))

        assert (report.status, report.error) == ("consistent", None), report
        assert report.repaired_keys == [{"id": 3}, {"id": 4}]
        assert dst.run("SELECT id, a, b FROM dbo.evolve WHERE id IN (3, 4) ORDER BY id") == [
            [3, "a3", 30],
            [4, "a4", 40],
        ]
    finally:
        dst.close()
