"""A replicated table whose capture instances disappear while ``mssql2pg run`` replicates (issue 12 point 7): CDC
disabled on it, or the table dropped at the source. Detected at the reader's next window, logged, recorded in
``mssql2pg.schema_changes`` (``table-gone``) and the table paused with a message that says what happened and what
to do; the other tables keep replicating, with a writer changing them the whole time. A restart does not fail on
the table that is gone either (the configuration still names it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mssql2pg import control
from mssql2pg.config import load_config
from mssql2pg.emulator import connect
from mssql2pg.pipeline.assembly import Pipeline
from tests.e2e.pipeline_process import write_config
from tests.fixtures.emulator import enable_table, two_cdc_tables
from tests.fixtures.target import table_state
from tests.fixtures.waiting import wait_for
from tests.integration.pipeline.schema_workload import Running, Writer, assert_exact, disable_instance, retrying, rows

pytestmark = pytest.mark.integration


def test_a_table_whose_cdc_is_disabled_or_that_is_dropped_pauses_and_the_others_go_on(
    emulated_source_url: str, target_url: str, tmp_path: Path
) -> None:
    src = connect(emulated_source_url)
    dst = connect(target_url)
    two_cdc_tables(src)
    src.run("CREATE TABLE dbo.c (id int PRIMARY KEY, v text)")
    enable_table(src, "dbo", "c")
    src.run("INSERT INTO dbo.c VALUES (1, 'c1')")
    config = load_config(
        write_config(
            tmp_path / "p.yaml",
            emulated_source_url,
            target_url,
            ["dbo.a", "dbo.b", "dbo.c"],
            snapshot={"mode": "never"},
        )
    )
    try:
        with Running(Pipeline.from_config(config)) as running:
            wait_for(lambda: rows(dst, "dbo.c") == rows(src, "dbo.c"), what="dbo.c replicated")
            with Writer(emulated_source_url, first_id=100) as writer:
                wait_for(lambda: writer.written >= 10, what="changes flowing before CDC is disabled")
                disable_instance(src, "a", "dbo_a")
                wait_for(lambda: table_state(dst, "dbo.a")[0] == "paused", what="dbo.a paused")
                retrying(lambda: src.run("DROP TABLE dbo.c"))
                wait_for(lambda: table_state(dst, "dbo.c")[0] == "paused", what="dbo.c paused")
                flowing = writer.written
                wait_for(lambda: writer.written >= flowing + 20, what="changes flowing after the pauses")
            assert not writer.errors
            wait_for(lambda: rows(dst, "dbo.b") == rows(src, "dbo.b"), timeout=60, what="dbo.b equal")
            assert_exact(src, dst, "b", "id, v")
            assert running.alive(), running.failures
            assert running.instances("dbo.a") == []
            assert running.instances("dbo.c") == []
        assert not running.failures
        for table in ("dbo.a", "dbo.c"):
            state, reason, remediation = table_state(dst, table)
            assert state == "paused"
            assert reason is not None
            assert "no capture instance" in reason
            assert remediation is not None
            assert "sp_cdc_enable_table" in remediation
            assert f"mssql2pg resync {table}" in remediation
        assert [(c.source_table, c.change, c.status) for c in control.list_schema_changes(dst, "default")] == [
            ("dbo.a", "table-gone", "pending-review"),
            ("dbo.c", "table-gone", "pending-review"),
        ]
        # a restart with the same configuration starts, and leaves both out
        again = Pipeline.from_config(config)
        try:
            assert [str(t.source) for t in again.tables] == ["dbo.b"]
        finally:
            again.close()
    finally:
        src.close()
        dst.close()
