"""A table added at the source while ``mssql2pg run`` runs, matched by a wildcard of the configuration
(``tables: ["dbo.*"]``): an operator creates it and enables CDC on it, and expects it in the warehouse without a
restart - its rows that predate CDC (snapshot) and its changes after - while the other tables keep streaming."""

from __future__ import annotations

from pathlib import Path

import pytest

from mssql2pg.emulator import connect
from tests.e2e.pipeline_process import write_config
from tests.fixtures.emulator import enable_table, two_cdc_tables
from tests.fixtures.waiting import wait_for
from tests.integration.pipeline.test_initial_snapshot import Running

pytestmark = pytest.mark.integration


def test_a_table_enabled_while_running_that_a_wildcard_selects_is_replicated_without_restart(
    emulated_source_url: str, target_url: str, tmp_path: Path
) -> None:
    src = connect(emulated_source_url)
    dst = connect(target_url)
    two_cdc_tables(src)
    config = write_config(tmp_path / "p.yaml", emulated_source_url, target_url, ["dbo.*"])
    running = Running(config)
    try:
        wait_for(lambda: dst.run("SELECT to_regclass('dbo.b') IS NOT NULL")[0][0], timeout=60, what="dbo.a and dbo.b")
        src.run("CREATE TABLE dbo.later (id int PRIMARY KEY, v text)")
        src.run("INSERT INTO dbo.later SELECT g, 'before cdc ' || g FROM generate_series(1, 50) g")
        enable_table(src, "dbo", "later")
        src.run("INSERT INTO dbo.later VALUES (51, 'after cdc')")
        src.run("UPDATE dbo.later SET v = 'changed' WHERE id = 7")
        src.run("DELETE FROM dbo.later WHERE id = 8")
        src.run("INSERT INTO dbo.a VALUES (100, 'a100')")

        def later() -> list[list[object]]:
            if not dst.run("SELECT to_regclass('dbo.later') IS NOT NULL")[0][0]:
                return []
            return dst.run("SELECT id, v FROM dbo.later ORDER BY id")

        wait_for(
            lambda: later() == src.run("SELECT id, v FROM dbo.later ORDER BY id"),
            timeout=60,
            what="dbo.later, enabled while running, to equal the source",
        )
        wait_for(
            lambda: dst.run("SELECT id, v FROM dbo.a ORDER BY id") == src.run("SELECT id, v FROM dbo.a ORDER BY id"),
            timeout=60,
            what="dbo.a to go on streaming",
        )
    finally:
        running.close()
        src.close()
        dst.close()
