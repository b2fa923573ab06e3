"""Schema changes followed by a running pipeline (issue 12 points 3-5), each with a writer changing both tables
before, during and after the DDL, and an exact comparison afterwards; each change recorded in
``mssql2pg.schema_changes``."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pg8000.native
import pytest

from mssql2pg import control
from mssql2pg.config import Config, load_config
from mssql2pg.emulator import connect
from mssql2pg.pipeline import watcher
from mssql2pg.pipeline.assembly import Pipeline
from mssql2pg.pipeline.check import run_checks
from mssql2pg.positions import Lsn
from mssql2pg.reconcile.run import Settings, reconcile
from mssql2pg.schema_ops import approve_change
from tests.e2e.pipeline_process import run_cli, write_config
from tests.fixtures.emulator import enable_table, two_cdc_tables
from tests.fixtures.target import table_state
from tests.fixtures.waiting import wait_for
from tests.integration.pipeline.schema_workload import (
    Running,
    Writer,
    assert_exact,
    enable_instance,
    retrying,
    rows,
)

pytestmark = pytest.mark.integration


def _changes(dst: pg8000.native.Connection) -> list[tuple[object, ...]]:
    return [
        (c.source_table, c.change, c.status, c.capture_instance, c.column_name, c.old_type, c.new_type)
        for c in control.list_schema_changes(dst, "default")
    ]


def _config(tmp_path: Path, source_url: str, target_url: str) -> Config:
    return load_config(
        write_config(tmp_path / "p.yaml", source_url, target_url, ["dbo.a", "dbo.b"], snapshot={"mode": "never"})
    )


def _equal(src: pg8000.native.Connection, dst: pg8000.native.Connection, table: str, columns: str) -> None:
    query = f"SELECT {columns} FROM dbo.{table} ORDER BY id"
    wait_for(lambda: dst.run(query) == src.run(query), timeout=60, what=f"dbo.{table} equal to the source")
    assert_exact(src, dst, table, columns)


def test_an_added_column_is_added_to_the_target_and_filled_from_the_new_instance_on(
    emulated_source_url: str, target_url: str, tmp_path: Path
) -> None:
    src = connect(emulated_source_url)
    dst = connect(target_url)
    two_cdc_tables(src)
    try:
        config = _config(tmp_path, emulated_source_url, target_url)
        with Running(Pipeline.from_config(config)) as running:
            wait_for(lambda: rows(dst, "dbo.a") == rows(src, "dbo.a"), what="dbo.a replicated")
            with Writer(emulated_source_url, first_id=100) as writer:
                wait_for(lambda: writer.written >= 10, what="changes flowing before the DDL")
                (before_ddl,) = dst.run("SELECT lsn FROM mssql2pg.checkpoints")[0]
                retrying(lambda: src.run("ALTER TABLE dbo.a ADD COLUMN note varchar(10) NOT NULL DEFAULT 'dflt'"))
                # between the DDL and the new instance: a value no change table carries (the documented gap)
                src.run("UPDATE dbo.a SET note = 'gap' WHERE id = 1")
                enable_instance(src, "a", "dbo_a_v2")
                wait_for(
                    lambda: running.failures or running.instances("dbo.a") == ["dbo_a", "dbo_a_v2"],
                    what="the pipeline applying dbo_a_v2",
                )
                assert not running.failures, running.failures
                for i in range(100, 110):
                    retrying(lambda i=i: src.run("UPDATE dbo.a SET note = :n WHERE id = :i", n=f"n{i}", i=i))  # type: ignore[misc]
                flowing = writer.written
                wait_for(lambda: writer.written >= flowing + 20, what="changes flowing after the switch")
            assert not writer.errors
            _equal(src, dst, "b", "id, v")
            # a key whose change the old instance carried and the pipeline applied after the target column was
            # added (a commit LSN between the checkpoint when it noticed the new instance and the new instance's
            # start) has no value for the new column in any change table: the pipeline sets it from the source
            # table once its checkpoint has passed the new instance's start (column-filled)
            gap = {
                int(r[0])
                for r in src.run(
                    'SELECT DISTINCT id FROM cdc."dbo_a_CT" WHERE "__$start_lsn" > :before AND "__$start_lsn" < '
                    "(SELECT start_lsn FROM cdc.change_tables WHERE capture_instance = 'dbo_a_v2')",
                    before=before_ddl,
                )
            }
            assert 1 in gap
            wait_for(
                lambda: any(c[1] == "column-filled" for c in _changes(dst)), timeout=60, what="the added column filled"
            )
            _equal(src, dst, "a", "id, v, note")  # every row, the gap's included, without an operator step
            assert dst.run("SELECT note FROM dbo.a WHERE id = 1") == [["gap"]]
            filled = "SELECT count(*) FROM dbo.a WHERE NOT (id = ANY(CAST(:gap AS int[]))) AND note = 'dflt'"
            assert dst.run(filled, gap=sorted(gap))[0][0] > 0  # rows from before the ALTER: the default
            assert dst.run(
                "SELECT data_type, character_maximum_length, is_nullable FROM information_schema.columns "
                "WHERE table_schema = 'dbo' AND table_name = 'a' AND column_name = 'note'"
            ) == [["character varying", 10, "YES"]]
            assert running.alive()
            assert running.pipeline.wait_caught_up(60), "the pipeline did not catch up with the source"
        changes = _changes(dst)
        assert ("dbo.a", "instance-switch", "auto-applied", "dbo_a_v2", None, None, None) in changes
        assert ("dbo.a", "add-column", "auto-applied", "dbo_a_v2", "note", None, "varchar(10)") in changes
        assert ("dbo.a", "column-filled", "auto-applied", "dbo_a_v2", "note", None, None) in changes
        assert len(changes) == 3
        stored = {c.change: c for c in control.list_schema_changes(dst, "default")}
        added = stored["add-column"]
        assert added.applied_at is not None
        assert added.ddl is not None
        assert added.ddl.endswith("ADD COLUMN IF NOT EXISTS \"note\" varchar(10) DEFAULT 'dflt'")
        assert added.detail is not None
        assert "column-filled" in added.detail
        assert "rows set from the source table" in str(stored["column-filled"].detail)
        assert table_state(dst, "dbo.a")[0] == "active"
        listed = run_cli("schema", "list", "--json", "--config", str(tmp_path / "p.yaml"))
        assert listed.returncode == 0, listed.stderr
        assert [(c["change"], c["status"], c["column_name"]) for c in json.loads(listed.stdout)] == [
            ("instance-switch", "auto-applied", None),
            ("add-column", "auto-applied", "note"),
            ("column-filled", "auto-applied", "note"),
        ]
        table = run_cli("schema", "list", "--config", str(tmp_path / "p.yaml"))
        assert table.returncode == 0, table.stderr
        assert "add-column" in table.stdout
        # nothing left for reconcile to find
        (report,) = reconcile(config, ["dbo.a"], Settings(settle_seconds=0))
        assert report.status == "consistent", report
        query = "SELECT id, v, note FROM dbo.a ORDER BY id"
        assert dst.run(query) == src.run(query)
    finally:
        src.close()
        dst.close()


def _table_c(src: pg8000.native.Connection) -> None:
    src.run("CREATE TABLE dbo.c (id int PRIMARY KEY, n int, s varchar(5), d numeric(5,2), gone int NOT NULL)")
    enable_table(src, "dbo", "c")
    for i in range(1, 6):
        src.run("INSERT INTO dbo.c VALUES (:i, :i, :s, :d, :i)", i=i, s=f"s{i}", d=Decimal(i) / 4)


def _target_type(dst: pg8000.native.Connection, table: str, column: str) -> str:
    ((pg_type,),) = dst.run(
        "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a WHERE a.attrelid = CAST(:t AS regclass) "
        "AND a.attname = :c",
        t=f"dbo.{table}",
        c=column,
    )
    return str(pg_type)


def test_type_changes_widen_the_target_or_pause_only_their_table_until_approved(
    emulated_source_url: str, target_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watcher, "CONTROL_POLL_SECONDS", 0.2)  # the approval is taken up quickly
    src = connect(emulated_source_url)
    dst = connect(target_url)
    two_cdc_tables(src)
    _table_c(src)
    config = load_config(
        write_config(
            tmp_path / "p.yaml",
            emulated_source_url,
            target_url,
            ["dbo.a", "dbo.b", "dbo.c"],
            snapshot={"mode": "never"},
        )
    )
    c_columns = "id, n, s, d"
    try:
        with Running(Pipeline.from_config(config)) as running:
            _equal(src, dst, "c", c_columns)
            with Writer(emulated_source_url, first_id=100) as writer:
                wait_for(lambda: writer.written >= 10, what="changes flowing before the DDL")
                # safe widenings: the target follows on its own
                retrying(lambda: src.run("ALTER TABLE dbo.c ALTER COLUMN n TYPE bigint"))
                retrying(lambda: src.run("ALTER TABLE dbo.c ALTER COLUMN s TYPE varchar(20)"))
                src.run("INSERT INTO dbo.c VALUES (6, 5000000000, 'a longer value', 1.5, 6)")
                _equal(src, dst, "c", c_columns)
                assert _target_type(dst, "c", "n") == "bigint"
                assert _target_type(dst, "c", "s") == "character varying(20)"
                # a dropped column: kept in the target, NULL from then on
                retrying(lambda: src.run("ALTER TABLE dbo.c DROP COLUMN gone"))
                src.run("INSERT INTO dbo.c VALUES (7, 7, 's7', 1.75)")
                _equal(src, dst, "c", c_columns)
                assert dst.run("SELECT id, gone FROM dbo.c WHERE id >= 5 ORDER BY id") == [[5, 5], [6, 6], [7, None]]
                # not a widening: dbo.c pauses, its changes wait in CDC, the others go on
                retrying(lambda: src.run("ALTER TABLE dbo.c ALTER COLUMN d TYPE real"))
                src.run("INSERT INTO dbo.c VALUES (8, 8, 's8', 0.125)")
                src.run("UPDATE dbo.c SET d = 2.5 WHERE id = 1")
                wait_for(lambda: table_state(dst, "dbo.c")[0] == "paused", what="dbo.c paused by the type change")
                flowing = writer.written
                wait_for(lambda: writer.written >= flowing + 20, what="changes flowing while dbo.c is paused")
            assert not writer.errors
            for table in ("a", "b"):
                _equal(src, dst, table, "id, v")
            assert dst.run("SELECT count(*) FROM dbo.c WHERE id = 8") == [[0]]
            (pending,) = control.list_schema_changes(dst, "default", "pending-review")[-1:]
            assert (pending.change, pending.column_name, pending.old_type, pending.new_type) == (
                "type-change",
                "d",
                "numeric(5,2)",
                "real",
            )
            assert pending.ddl == 'ALTER TABLE "dbo"."c" ALTER COLUMN "d" TYPE real USING "d"::real'
            reason = table_state(dst, "dbo.c")[1]
            assert reason is not None
            assert f"schema change {pending.id}" in reason
            # its position is held, and `check` measures the retention margin from there
            ((held,),) = dst.run("SELECT resume_after FROM mssql2pg.table_state WHERE source_table = 'dbo.c'")
            assert held is not None
            findings = [f.what for f in run_checks(config, lambda: connect(target_url)).findings]
            assert [f for f in findings if f.startswith(f"dbo.c: checkpoint {Lsn.from_bytes(held)} (paused")], findings

            # approving before the target is migrated is refused; after, dbo.c resumes from where it stopped
            refused = approve_change(config, pending.id)
            assert not refused.approved
            assert "numeric(5,2)" in refused.message
            assert table_state(dst, "dbo.c")[0] == "paused"
            dst.run(pending.ddl)
            approved = approve_change(config, pending.id)
            assert approved.approved, approved.message
            wait_for(lambda: running.instances("dbo.c") == ["dbo_c"], what="the running pipeline taking dbo.c back")
            _equal(src, dst, "c", c_columns)
            assert running.alive(), running.failures
        assert table_state(dst, "dbo.c")[0] == "active"
        changes = _changes(dst)
        assert ("dbo.c", "type-change", "auto-applied", "dbo_c", "n", "integer", "bigint") in changes
        assert ("dbo.c", "type-change", "auto-applied", "dbo_c", "s", "character varying(5)", "varchar(20)") in changes
        assert ("dbo.c", "drop-column", "pending-review", "dbo_c", "gone", "integer", None) in changes
        assert ("dbo.c", "type-change", "approved", "dbo_c", "d", "numeric(5,2)", "real") in changes
        assert not [c for c in changes if c[0] != "dbo.c"]
        (dropped,) = [c for c in control.list_schema_changes(dst, "default") if c.change == "drop-column"]
        assert dropped.ddl == 'ALTER TABLE "dbo"."c" DROP COLUMN "gone"'
        assert dropped.detail is not None
        assert 'CREATE TABLE "dbo"."c_gone_archive" AS SELECT "id", "gone" FROM "dbo"."c"' in dropped.detail
        # approving a dropped column records a decision: the column dropped from the target, or kept on purpose
        undecided = approve_change(config, dropped.id)
        assert not undecided.approved
        assert "column gone is still in the target table dbo.c" in undecided.message
        assert f"mssql2pg schema approve {dropped.id} --keep-column" in undecided.message
        kept = approve_change(config, dropped.id, keep_column=True)
        assert kept.approved, kept.message
        assert "the target keeps column gone" in kept.message
        assert ("dbo.c", "drop-column", "approved", "dbo_c", "gone", "integer", None) in _changes(dst)
    finally:
        src.close()
        dst.close()


def test_ddl_the_target_refuses_is_recorded_failed_and_pauses_only_its_table(
    emulated_source_url: str, target_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The status ``failed``: the target refuses the ADD COLUMN (here an event trigger; in life a missing
    privilege or a lock timeout). The change is recorded ``failed`` with the error, the table pauses with its
    position held, the others go on; the operator runs the DDL, ``schema approve`` re-checks and resumes it."""
    monkeypatch.setattr(watcher, "CONTROL_POLL_SECONDS", 0.2)
    src = connect(emulated_source_url)
    dst = connect(target_url)
    two_cdc_tables(src)
    config = _config(tmp_path, emulated_source_url, target_url)
    try:
        with Running(Pipeline.from_config(config)) as running:
            wait_for(lambda: rows(dst, "dbo.a") == rows(src, "dbo.a"), what="dbo.a replicated")
            dst.run(
                "CREATE FUNCTION refuse_alter() RETURNS event_trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'no ALTER TABLE here'; END $$"
            )
            dst.run("CREATE EVENT TRIGGER refuse_alter ON ddl_command_start WHEN TAG IN ('ALTER TABLE') "
                    "EXECUTE FUNCTION refuse_alter()")  # fmt: skip
            with Writer(emulated_source_url, first_id=100) as writer:
                wait_for(lambda: writer.written >= 10, what="changes flowing before the DDL")
                retrying(lambda: src.run("ALTER TABLE dbo.a ADD COLUMN note varchar(10)"))
                enable_instance(src, "a", "dbo_a_v2")
                wait_for(lambda: table_state(dst, "dbo.a")[0] == "paused", what="dbo.a paused by the refused DDL")
                for i in range(100, 105):
                    retrying(lambda i=i: src.run("UPDATE dbo.a SET note = :n WHERE id = :i", n=f"n{i}", i=i))  # type: ignore[misc]
                flowing = writer.written
                wait_for(lambda: writer.written >= flowing + 20, what="changes flowing while dbo.a is paused")
            assert not writer.errors
            _equal(src, dst, "b", "id, v")
            (failed,) = control.list_schema_changes(dst, "default", "failed")
            assert (failed.change, failed.column_name) == ("add-column", "note")
            assert failed.detail is not None
            assert "no ALTER TABLE here" in failed.detail
            assert failed.ddl is not None

            dst.run("DROP EVENT TRIGGER refuse_alter")
            refused = approve_change(config, failed.id)
            assert not refused.approved
            assert "note is missing" in refused.message
            dst.run(failed.ddl)
            approved = approve_change(config, failed.id)
            assert approved.approved, approved.message
            wait_for(lambda: running.instances("dbo.a") == ["dbo_a", "dbo_a_v2"], what="dbo.a taken back")
            # the changes made while paused were held in CDC and arrive now
            query = "SELECT id, v, note FROM dbo.a WHERE id BETWEEN 100 AND 104 ORDER BY id"
            wait_for(lambda: dst.run(query) == src.run(query), timeout=60, what="the held changes applied")
            assert running.alive(), running.failures
            # every change applied before the stop: reconcile must not find the target behind
            assert running.pipeline.wait_caught_up(60), "the pipeline did not catch up with the source"
        assert table_state(dst, "dbo.a")[0] == "active"
        (report,) = reconcile(config, ["dbo.a"], Settings(settle_seconds=0, repair=True))
        assert report.status == "consistent", report
        assert rows(dst, "dbo.a") == rows(src, "dbo.a")
        statuses = [(c.change, c.status) for c in control.list_schema_changes(dst, "default")]
        assert ("add-column", "approved") in statuses
    finally:
        src.close()
        dst.close()
