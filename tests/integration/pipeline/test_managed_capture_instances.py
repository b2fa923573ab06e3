"""The pipeline managing capture instances itself (``schema_evolution.manage_capture_instances``, issue 12 point
8): an ``ALTER TABLE ... ADD COLUMN`` at the source while a writer changes both tables, and no operator step
after it. The running pipeline enables the new capture instance, switches to it, retires the old one once its
checkpoint has passed the new one's start, and the new column's values arrive; an exact row-by-row comparison and
zero dead letters afterwards. A login that is not ``db_owner`` gets a ``failed`` record and no attempt, and a
process that does not write the group does nothing."""

from __future__ import annotations

import secrets
import threading
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pg8000.exceptions
import pg8000.native
import pytest
import sqlalchemy as sa

from mssql2pg import control
from mssql2pg.config import load_config
from mssql2pg.emulator import connect
from mssql2pg.model import TableId
from mssql2pg.observability import Observability
from mssql2pg.pipeline.assembly import Pipeline
from mssql2pg.pipeline.capture_instances import InstanceManager
from mssql2pg.pipeline.connections import source_engine
from tests.e2e.pipeline_process import write_config
from tests.fixtures.emulator import enable_table, two_cdc_tables
from tests.fixtures.waiting import wait_for
from tests.integration.pipeline.schema_workload import Running, Writer, assert_exact, in_transaction, retrying

pytestmark = pytest.mark.integration


def _instances(src: pg8000.native.Connection, table: str) -> list[str]:
    return [
        str(r[0])
        for r in src.run(
            "SELECT capture_instance FROM cdc.change_tables ct JOIN sys.tables t ON t.object_id = ct.source_object_id "
            "WHERE t.name = :t ORDER BY capture_instance",
            t=table,
        )
    ]


class NoteWriter:
    """Writes the added column ``note`` of ``dbo.a``: inserts with it and updates of it, until stopped."""

    def __init__(self, url: str, first_id: int) -> None:
        self._url, self._next = url, first_id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._write, name="note-writer", daemon=True)
        self.errors: list[BaseException] = []
        self.written = 0

    def __enter__(self) -> NoteWriter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _write(self) -> None:
        conn = connect(self._url)
        try:
            while not self._stop.is_set():
                i = self._next
                in_transaction(
                    conn,
                    ("INSERT INTO dbo.a (id, v, note) VALUES (:i, :v, :n)", {"i": i, "v": f"a{i}", "n": f"n{i}"}),
                    ("UPDATE dbo.a SET note = :n WHERE id = :j", {"n": f"u{i}", "j": 1}),
                )
                self._next += 1
                self.written += 1
                self._stop.wait(0.01)
        except BaseException as exc:  # surfaced by the test's assertion
            self.errors.append(exc)
        finally:
            conn.close()


def test_an_added_column_gets_its_capture_instance_and_the_old_one_is_retired_without_an_operator(
    emulated_source_url: str, target_url: str, tmp_path: Path
) -> None:
    src = connect(emulated_source_url)
    dst = connect(target_url)
    two_cdc_tables(src)
    config = load_config(
        write_config(
            tmp_path / "p.yaml",
            emulated_source_url,
            target_url,
            ["dbo.a", "dbo.b"],
            snapshot={"mode": "never"},
            schema_evolution={"manage_capture_instances": True, "manage_interval": 0.1},
        )
    )
    try:
        with Running(Pipeline.from_config(config)) as running:
            wait_for(lambda: dst.run("SELECT count(*) FROM dbo.a") == [[1]], what="dbo.a replicated")
            with Writer(emulated_source_url, first_id=100) as writer:
                wait_for(lambda: writer.written >= 10, what="changes flowing before the DDL")
                retrying(lambda: src.run("ALTER TABLE dbo.a ADD COLUMN note text"))
                # no operator step: the pipeline enables dbo_a_v2 itself
                wait_for(lambda: "dbo_a_v2" in _instances(src, "a"), timeout=60, what="dbo_a_v2 enabled")
                with NoteWriter(emulated_source_url, first_id=100_000) as notes:
                    wait_for(lambda: notes.written >= 30, what="values of the new column written")
                    # ... switches to it and retires dbo_a once the checkpoint passed dbo_a_v2's start
                    wait_for(
                        lambda: running.failures or running.instances("dbo.a") == ["dbo_a_v2"],
                        timeout=60,
                        what="the running pipeline applying only dbo_a_v2",
                    )
                    assert not running.failures, running.failures
                    assert _instances(src, "a") == ["dbo_a_v2"]
                    flowing = notes.written
                    wait_for(lambda: notes.written >= flowing + 20, what="new-column values after the retirement")
                assert not notes.errors
            assert not writer.errors
            for table, columns in (("a", "id, v, note"), ("b", "id, v")):
                query = f"SELECT {columns} FROM dbo.{table} ORDER BY id"
                wait_for(lambda q=query: dst.run(q) == src.run(q), timeout=60, what=f"dbo.{table} equal")  # type: ignore[misc]
                assert_exact(src, dst, table, columns)
            assert dst.run("SELECT count(*) FROM dbo.a WHERE note LIKE 'n%'")[0][0] >= 50
            assert running.alive(), running.failures
        assert not running.failures
        assert dst.run("SELECT count(*) FROM mssql2pg.dead_letters") == [[0]]
        changes = [
            (c.source_table, c.change, c.status, c.capture_instance, c.column_name)
            for c in control.list_schema_changes(dst, "default")
        ]
        assert changes == [
            ("dbo.a", "instance-created", "auto-applied", "dbo_a_v2", None),
            ("dbo.a", "instance-switch", "auto-applied", "dbo_a_v2", None),
            ("dbo.a", "add-column", "auto-applied", "dbo_a_v2", "note"),
            ("dbo.a", "instance-retired", "auto-applied", "dbo_a", None),
        ]
        created = next(c for c in control.list_schema_changes(dst, "default") if c.change == "instance-created")
        assert created.ddl is not None
        assert created.ddl.startswith("EXEC sys.sp_cdc_enable_table @source_schema = N'dbo', @source_name = N'a'")
    finally:
        src.close()
        dst.close()


def _as(url: str, user: str, password: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{parts.hostname}:{parts.port}"))


def test_without_db_owner_nothing_is_attempted_and_the_change_is_recorded_failed_once(
    emulated_source_url: str, target_url: str, tmp_path: Path
) -> None:
    src = connect(emulated_source_url)
    dst = connect(target_url)
    two_cdc_tables(src)
    reader, password = f"r_{uuid.uuid4().hex[:8]}", secrets.token_hex(8)
    src.run(f"CREATE ROLE {reader} LOGIN PASSWORD '{password}'")
    for grant in (
        f"GRANT USAGE ON SCHEMA cdc TO {reader}",
        f"GRANT SELECT ON ALL TABLES IN SCHEMA cdc TO {reader}",
        f"GRANT USAGE ON SCHEMA dbo TO {reader}",
        f"GRANT SELECT ON dbo.a, dbo.b TO {reader}",
    ):
        src.run(grant)
    src.run("ALTER TABLE dbo.a ADD COLUMN note text")
    config = load_config(
        write_config(
            tmp_path / "p.yaml",
            _as(emulated_source_url, reader, password),
            target_url,
            ["dbo.a", "dbo.b"],
            schema_evolution={"manage_capture_instances": True},
        )
    )
    engine = source_engine(config)
    tables = [TableId("dbo", "a"), TableId("dbo", "b")]
    try:
        standby = InstanceManager(config, engine, tables, Observability(), is_writer=lambda: False)
        assert standby.check_once() == []  # not the group's writer: not even a look at the catalog
        assert not control.control_table_exists(dst, "schema_changes")

        writer = InstanceManager(config, engine, tables, Observability(), is_writer=lambda: True)
        assert writer.check_once() == []
        assert writer.check_once() == []
        assert _instances(src, "a") == ["dbo_a"]  # nothing was attempted
        [failed] = control.list_schema_changes(dst, "default")
        assert (failed.source_table, failed.change, failed.status, failed.capture_instance) == (
            "dbo.a",
            "instance-created",
            "failed",
            "dbo_a_v2",
        )
        assert failed.detail is not None
        assert "column note added" in failed.detail
        assert "not db_owner" in failed.detail
        assert failed.ddl is not None
        assert "@capture_instance = N'dbo_a_v2'" in failed.ddl
    finally:
        engine.dispose()
        src.close()
        dst.close()


def test_a_dropped_column_gets_an_instance_without_it_and_the_old_one_is_retired(
    emulated_source_url: str, target_url: str, tmp_path: Path
) -> None:
    """DROP COLUMN: the old instance keeps capturing the column as NULL; the pipeline enables one that no longer
    has it (every remaining column, as the old one captured every column), switches, retires the old one. The
    target column stays (never dropped automatically), NULL from then on; the drop waits for review."""
    src = connect(emulated_source_url)
    dst = connect(target_url)
    src.run("CREATE SCHEMA dbo")
    src.run("CREATE TABLE dbo.c (id int PRIMARY KEY, v text, extra int)")
    enable_table(src, "dbo", "c")
    src.run("INSERT INTO dbo.c VALUES (1, 'c1', 10), (2, 'c2', 20)")
    config = load_config(
        write_config(
            tmp_path / "p.yaml",
            emulated_source_url,
            target_url,
            ["dbo.c"],
            snapshot={"mode": "never"},
            schema_evolution={"manage_capture_instances": True, "manage_interval": 0.1},
        )
    )
    try:
        with Running(Pipeline.from_config(config)) as running:
            wait_for(lambda: dst.run("SELECT count(*) FROM dbo.c") == [[2]], what="dbo.c replicated")
            src.run("ALTER TABLE dbo.c DROP COLUMN extra")
            src.run("INSERT INTO dbo.c VALUES (3, 'c3')")
            wait_for(lambda: "dbo_c_v2" in _instances(src, "c"), timeout=60, what="dbo_c_v2 enabled")
            # a commit after the new instance's start: the switch can commit past it, then dbo_c is retired
            src.run("INSERT INTO dbo.c VALUES (4, 'c4')")
            wait_for(
                lambda: running.failures or running.instances("dbo.c") == ["dbo_c_v2"],
                timeout=60,
                what="dbo_c_v2 created, switched to, dbo_c retired",
            )
            assert not running.failures, running.failures
            src.run("UPDATE dbo.c SET v = 'c1+' WHERE id = 1")
            query = "SELECT id, v FROM dbo.c ORDER BY id"
            wait_for(lambda: dst.run(query) == src.run(query), what="dbo.c equal")
            assert_exact(src, dst, "c", "id, v")
        assert not running.failures
        assert _instances(src, "c") == ["dbo_c_v2"]
        assert [r[0] for r in src.run(
            "SELECT cc.column_name FROM cdc.captured_columns cc JOIN cdc.change_tables ct USING (object_id) "
            "WHERE ct.capture_instance = 'dbo_c_v2' ORDER BY cc.column_ordinal"
        )] == ["id", "v"]  # fmt: skip
        assert dst.run("SELECT id, extra FROM dbo.c ORDER BY id") == [[1, 10], [2, 20], [3, None], [4, None]]
        changes = [(c.change, c.status, c.capture_instance) for c in control.list_schema_changes(dst, "default")]
        # the reader or the manager may see the drop first: the order of the first two varies
        assert sorted(changes) == [
            ("drop-column", "pending-review", "dbo_c"),  # recorded once, not again for dbo_c_v2
            ("instance-created", "auto-applied", "dbo_c_v2"),
            ("instance-retired", "auto-applied", "dbo_c"),
            ("instance-switch", "auto-applied", "dbo_c_v2"),
        ]
        assert changes.index(("instance-switch", "auto-applied", "dbo_c_v2")) < changes.index(
            ("instance-retired", "auto-applied", "dbo_c")
        )
        created = next(c for c in control.list_schema_changes(dst, "default") if c.change == "instance-created")
        assert "column extra dropped" in str(created.detail)
        assert dst.run("SELECT count(*) FROM mssql2pg.dead_letters") == [[0]]
    finally:
        src.close()
        dst.close()


class Killed(BaseException):
    """Stands for a kill -9 of the process right after the source ran the procedure."""


def test_a_crash_right_after_the_instance_is_created_leaves_its_record(
    emulated_source_url: str, target_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The record is written before ``sp_cdc_enable_table`` runs (and completed by the next look if the process
    dies in between): an instance created by the pipeline is never without its ``instance-created`` record, and
    the next look neither creates another instance nor records it twice."""
    src = connect(emulated_source_url)
    dst = connect(target_url)
    two_cdc_tables(src)
    src.run("ALTER TABLE dbo.a ADD COLUMN note text")
    config = load_config(
        write_config(
            tmp_path / "p.yaml",
            emulated_source_url,
            target_url,
            ["dbo.a", "dbo.b"],
            schema_evolution={"manage_capture_instances": True},
        )
    )
    engine = source_engine(config)
    tables = [TableId("dbo", "a"), TableId("dbo", "b")]
    real_call = InstanceManager._call

    def call_then_die(self: InstanceManager, statement: object, arguments: object) -> None:
        real_call(self, statement, arguments)  # type: ignore[arg-type]
        raise Killed

    try:
        dying = InstanceManager(config, engine, tables, Observability(), is_writer=lambda: True)
        monkeypatch.setattr(InstanceManager, "_call", call_then_die)
        with pytest.raises(Killed):
            dying.check_once()
        monkeypatch.undo()
        assert _instances(src, "a") == ["dbo_a", "dbo_a_v2"]
        [created] = control.list_schema_changes(dst, "default")
        assert (created.source_table, created.change, created.status, created.capture_instance) == (
            "dbo.a",
            "instance-created",
            "auto-applied",
            "dbo_a_v2",
        )
        assert created.ddl is not None
        assert "sp_cdc_enable_table" in created.ddl
        again = InstanceManager(config, engine, tables, Observability(), is_writer=lambda: True)
        again.check_once()
        assert _instances(src, "a") == ["dbo_a", "dbo_a_v2"]
        assert [c.id for c in control.list_schema_changes(dst, "default")] == [created.id]
    finally:
        engine.dispose()
        src.close()
        dst.close()


def test_a_procedure_the_source_refuses_turns_its_record_into_failed_once(
    emulated_source_url: str, target_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The login is db_owner, yet the source refuses ``sp_cdc_enable_table`` for lack of permission: the record
    written before the call says ``failed`` with the server's words, once, and nothing is attempted again."""
    src = connect(emulated_source_url)
    dst = connect(target_url)
    two_cdc_tables(src)
    src.run("ALTER TABLE dbo.a ADD COLUMN note text")
    config = load_config(
        write_config(
            tmp_path / "p.yaml",
            emulated_source_url,
            target_url,
            ["dbo.a", "dbo.b"],
            schema_evolution={"manage_capture_instances": True},
        )
    )
    engine = source_engine(config)
    calls: list[object] = []

    def refused(self: InstanceManager, statement: object, arguments: object) -> None:
        calls.append(arguments)
        denied = pg8000.exceptions.DatabaseError({"S": "ERROR", "C": "42501", "M": "permission denied for cdc"})
        raise sa.exc.DBAPIError("CALL sys.sp_cdc_enable_table", {}, denied)

    monkeypatch.setattr(InstanceManager, "_call", refused)
    try:
        manager = InstanceManager(
            config, engine, [TableId("dbo", "a"), TableId("dbo", "b")], Observability(), is_writer=lambda: True
        )
        assert manager.check_once() == []
        assert manager.check_once() == []
        assert _instances(src, "a") == ["dbo_a"]
        [failed] = control.list_schema_changes(dst, "default")
        assert (failed.change, failed.status, failed.capture_instance, failed.applied_at) == (
            "instance-created",
            "failed",
            "dbo_a_v2",
            None,
        )
        assert failed.detail is not None
        assert "permission denied for cdc" in failed.detail
        assert len(calls) == 1
    finally:
        engine.dispose()
        src.close()
        dst.close()
