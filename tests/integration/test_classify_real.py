"""Real errors from a real PostgreSQL, classified as the pipeline will see them.

Each case provokes the fault for real (no hand-built exceptions), so a pg8000 upgrade that changes how errors
surface, or a misremembered SQLSTATE, fails here.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import pg8000.native
import pytest

from mssql2pg.classify import ClassifiedError, classify
from mssql2pg.config import RetrySettings
from mssql2pg.errors import TerminalError, TransientError
from mssql2pg.retry import Retry
from tests.fixtures.pg import PgServer
from tests.fixtures.waiting import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def db(target_server: PgServer, target_dbname: str) -> Iterator[pg8000.native.Connection]:
    conn = target_server.connect(target_dbname)
    conn.run("CREATE TABLE t (id int PRIMARY KEY, v int)")
    conn.run("INSERT INTO t VALUES (1, 1), (2, 2)")
    try:
        yield conn
    finally:
        conn.close()


def _classified(fn: object) -> TransientError | TerminalError:
    assert callable(fn)
    with pytest.raises(Exception) as caught:  # noqa: PT011 - whatever the driver raises is the subject
        fn()
    return classify(caught.value)


def test_unique_violation_is_terminal_for_the_row(db: pg8000.native.Connection) -> None:
    result = _classified(lambda: db.run("INSERT INTO t VALUES (1, 9)"))

    assert isinstance(result, TerminalError)
    assert isinstance(result, ClassifiedError)
    assert (result.code, result.scope) == ("23505", "row")


def test_division_by_zero_is_terminal_for_the_row(db: pg8000.native.Connection) -> None:
    result = _classified(lambda: db.run("SELECT v / 0 FROM t"))

    assert isinstance(result, TerminalError)
    assert (result.code, result.scope) == ("22012", "row")  # type: ignore[union-attr]


def test_undefined_table_is_terminal_for_the_table(db: pg8000.native.Connection) -> None:
    result = _classified(lambda: db.run("SELECT * FROM no_such_table"))

    assert isinstance(result, TerminalError)
    assert (result.code, result.scope) == ("42P01", "table")  # type: ignore[union-attr]


def test_statement_timeout_is_transient(db: pg8000.native.Connection) -> None:
    db.run("SET statement_timeout = '50ms'")

    result = _classified(lambda: db.run("SELECT pg_sleep(30)"))

    assert isinstance(result, TransientError)
    assert result.code == "57014"  # type: ignore[attr-defined]


def test_lock_timeout_is_transient(target_server: PgServer, target_dbname: str, db: pg8000.native.Connection) -> None:
    holder = target_server.connect(target_dbname)
    try:
        holder.run("BEGIN")
        holder.run("UPDATE t SET v = 10 WHERE id = 1")
        db.run("SET lock_timeout = '50ms'")

        result = _classified(lambda: db.run("UPDATE t SET v = 11 WHERE id = 1"))
    finally:
        holder.run("ROLLBACK")
        holder.close()

    assert isinstance(result, TransientError)
    assert result.code == "55P03"  # type: ignore[attr-defined]


def test_deadlock_is_transient(target_server: PgServer, target_dbname: str) -> None:
    first = target_server.connect(target_dbname)
    second = target_server.connect(target_dbname)
    first.run("CREATE TABLE d (id int PRIMARY KEY, v int)")
    first.run("INSERT INTO d VALUES (1, 0), (2, 0)")
    for conn in (first, second):
        conn.run("SET deadlock_timeout = '50ms'")
        conn.run("BEGIN")
    first.run("UPDATE d SET v = 1 WHERE id = 1")
    second.run("UPDATE d SET v = 2 WHERE id = 2")
    first_pid = first.run("SELECT pg_backend_pid()")[0][0]
    outcome: dict[str, BaseException | None] = {}

    def first_blocks() -> None:
        try:
            first.run("UPDATE d SET v = 1 WHERE id = 2")
            outcome["first"] = None
        except Exception as exc:
            outcome["first"] = exc

    worker = threading.Thread(target=first_blocks)
    worker.start()
    observer = target_server.connect(target_dbname)
    try:
        wait_for(
            lambda: observer.run(
                "SELECT 1 FROM pg_stat_activity WHERE pid = :pid AND wait_event_type = 'Lock'", pid=first_pid
            ),
            what="the first session to wait for the second's row lock",
        )
        try:
            second.run("UPDATE d SET v = 2 WHERE id = 1")
            outcome["second"] = None
        except Exception as exc:
            outcome["second"] = exc
        worker.join(30)
        assert not worker.is_alive()
    finally:
        for conn in (first, second, observer):
            with contextlib.suppress(Exception):  # an aborted session may already be gone
                conn.run("ROLLBACK")
            conn.close()

    errors = [e for e in outcome.values() if e is not None]
    assert len(errors) == 1, outcome  # exactly one session is the deadlock victim
    result = classify(errors[0])
    assert isinstance(result, TransientError)
    assert result.code == "40P01"  # type: ignore[attr-defined]


def test_terminated_backend_is_transient(target_server: PgServer, target_dbname: str) -> None:
    victim = target_server.connect(target_dbname)
    killer = target_server.connect(target_dbname)
    try:
        pid = victim.run("SELECT pg_backend_pid()")[0][0]
        killer.run("SELECT pg_terminate_backend(:pid)", pid=pid)

        result = _classified(lambda: victim.run("SELECT 1"))
    finally:
        killer.close()

    assert isinstance(result, TransientError)


def test_server_crash_mid_session_is_transient(fresh_server: PgServer) -> None:
    conn = fresh_server.connect("postgres")
    assert conn.run("SELECT 1") == [[1]]

    fresh_server.stop("immediate")

    result = _classified(lambda: conn.run("SELECT 1"))
    assert isinstance(result, TransientError)


def test_connecting_to_a_stopped_server_is_transient(fresh_server: PgServer) -> None:
    fresh_server.stop("fast")

    result = _classified(lambda: fresh_server.connect("postgres"))

    assert isinstance(result, TransientError)
    assert "password" not in str(result).lower() or "***" in str(result)


def test_missing_database_is_terminal_for_the_pipeline(target_server: PgServer) -> None:
    # (A wrong password cannot be provoked here: the fixture servers use trust authentication.)
    result = _classified(lambda: target_server.connect("no_such_database_for_classify"))

    assert isinstance(result, TerminalError)
    assert (result.code, result.scope) == ("3D000", "pipeline")  # type: ignore[union-attr]
    assert result.hint is not None


def test_retry_rides_out_a_real_outage(fresh_server: PgServer) -> None:
    """The whole chain on a real fault: connection refused -> transient -> backoff -> server back -> success."""
    fresh_server.stop("immediate")
    attempts: list[tuple[int, TransientError]] = []

    def restart_after_three(number: int, _delay: float, error: TransientError) -> None:
        attempts.append((number, error))
        if number == 3:
            fresh_server.start()  # the outage ends while we back off

    def query() -> object:
        conn = fresh_server.connect("postgres")
        try:
            return conn.run("SELECT 42")[0][0]
        finally:
            conn.close()

    retry = Retry.from_settings(
        RetrySettings(initial=0.01, maximum=0.05, jitter=False), classify, on_retry=restart_after_three
    )
    result = retry.call(query, threading.Event())

    assert result == 42
    assert [number for number, _ in attempts] == [1, 2, 3]
    assert all(isinstance(error, TransientError) for _, error in attempts)
