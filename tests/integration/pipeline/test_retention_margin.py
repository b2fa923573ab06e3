"""The retention margin (issue 12): how long until CDC cleanup removes the oldest change a table still needs,
exported by the running pipeline as ``mssql2pg_retention_margin_seconds{table}`` and shown by ``mssql2pg check``.

A table paused by a type change holds its position; the source's clock is then moved an hour on (the emulator's
``set_clock_offset``: its commit times move with it, as a day of traffic would), so the oldest change the paused
table needs is an hour older than the newest one. With a cleanup retention of 2 hours its margin is at most one
hour (and not less than one hour minus how long the test took between those commits), while a table that is
caught up keeps the whole retention."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from mssql2pg.config import load_config
from mssql2pg.emulator import connect, set_clock_offset
from mssql2pg.pipeline import retention
from mssql2pg.pipeline.assembly import Pipeline
from mssql2pg.pipeline.check import run_checks
from tests.e2e.pipeline_process import write_config
from tests.fixtures.emulator import enable_table, two_cdc_tables
from tests.fixtures.target import table_state
from tests.fixtures.waiting import wait_for
from tests.integration.pipeline.schema_workload import Running, retrying

pytestmark = pytest.mark.integration

RETENTION_MINUTES = 120
SHIFT = 3600.0
SLACK = 300.0  # more than the test takes between the first held change and the newest commit


@pytest.fixture
def shifted(emulated_source_url: str) -> Iterator[str]:
    yield emulated_source_url
    set_clock_offset(emulated_source_url, 0)


def test_a_paused_table_s_retention_margin_is_exported_and_shown_by_check(
    shifted: str, target_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retention, "RETENTION_POLL_SECONDS", 0.2)
    src = connect(shifted)
    dst = connect(target_url)
    two_cdc_tables(src)
    src.run("CREATE TABLE dbo.c (id int PRIMARY KEY, d numeric(5,2))")
    enable_table(src, "dbo", "c")
    src.run("INSERT INTO dbo.c VALUES (1, :d)", d=Decimal("0.25"))
    src.run("CALL sys.sp_cdc_change_job(job_type => 'cleanup', retention => :m)", m=RETENTION_MINUTES)
    config = load_config(
        write_config(tmp_path / "p.yaml", shifted, target_url, ["dbo.a", "dbo.b", "dbo.c"], snapshot={"mode": "never"})
    )
    try:
        with Running(Pipeline.from_config(config)) as running:
            metrics = running.pipeline.obs.metrics.registry

            def margin(table: str) -> float | None:
                return metrics.get_sample_value("mssql2pg_retention_margin_seconds", {"table": table})

            wait_for(lambda: dst.run("SELECT count(*) FROM dbo.c") == [[1]], what="dbo.c replicated")
            retrying(lambda: src.run("ALTER TABLE dbo.c ALTER COLUMN d TYPE real"))
            wait_for(lambda: table_state(dst, "dbo.c")[0] == "paused", what="dbo.c paused by the type change")
            src.run("INSERT INTO dbo.c VALUES (2, 0.5)")  # held in CDC from now on
            set_clock_offset(shifted, SHIFT)
            src.run("INSERT INTO dbo.a VALUES (2, 'a2')")  # the newest commit, an hour later on the source's clock
            full = RETENTION_MINUTES * 60.0
            wait_for(
                lambda: (m := margin("dbo.c")) is not None and m <= full - SHIFT,
                what="the paused table's margin measured after the newest commit",
            )
            held = margin("dbo.c")
            assert held is not None
            assert full - SHIFT - SLACK < held <= full - SHIFT
            # a caught-up table needs nothing older than its checkpoint: the whole retention
            wait_for(lambda: margin("dbo.a") == full, what="dbo.a's margin: the whole retention")
            findings = [f.what for f in run_checks(config, lambda: connect(target_url)).findings]
            [line] = [f for f in findings if f.startswith("dbo.c: checkpoint")]
            assert "(paused" in line
            assert "; retention margin 1.0 h (cleanup retention 2.0 h)" in line, line
            assert not running.failures
    finally:
        src.close()
        dst.close()
