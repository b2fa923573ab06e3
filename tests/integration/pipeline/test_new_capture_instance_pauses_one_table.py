"""A second capture instance on a replicated table (SQL Server's way to follow a schema change) pauses only that
table while the pipeline runs (issue 11, deliverable 4).

Until the capture-instance switch exists (issue 12), a change of a capture instance the pipeline was not built
with must not stop the process: the table gets state ``paused`` with a reason naming the new instance, the other
tables keep replicating with changes flowing before, during and after the ``sp_cdc_enable_table``. The
remediation the pause names (``mssql2pg resync``) brings the table back into the running pipeline.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pg8000.native
import pytest

from mssql2pg.config import load_config
from mssql2pg.emulator import connect
from mssql2pg.pipeline import watcher
from mssql2pg.pipeline.assembly import Pipeline
from mssql2pg.pipeline.resync import resync_table
from tests.e2e.pipeline_process import write_config
from tests.fixtures.emulator import enable_table, two_cdc_tables
from tests.fixtures.target import table_state
from tests.fixtures.waiting import wait_for

pytestmark = pytest.mark.integration


def _deadlocked(exc: pg8000.native.DatabaseError) -> bool:
    """The emulator's ``sp_cdc_enable_table`` re-creates the table's capture triggers, which can deadlock with a
    concurrent writer (SQLSTATE 40P01, an emulator limit: SQL Server's enable waits for its schema lock
    instead). Either side may be the victim; like an operator or an application, it tries again."""
    return isinstance(exc.args[0], dict) and exc.args[0].get("C") == "40P01"


def _enable_second_instance(conn: pg8000.native.Connection) -> None:
    for _attempt in range(20):
        try:
            enable_table(conn, "dbo", "a", capture_instance="dbo_a_v2")
        except pg8000.native.DatabaseError as exc:
            if not _deadlocked(exc):
                raise
            continue
        return
    pytest.fail("sp_cdc_enable_table kept deadlocking with the writer")


def _in_transaction(conn: pg8000.native.Connection, *statements: tuple[str, dict[str, object]]) -> None:
    for _attempt in range(20):
        try:
            conn.run("BEGIN")
            for sql, params in statements:
                conn.run(sql, **params)
            conn.run("COMMIT")
        except pg8000.native.DatabaseError as exc:
            conn.run("ROLLBACK")
            if not _deadlocked(exc):
                raise
            continue
        return
    pytest.fail("the writer kept deadlocking with sp_cdc_enable_table")


def _rows(conn: pg8000.native.Connection, table: str) -> list[list[object]]:
    return conn.run(f"SELECT id, v FROM {table} ORDER BY id")


def _same(src: pg8000.native.Connection, dst: pg8000.native.Connection, table: str) -> Callable[[], bool]:
    """A probe: every row and column of ``table`` equal in source and target."""
    return lambda: _rows(dst, table) == _rows(src, table)


class _Writer:
    """Changes both source tables until stopped: inserts, updates and deletes, some transactions spanning both."""

    def __init__(self, url: str, first_id: int) -> None:
        self._url = url
        self._next = first_id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._write, name="writer", daemon=True)
        self.errors: list[BaseException] = []
        self.written = 0

    def __enter__(self) -> _Writer:
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
                _in_transaction(
                    conn,
                    ("INSERT INTO dbo.a VALUES (:i, :v)", {"i": i, "v": f"a{i}"}),
                    ("INSERT INTO dbo.b VALUES (:i, :v)", {"i": i, "v": f"b{i}"}),
                )
                _in_transaction(conn, ("UPDATE dbo.b SET v = v || '+' WHERE id = :i", {"i": i - 1}))
                if i % 3 == 0:
                    _in_transaction(conn, ("DELETE FROM dbo.b WHERE id = :i", {"i": i - 2}))
                self._next += 1
                self.written += 1
                self._stop.wait(0.01)
        except BaseException as exc:  # surfaced by the test's assertion
            self.errors.append(exc)
        finally:
            conn.close()


def test_second_capture_instance_pauses_its_table_and_the_other_keeps_replicating(
    emulated_source_url: str, target_url: str, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(watcher, "CONTROL_POLL_SECONDS", 0.2)  # the resync at the end: taken back quickly
    src = connect(emulated_source_url)
    dst = connect(target_url)
    two_cdc_tables(src)
    for i in range(2, 6):
        src.run("INSERT INTO dbo.a VALUES (:i, :v)", i=i, v=f"a{i}")
    config = load_config(write_config(tmp_path / "p.yaml", emulated_source_url, target_url, ["dbo.a", "dbo.b"]))
    pipeline = Pipeline.from_config(config)
    stop = threading.Event()
    failures: list[BaseException] = []

    def run() -> None:
        try:
            pipeline.run(stop)
        except BaseException as exc:  # the process would have exited: the assertion below names it
            failures.append(exc)

    running = threading.Thread(target=run, name="pipeline", daemon=True)
    running.start()
    try:
        before = _rows(src, "dbo.a")
        wait_for(lambda: _rows(dst, "dbo.a") == before, what="dbo.a replicated before the schema change")

        with _Writer(emulated_source_url, first_id=100) as writer:
            wait_for(lambda: writer.written >= 20, what="changes flowing before the new capture instance")
            _enable_second_instance(src)
            wait_for(
                lambda: failures or table_state(dst, "dbo.a")[0] == "paused",
                what="dbo.a paused after its second capture instance",
            )
            assert not failures, f"the pipeline stopped: {failures}"
            flowing = writer.written
            wait_for(lambda: writer.written >= flowing + 20, what="changes flowing after the pause")
        assert not writer.errors

        wait_for(_same(src, dst, "dbo.b"), timeout=60, what="dbo.b in the target equal to the source")
        assert running.is_alive(), f"the pipeline stopped: {failures}"
        assert not failures

        state, reason, remediation = table_state(dst, "dbo.a")
        assert state == "paused"
        assert reason is not None
        assert "dbo_a_v2" in reason
        assert "capture instance" in reason
        assert remediation is not None
        assert "mssql2pg resync dbo.a" in remediation
        assert table_state(dst, "dbo.b")[0] == "active"
        # dbo.a holds what it held before the schema change plus, at most, inserts the old instance covers (before
        # the new instance's start LSN); nothing only the new instance carries was applied
        applied = _rows(dst, "dbo.a")
        old_covers = {
            row[0]
            for row in src.run(
                'SELECT id FROM cdc."dbo_a_CT" WHERE "__$start_lsn" < '
                "(SELECT start_lsn FROM cdc.change_tables WHERE capture_instance = 'dbo_a_v2')"
            )
        }
        source_a = {row[0]: row for row in _rows(src, "dbo.a")}
        assert applied[: len(before)] == before
        assert {row[0] for row in applied} <= old_covers
        assert all(source_a[row[0]] == row for row in applied)
        assert "dbo.a" not in {str(t.source) for t in pipeline.tables}
        assert "dbo.b" in {str(t.source) for t in pipeline.tables}

        # the remediation it names works: a resync loads dbo.a from the new instance, and the running pipeline takes
        # it back with both capture instances while changes keep flowing
        with _Writer(emulated_source_url, first_id=10_000) as writer:
            wait_for(lambda: writer.written >= 10, what="changes flowing before the resync")
            resync_table(config, "dbo.a")
            wait_for(
                lambda: "dbo.a" in {str(t.source) for t in pipeline.tables},
                what="the running pipeline applying dbo.a again",
            )
            flowing = writer.written
            wait_for(lambda: writer.written >= flowing + 20, what="changes flowing after the resync")
        assert not writer.errors
        for table in ("dbo.a", "dbo.b"):
            wait_for(_same(src, dst, table), timeout=60, what=f"{table} in the target equal to the source")
        assert table_state(dst, "dbo.a")[0] == "active"
        (resumed,) = [t for t in pipeline.tables if str(t.source) == "dbo.a"]
        assert [ci.name for ci in resumed.instances] == ["dbo_a", "dbo_a_v2"]
        assert running.is_alive(), f"the pipeline stopped: {failures}"
    finally:
        stop.set()
        running.join(timeout=60)
        src.close()
        dst.close()
    assert not running.is_alive()
    assert not failures
