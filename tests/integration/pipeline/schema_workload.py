"""What the schema-evolution tests share (issue 12): a writer changing ``dbo.a`` and ``dbo.b`` the whole time
(some transactions spanning both), DDL that retries the emulator's deadlocks, a pipeline running in a thread, and
an exact comparison of source and target (values and the LSN of each row's last change)."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pg8000.native
import pytest

from mssql2pg.emulator import connect
from mssql2pg.pipeline.assembly import Pipeline
from tests.fixtures.emulator import enable_table


def deadlocked(exc: pg8000.native.DatabaseError) -> bool:
    """The emulator's ``sp_cdc_enable_table`` re-creates the table's capture triggers, which can deadlock with a
    concurrent writer (SQLSTATE 40P01, an emulator limit: SQL Server's enable waits for its schema lock
    instead). Either side may be the victim; like an operator or an application, it tries again."""
    return isinstance(exc.args[0], dict) and exc.args[0].get("C") == "40P01"


def retrying(action: Callable[[], object]) -> None:
    """``action`` (DDL or a CDC procedure), tried again while it deadlocks with the writer."""
    for _attempt in range(20):
        try:
            action()
        except pg8000.native.DatabaseError as exc:
            if not deadlocked(exc):
                raise
            continue
        return
    pytest.fail("the DDL kept deadlocking with the writer")


def in_transaction(conn: pg8000.native.Connection, *statements: tuple[str, dict[str, object]]) -> None:
    for _attempt in range(20):
        try:
            conn.run("BEGIN")
            for sql, params in statements:
                conn.run(sql, **params)
            conn.run("COMMIT")
        except pg8000.native.DatabaseError as exc:
            conn.run("ROLLBACK")
            if not deadlocked(exc):
                raise
            continue
        return
    pytest.fail("the writer kept deadlocking with sp_cdc_enable_table")


def rows(conn: pg8000.native.Connection, table: str) -> list[list[object]]:
    return conn.run(f"SELECT id, v FROM {table} ORDER BY id")


def same(src: pg8000.native.Connection, dst: pg8000.native.Connection, table: str) -> Callable[[], bool]:
    """A probe: every row and column of ``table`` equal in source and target."""
    return lambda: rows(dst, table) == rows(src, table)


class Writer:
    """Changes both source tables until stopped: inserts, updates and deletes, some transactions spanning both."""

    def __init__(self, url: str, first_id: int) -> None:
        self._url = url
        self._next = first_id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._write, name="writer", daemon=True)
        self.errors: list[BaseException] = []
        self.written = 0

    def __enter__(self) -> Writer:
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
                    ("INSERT INTO dbo.a VALUES (:i, :v)", {"i": i, "v": f"a{i}"}),
                    ("INSERT INTO dbo.b VALUES (:i, :v)", {"i": i, "v": f"b{i}"}),
                )
                in_transaction(conn, ("UPDATE dbo.b SET v = v || '+' WHERE id = :i", {"i": i - 1}))
                if i % 3 == 0:
                    in_transaction(conn, ("DELETE FROM dbo.b WHERE id = :i", {"i": i - 2}))
                self._next += 1
                self.written += 1
                self._stop.wait(0.01)
        except BaseException as exc:  # surfaced by the test's assertion
            self.errors.append(exc)
        finally:
            conn.close()


def enable_instance(conn: pg8000.native.Connection, table: str, capture_instance: str) -> None:
    retrying(lambda: enable_table(conn, "dbo", table, capture_instance=capture_instance))


def disable_instance(conn: pg8000.native.Connection, table: str, capture_instance: str) -> None:
    retrying(
        lambda: conn.run(
            "CALL sys.sp_cdc_disable_table(source_schema => 'dbo', source_name => :t, capture_instance => :ci)",
            t=table,
            ci=capture_instance,
        ),
    )


def last_change_lsns(src: pg8000.native.Connection, table: str) -> dict[int, bytes]:
    """id -> the commit LSN of its last change, over every change table of ``dbo.<table>`` (both instances carry
    the same changes after the newer one starts, so the maximum is the same)."""
    cts = [
        str(r[0])
        for r in src.run(
            "SELECT capture_instance FROM cdc.change_tables ct JOIN sys.tables t ON t.object_id = ct.source_object_id "
            "WHERE t.name = :t",
            t=table,
        )
    ]
    result: dict[int, bytes] = {}
    for ci in cts:
        for key, lsn in src.run(
            f'SELECT DISTINCT ON (id) id, "__$start_lsn" FROM cdc."{ci}_CT" ORDER BY id, "__$start_lsn" DESC'
        ):
            result[int(key)] = max(result.get(int(key), b""), bytes(lsn))
    return result


def assert_exact(src: pg8000.native.Connection, dst: pg8000.native.Connection, table: str, columns: str) -> None:
    """Every row and column of ``dbo.<table>`` equal in source and target, and each target row carries the LSN
    of its key's last change in the change tables that still exist (no change missed, none applied from a
    later or earlier one)."""
    expected = src.run(f"SELECT {columns} FROM dbo.{table} ORDER BY id")
    actual = dst.run(f"SELECT {columns} FROM dbo.{table} ORDER BY id")
    assert actual == expected
    lsns = last_change_lsns(src, table)
    applied = {int(r[0]): bytes(r[1]) for r in dst.run(f"SELECT id, _cdc_lsn FROM dbo.{table}")}
    changed = {key for key in applied if key in lsns}  # keys whose changes a disabled instance held are not here
    assert {key: applied[key] for key in changed} == {key: lsns[key] for key in changed}


class Running:
    """A :class:`Pipeline` running in a thread, as ``mssql2pg run`` would; ``failures`` holds what stopped it."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.stop = threading.Event()
        self.failures: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, name="pipeline", daemon=True)

    def _run(self) -> None:
        try:
            self.pipeline.run(self.stop)
        except BaseException as exc:  # the process would have exited: the test's assertion names it
            self.failures.append(exc)

    def __enter__(self) -> Running:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self._thread.join(timeout=60)
        assert not self._thread.is_alive()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def instances(self, table: str) -> list[str]:
        """The capture instances the running plan applies for ``table`` (empty when it is not applied)."""
        for t in self.pipeline.tables:
            if str(t.source) == table:
                return [ci.name for ci in t.instances]
        return []


def switched(src: pg8000.native.Connection, dst: pg8000.native.Connection, capture_instance: str) -> bool:
    """Whether the pipeline's checkpoint has passed the start LSN of ``capture_instance``: from then on the older
    instance holds nothing the pipeline still needs, and the operator may disable it (docs/schema-evolution.md)."""
    ((start,),) = src.run("SELECT start_lsn FROM cdc.change_tables WHERE capture_instance = :ci", ci=capture_instance)
    checkpoint = dst.run("SELECT lsn FROM mssql2pg.checkpoints ORDER BY lsn DESC LIMIT 1")
    return start is not None and bool(checkpoint) and bytes(checkpoint[0][0]) >= bytes(start)
