"""A column added at the source while its table is paused for a type change under review (issue 12 points 3
and 5 together): the operator follows the documented procedure (ADD COLUMN, a new capture instance) while the
table waits, then migrates the target and approves. On resume the target gains the column (recorded
``auto-applied``), rows written between the DDL and the new instance's start are filled from the source, and
the table equals the source row for row, with a writer changing the other tables the whole time."""

from __future__ import annotations

from pathlib import Path

import pytest

from mssql2pg import control
from mssql2pg.config import load_config
from mssql2pg.emulator import connect
from mssql2pg.pipeline import watcher
from mssql2pg.pipeline.assembly import Pipeline
from mssql2pg.schema_ops import approve_change
from tests.e2e.pipeline_process import run_cli, write_config
from tests.fixtures.emulator import enable_table, two_cdc_tables
from tests.fixtures.target import table_state
from tests.fixtures.waiting import wait_for
from tests.integration.pipeline.schema_workload import Running, Writer, assert_exact, enable_instance, retrying

pytestmark = pytest.mark.integration

COLUMNS = "id, n, d, x"


def test_a_column_added_while_the_table_waits_for_review_is_added_and_filled_on_approval(
    emulated_source_url: str, target_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watcher, "CONTROL_POLL_SECONDS", 0.2)
    src = connect(emulated_source_url)
    dst = connect(target_url)
    two_cdc_tables(src)
    src.run("CREATE TABLE dbo.c (id int PRIMARY KEY, n int, d numeric(5,2))")
    enable_table(src, "dbo", "c")
    src.run("INSERT INTO dbo.c SELECT g, g, g / 4.0 FROM generate_series(1, 5) g")
    config = load_config(
        write_config(
            tmp_path / "p.yaml",
            emulated_source_url,
            target_url,
            ["dbo.a", "dbo.b", "dbo.c"],
            snapshot={"mode": "never"},
        )
    )
    query = "SELECT id, n, d FROM dbo.c ORDER BY id"
    try:
        with Running(Pipeline.from_config(config)) as running:
            wait_for(lambda: dst.run(query) == src.run(query), what="dbo.c replicated")
            with Writer(emulated_source_url, first_id=100) as writer:
                retrying(lambda: src.run("ALTER TABLE dbo.c ALTER COLUMN d TYPE real"))
                src.run("INSERT INTO dbo.c VALUES (6, 6, 0.5)")
                wait_for(lambda: table_state(dst, "dbo.c")[0] == "paused", what="dbo.c paused by the type change")
                # the documented procedure, while dbo.c waits: the column, rows written before the new instance
                # starts (in no change table that has the column), the new instance, rows after it
                retrying(lambda: src.run("ALTER TABLE dbo.c ADD COLUMN x int DEFAULT 3"))
                src.run("INSERT INTO dbo.c VALUES (7, 7, 0.75, 70)")
                src.run("UPDATE dbo.c SET x = 10 * id WHERE id IN (1, 2)")
                enable_instance(src, "c", "dbo_c_v2")
                src.run("INSERT INTO dbo.c VALUES (8, 8, 1.0, 80)")
                src.run("UPDATE dbo.c SET x = 33, n = 333 WHERE id = 3")
                (pending,) = control.list_schema_changes(dst, "default", "pending-review")
                assert pending.change == "type-change"
                dst.run(pending.ddl)
                approved = approve_change(config, pending.id)
                assert approved.approved, approved.message
                wanted = f"SELECT {COLUMNS} FROM dbo.c ORDER BY id"
                wait_for(lambda: _has_column(dst, "x"), what="column x added to the target on resume")
                wait_for(lambda: dst.run(wanted) == src.run(wanted), timeout=60, what="dbo.c equal, x filled")
                flowing = writer.written
                wait_for(lambda: writer.written >= flowing + 10, what="changes flowing after the resume")
            assert not writer.errors
            assert running.alive(), running.failures
            assert_exact(src, dst, "c", COLUMNS)
        assert table_state(dst, "dbo.c")[0] == "active"
        kinds = [(c.change, c.column_name, c.status) for c in control.list_schema_changes(dst, "default")]
        assert ("add-column", "x", "auto-applied") in kinds
        assert ("type-change", "d", "approved") in kinds
        assert ("column-filled", "x", "auto-applied") in kinds
    finally:
        src.close()
        dst.close()


def _has_column(dst: object, column: str) -> bool:
    rows = dst.run(  # type: ignore[attr-defined]
        "SELECT 1 FROM information_schema.columns WHERE table_schema = 'dbo' AND table_name = 'c' AND column_name = :c",
        c=column,
    )
    return bool(rows)


def test_the_same_while_no_pipeline_runs_with_the_approval_from_the_command_line(
    emulated_source_url: str, target_url: str, tmp_path: Path
) -> None:
    """Every step between two ``run --until-caught-up``: the type change, the column and the new instance all
    land before the pipeline sees any of them; ``schema approve`` from the command line."""
    src = connect(emulated_source_url)
    dst = connect(target_url)
    two_cdc_tables(src)
    src.run("CREATE TABLE dbo.c (id int PRIMARY KEY, n int, d numeric(5,2))")
    enable_table(src, "dbo", "c")
    src.run("INSERT INTO dbo.c SELECT g, g, g / 4.0 FROM generate_series(1, 5) g")
    path = write_config(
        tmp_path / "p.yaml", emulated_source_url, target_url, ["dbo.a", "dbo.b", "dbo.c"], snapshot={"mode": "never"}
    )
    first = run_cli("run", "--config", str(path), "--until-caught-up")
    assert first.returncode == 0, first.stderr
    src.run("ALTER TABLE dbo.c ALTER COLUMN d TYPE real")
    src.run("INSERT INTO dbo.c VALUES (6, 6, 0.5)")
    src.run("ALTER TABLE dbo.c ADD COLUMN x int DEFAULT 3")
    src.run("INSERT INTO dbo.c VALUES (7, 7, 0.75, 70)")
    src.run("UPDATE dbo.c SET x = 10 * id WHERE id IN (1, 2)")
    enable_table(src, "dbo", "c", capture_instance="dbo_c_v2")
    src.run("INSERT INTO dbo.c VALUES (8, 8, 1.0, 80)")
    src.run("UPDATE dbo.c SET x = 33, n = 333 WHERE id = 3")
    src.run("INSERT INTO dbo.a VALUES (2, 'a2')")
    second = run_cli("run", "--config", str(path), "--until-caught-up")
    assert second.returncode == 0, second.stderr
    assert table_state(dst, "dbo.c")[0] == "paused"
    assert dst.run("SELECT id, v FROM dbo.a ORDER BY id") == src.run("SELECT id, v FROM dbo.a ORDER BY id")
    (pending,) = control.list_schema_changes(dst, "default", "pending-review")
    assert (pending.change, pending.column_name) == ("type-change", "d")
    dst.run(pending.ddl)
    approved = run_cli("schema", "approve", "--config", str(path), str(pending.id))
    assert approved.returncode == 0, approved.stderr
    third = run_cli("run", "--config", str(path), "--until-caught-up")
    assert third.returncode == 0, third.stderr
    assert table_state(dst, "dbo.c")[0] == "active"
    wanted = f"SELECT {COLUMNS} FROM dbo.c ORDER BY id"
    assert dst.run(wanted) == src.run(wanted)
    kinds = [(c.change, c.column_name, c.status) for c in control.list_schema_changes(dst, "default")]
    assert ("add-column", "x", "auto-applied") in kinds
    assert ("column-filled", "x", "auto-applied") in kinds
    src.close()
    dst.close()


def test_with_managed_capture_instances_the_column_added_while_paused_gets_its_instance_on_resume(
    emulated_source_url: str, target_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``schema_evolution.manage_capture_instances: true``: the operator only adds the column while the table
    waits for review; the pipeline creates the new instance once the table is back, switches, fills the gap."""
    monkeypatch.setattr(watcher, "CONTROL_POLL_SECONDS", 0.2)
    src = connect(emulated_source_url)
    dst = connect(target_url)
    two_cdc_tables(src)
    src.run("CREATE TABLE dbo.c (id int PRIMARY KEY, n int, d numeric(5,2))")
    enable_table(src, "dbo", "c")
    src.run("INSERT INTO dbo.c SELECT g, g, g / 4.0 FROM generate_series(1, 5) g")
    config = load_config(
        write_config(
            tmp_path / "p.yaml",
            emulated_source_url,
            target_url,
            ["dbo.a", "dbo.b", "dbo.c"],
            snapshot={"mode": "never"},
            schema_evolution={"manage_capture_instances": True, "manage_interval": 0.1},
        )
    )
    query = "SELECT id, n, d FROM dbo.c ORDER BY id"
    wanted = f"SELECT {COLUMNS} FROM dbo.c ORDER BY id"
    try:
        with Running(Pipeline.from_config(config)) as running:
            wait_for(lambda: dst.run(query) == src.run(query), what="dbo.c replicated")
            retrying(lambda: src.run("ALTER TABLE dbo.c ALTER COLUMN d TYPE real"))
            wait_for(lambda: table_state(dst, "dbo.c")[0] == "paused", what="dbo.c paused by the type change")
            retrying(lambda: src.run("ALTER TABLE dbo.c ADD COLUMN x int DEFAULT 3"))
            src.run("INSERT INTO dbo.c VALUES (7, 7, 0.75, 70)")
            src.run("UPDATE dbo.c SET x = 10 * id WHERE id IN (1, 2)")
            (pending,) = control.list_schema_changes(dst, "default", "pending-review")
            dst.run(pending.ddl)
            approved = approve_change(config, pending.id)
            assert approved.approved, approved.message
            wait_for(lambda: _has_column(dst, "x"), timeout=60, what="column x added on resume")
            src.run("INSERT INTO dbo.c VALUES (8, 8, 1.0, 80)")
            wait_for(lambda: dst.run(wanted) == src.run(wanted), timeout=60, what="dbo.c equal, x filled")
            wait_for(lambda: running.instances("dbo.c") == ["dbo_c_v2"], timeout=60, what="old instance retired")
            assert running.alive(), running.failures
        kinds = [(c.change, c.column_name, c.status) for c in control.list_schema_changes(dst, "default")]
        assert ("instance-created", None, "auto-applied") in kinds
        assert ("add-column", "x", "auto-applied") in kinds
        assert ("column-filled", "x", "auto-applied") in kinds
    finally:
        src.close()
        dst.close()
