"""An LSN gap (CDC cleanup ran ahead of replication) pauses only the affected table (issue 4, point 8).

The table gets state ``needs-resync`` in ``mssql2pg.table_state`` with a reason and the remediation command;
the other tables keep replicating, and a restarted pipeline leaves the paused table alone.
"""

from __future__ import annotations

import pg8000.native
import pytest

from mssql2pg.config import load_config
from mssql2pg.emulator import connect
from mssql2pg.pipeline.assembly import Pipeline
from tests.e2e.pipeline_process import write_config
from tests.fixtures.emulator import two_cdc_tables
from tests.fixtures.target import table_state

pytestmark = pytest.mark.integration


def _pg(url: str) -> pg8000.native.Connection:
    return connect(url)


def _run_once(config_path: object) -> Pipeline:
    import threading  # noqa: PLC0415

    pipeline = Pipeline.from_config(load_config(config_path))  # type: ignore[arg-type]
    pipeline.run(threading.Event(), until_caught_up=True)
    return pipeline


def test_gap_in_one_table_pauses_it_and_the_other_continues(
    emulated_source_url: str, target_url: str, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    src = _pg(emulated_source_url)
    two_cdc_tables(src)
    config = write_config(tmp_path / "p.yaml", emulated_source_url, target_url, ["dbo.a", "dbo.b"])
    _run_once(config)
    # table a changes twice, then cleanup removes the first of those changes before replication saw it
    src.run("INSERT INTO dbo.a VALUES (2, 'lost')")
    src.run("INSERT INTO dbo.a VALUES (3, 'kept')")
    low = src.run("SELECT sys.fn_cdc_get_max_lsn()")[0][0]
    src.run("CALL sys.sp_cdc_cleanup_change_table(capture_instance => 'dbo_a', low_water_mark => :l)", l=low)
    src.run("INSERT INTO dbo.b VALUES (2, 'b2')")

    _run_once(config)

    dst = _pg(target_url)
    assert dst.run("SELECT id FROM dbo.b ORDER BY id") == [[1], [2]]
    assert dst.run("SELECT id FROM dbo.a ORDER BY id") == [[1]]
    state, reason, remediation = table_state(dst, "dbo.a")
    assert state == "needs-resync"
    assert "no longer available" in reason
    assert "mssql2pg resync dbo.a" in remediation
    assert table_state(dst, "dbo.b")[0] == "active"

    # a restart keeps a paused table paused and still replicates the others
    src.run("INSERT INTO dbo.b VALUES (3, 'b3')")
    pipeline = _run_once(config)

    assert dst.run("SELECT count(*) FROM dbo.b") == [[3]]
    assert dst.run("SELECT count(*) FROM dbo.a") == [[1]]
    assert "dbo.a" not in {str(t.source) for t in pipeline.tables}
    src.close()
    dst.close()
