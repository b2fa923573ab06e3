"""What the pipeline publishes: applied rows, dead letters (counter and gauge) and stale events reach the
metrics registry that ``/metrics`` serves."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from mssql2pg.config import load_config
from mssql2pg.emulator import connect
from mssql2pg.pipeline.assembly import Pipeline
from tests.e2e.pipeline_process import write_config
from tests.fixtures.emulator import enable_table

pytestmark = pytest.mark.integration


def _metric(pipeline: Pipeline, line_start: str) -> float:
    for line in pipeline.obs.metrics.render().decode().splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_rows_dead_letters_and_stale_events_are_published(
    emulated_source_url: str, target_url: str, tmp_path: Path
) -> None:
    src = connect(emulated_source_url)
    src.run("CREATE SCHEMA dbo")
    src.run("CREATE TABLE dbo.t (id int PRIMARY KEY, v text)")
    enable_table(src, "dbo", "t")
    src.run("INSERT INTO dbo.t VALUES (1, 'ok')")
    config = load_config(write_config(tmp_path / "p.yaml", emulated_source_url, target_url, ["dbo.t"]))
    Pipeline.from_config(config).run(threading.Event(), until_caught_up=True)
    dst = connect(target_url)
    dst.run("ALTER TABLE dbo.t ADD CONSTRAINT no_bad CHECK (v <> 'bad') NOT VALID")  # the target is stricter
    src.run("INSERT INTO dbo.t VALUES (2, 'bad'), (3, 'fine')")
    # an old commit time makes the next change stale (stale_after is 24 h by default)
    src.run(
        "UPDATE cdc.lsn_time_mapping SET tran_end_time = tran_end_time - interval '2 days' "
        "WHERE start_lsn = sys.fn_cdc_get_max_lsn()"
    )

    pipeline = Pipeline.from_config(config)
    pipeline.run(threading.Event(), until_caught_up=True)

    assert dst.run("SELECT id FROM dbo.t ORDER BY id") == [[1], [3]]
    assert _metric(pipeline, 'mssql2pg_rows_applied_total{operation="insert",table="dbo.t"}') == 1
    assert _metric(pipeline, 'mssql2pg_dead_letters_routed_total{table="dbo.t"}') == 1
    assert _metric(pipeline, 'mssql2pg_dead_letters{status="pending"}') == 1
    assert _metric(pipeline, 'mssql2pg_stale_events_total{table="dbo.t"}') >= 1
    src.close()
    dst.close()
