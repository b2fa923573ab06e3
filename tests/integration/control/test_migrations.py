"""The control schema: created once, versioned by numbered migrations, upgraded in place, never raced."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Iterator
from decimal import Decimal

import pg8000.native
import pytest

from mssql2pg import control, deadletter_ops
from mssql2pg.control import CONTROL_VERSION, ensure_control_schema, migrations
from mssql2pg.errors import IncompatibleTargetError
from mssql2pg.model import SourceColumn
from mssql2pg.positions import Lsn
from mssql2pg.sink import Applier, build_target_table
from tests.fixtures.pg import PgServer
from tests.fixtures.target import Connect, capture_instance, lsn, wait_until_tables_released
from tests.fixtures.waiting import wait_for

pytestmark = pytest.mark.integration

T = capture_instance("dbo.T", [SourceColumn("Id", 1, "int", nullable=False)], ["Id"])

# The control schema exactly as the first release created it (commit b13f9f2), frozen here on purpose: the
# migrations must upgrade what is out there, whatever later happens to the code.
RELEASED_VERSION_1 = [
    'CREATE SCHEMA IF NOT EXISTS "mssql2pg"',
    """CREATE TABLE IF NOT EXISTS "mssql2pg"."schema_version" (
  component text PRIMARY KEY,
  version integer NOT NULL,
  applied_at timestamptz NOT NULL DEFAULT now()
)""",
    """CREATE TABLE IF NOT EXISTS "mssql2pg"."checkpoints" (
  pipeline text PRIMARY KEY,
  lsn bytea NOT NULL CHECK (octet_length(lsn) = 10),
  lsn_text text NOT NULL,
  commit_time timestamp,
  updated_at timestamptz NOT NULL DEFAULT now()
)""",
    """CREATE TABLE IF NOT EXISTS "mssql2pg"."table_state" (
  pipeline text NOT NULL,
  source_table text NOT NULL,
  capture_instance text,
  target_table text NOT NULL,
  state text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'paused', 'needs-resync')),
  reason text,
  remediation text,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (pipeline, source_table)
)""",
    """CREATE TABLE IF NOT EXISTS "mssql2pg"."dead_letters" (
  id bigserial PRIMARY KEY,
  pipeline text NOT NULL,
  source_table text NOT NULL,
  capture_instance text,
  commit_lsn bytea NOT NULL,
  commit_lsn_text text NOT NULL,
  seqval bytea,
  operation smallint,
  source_tran_id bytea,
  change jsonb NOT NULL,
  error_class text NOT NULL,
  message text NOT NULL,
  stack text,
  first_attempt_at timestamptz NOT NULL DEFAULT now(),
  last_attempt_at timestamptz NOT NULL DEFAULT now(),
  retry_count integer NOT NULL DEFAULT 0,
  status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'resolved', 'ignored'))
)""",
    'CREATE INDEX IF NOT EXISTS dead_letters_pending ON "mssql2pg"."dead_letters" (pipeline, status, source_table)',
    "INSERT INTO mssql2pg.schema_version (component, version) VALUES ('control', 1)",
]
# What a later release added to version 1 without raising the version number.
RELEASED_RESUME_AFTER = 'ALTER TABLE "mssql2pg"."table_state" ADD COLUMN IF NOT EXISTS resume_after bytea'

CATALOG = {  # the shape of the control schema, to compare an upgraded target with a fresh one
    "columns": "SELECT table_name, column_name, data_type, is_nullable, column_default "
    "FROM information_schema.columns WHERE table_schema = 'mssql2pg' ORDER BY 1, 2",
    "indexes": "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'mssql2pg' ORDER BY 1",
    "constraints": "SELECT conrelid::regclass::text, pg_get_constraintdef(oid) FROM pg_constraint "
    "WHERE connamespace = 'mssql2pg'::regnamespace ORDER BY 1, 2",
}


def _run_all(conn: pg8000.native.Connection, statements: list[str]) -> None:
    conn.run("BEGIN")
    for statement in statements:
        conn.run(statement)
    conn.run("COMMIT")


def _ensure(conn: pg8000.native.Connection) -> list[int]:
    conn.run("BEGIN")
    applied = ensure_control_schema(conn)
    conn.run("COMMIT")
    return applied


def _catalog(conn: pg8000.native.Connection) -> dict[str, list[list[object]]]:
    return {name: conn.run(query) for name, query in CATALOG.items()}


@pytest.fixture
def fresh_target(target_server: PgServer) -> Iterator[pg8000.native.Connection]:
    """A second target database, to compare with the test's own."""
    conn = target_server.connect(target_server.create_database("fresh"))
    yield conn
    conn.close()


def test_control_schema_is_created_once_and_versioned(target_connect: Connect) -> None:
    conn = target_connect()
    for _ in range(2):
        applier = Applier(target_connect, [build_target_table(T)], "p")
        applier.start()
        applier.close()
        wait_until_tables_released(conn)  # the next start claims the same table
    tables = conn.run(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'mssql2pg' ORDER BY table_name"
    )
    assert [t[0] for t in tables] == [
        "checkpoints", "dead_letters", "reconciliation_runs", "schema_changes", "schema_version", "snapshots",
        "table_state", "target_conflicts",
    ]  # fmt: skip
    assert conn.run("SELECT component, version FROM mssql2pg.schema_version") == [["control", CONTROL_VERSION]]
    assert conn.run(
        "SELECT pipeline, source_table, capture_instance, target_table, state FROM mssql2pg.table_state"
    ) == [["p", "dbo.T", "dbo_T", "dbo.t", "active"]]
    dl_columns = conn.run(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'mssql2pg' "
        "AND table_name = 'dead_letters' ORDER BY ordinal_position"
    )
    assert [c[0] for c in dl_columns] == [
        "id", "pipeline", "source_table", "capture_instance", "commit_lsn", "commit_lsn_text", "seqval", "operation",
        "source_tran_id", "change", "error_class", "message", "stack", "first_attempt_at", "last_attempt_at",
        "retry_count", "status", "last_error",
    ]  # fmt: skip
    conn.close()


def test_newer_control_schema_is_refused(target_connect: Connect) -> None:
    conn = target_connect()
    conn.run("BEGIN")
    ensure_control_schema(conn)
    conn.run("UPDATE mssql2pg.schema_version SET version = version + 1")
    conn.run("COMMIT")
    conn.run("BEGIN")
    with pytest.raises(IncompatibleTargetError, match="upgrade mssql2pg"):
        ensure_control_schema(conn)
    conn.run("ROLLBACK")


def test_fresh_target_gets_every_version(target_connect: Connect) -> None:
    conn = target_connect()
    assert control.installed_version(conn) == 0
    assert _ensure(conn) == [m.version for m in control.MIGRATIONS]
    assert control.installed_version(conn) == CONTROL_VERSION
    assert _ensure(conn) == []  # nothing left to do, and nothing done twice
    assert conn.run("SELECT component, version FROM mssql2pg.schema_version") == [["control", CONTROL_VERSION]]


def test_version_1_target_upgrades_in_place_and_keeps_its_rows(
    target_connect: Connect, fresh_target: pg8000.native.Connection
) -> None:
    conn = target_connect()
    _run_all(conn, RELEASED_VERSION_1)
    _run_all(
        conn,
        [
            "INSERT INTO mssql2pg.checkpoints (pipeline, lsn, lsn_text, commit_time) "
            "VALUES ('p', '\\x0000002a000000010001', '0000002a:00000001:0001', '2024-05-01 12:00:00')",
            "INSERT INTO mssql2pg.table_state (pipeline, source_table, capture_instance, target_table) "
            "VALUES ('p', 'dbo.a', 'dbo_a', 'dbo.a')",
            "INSERT INTO mssql2pg.table_state (pipeline, source_table, capture_instance, target_table, state, reason, "
            "remediation) VALUES ('p', 'dbo.b', 'dbo_b', 'dbo.b', 'needs-resync', 'LSN gap', 'mssql2pg resync dbo.b')",
            "INSERT INTO mssql2pg.dead_letters (pipeline, source_table, capture_instance, commit_lsn, commit_lsn_text, "
            "operation, change, error_class, message) VALUES ('p', 'dbo.a', 'dbo_a', '\\x00000029000000010001', "
            "'00000029:00000001:0001', 2, '{\"values\": {\"id\": 1}}', 'DatabaseError [23505]', 'duplicate key')",
        ],
    )
    before = {
        "checkpoints": conn.run("SELECT * FROM mssql2pg.checkpoints"),
        "table_state": conn.run("SELECT * FROM mssql2pg.table_state ORDER BY source_table"),
        "dead_letters": conn.run("SELECT * FROM mssql2pg.dead_letters"),
    }

    applied = _ensure(conn)

    assert applied == [m.version for m in control.MIGRATIONS if m.version > 1]
    assert control.installed_version(conn) == CONTROL_VERSION
    assert [row[:-1] for row in conn.run("SELECT * FROM mssql2pg.checkpoints")] == before["checkpoints"]
    assert [row[:-2] for row in conn.run("SELECT * FROM mssql2pg.table_state ORDER BY source_table")] == before[
        "table_state"
    ]  # version 2 appended resume_after, empty; version 4 group_name ('': no group)
    assert [row[:-1] for row in conn.run("SELECT * FROM mssql2pg.dead_letters")] == before[
        "dead_letters"
    ]  # version 8 appended last_error, empty
    # the code reads and writes the upgraded target
    assert control.read_checkpoint(conn, "p") == Lsn.parse("0000002a:00000001:0001")
    assert control.inactive_tables(conn, "p") == {"dbo.b": ("needs-resync", "LSN gap")}
    assert [(d.id, d.status, d.message) for d in control.list_dead_letters(conn, pipeline="p")] == [
        (1, "pending", "duplicate key")
    ]
    control.mark_resynced(
        conn, "p", source_table="dbo.b", capture_instance="dbo_b", target_table="dbo.b", lsn=lsn(50), reason="r"
    )
    assert control.resume_positions(conn, "p") == {"dbo.b": lsn(50)}
    # and ends exactly where a fresh install does
    _ensure(fresh_target)
    assert _catalog(conn) == _catalog(fresh_target)


def test_version_1_target_that_already_has_resume_after_upgrades(target_connect: Connect) -> None:
    """The release that added ``resume_after`` kept recording version 1; its resume positions survive."""
    conn = target_connect()
    _run_all(conn, [*RELEASED_VERSION_1, RELEASED_RESUME_AFTER])
    conn.run(
        "INSERT INTO mssql2pg.table_state (pipeline, source_table, capture_instance, target_table, resume_after) "
        "VALUES ('p', 'dbo.a', 'dbo_a', 'dbo.a', :lsn)",
        lsn=lsn(7).raw,
    )
    assert control.resume_positions(conn, "p") == {"dbo.a": lsn(7)}  # read before the upgrade (readers never migrate)

    assert _ensure(conn) == [m.version for m in control.MIGRATIONS if m.version > 1]

    assert control.installed_version(conn) == CONTROL_VERSION
    assert control.resume_positions(conn, "p") == {"dbo.a": lsn(7)}


def test_version_2_target_upgrades_in_place_to_reconciliation_runs(
    target_connect: Connect, fresh_target: pg8000.native.Connection
) -> None:
    """A target last written by version 2 (before ``mssql2pg reconcile``) gets ``reconciliation_runs``; its rows
    stay, and the code records and reads reconciliations on it."""
    conn = target_connect()
    _run_all(
        conn,
        [
            *RELEASED_VERSION_1,
            RELEASED_RESUME_AFTER,
            "UPDATE mssql2pg.schema_version SET version = 2",
            "INSERT INTO mssql2pg.table_state (pipeline, source_table, capture_instance, target_table, resume_after) "
            "VALUES ('p', 'dbo.a', 'dbo_a', 'dbo.a', '\\x0000002a000000010001')",
        ],
    )
    assert control.installed_version(conn) == 2

    assert _ensure(conn) == [3, 4, 5, 6, 7, 8]

    assert control.installed_version(conn) == CONTROL_VERSION
    assert control.resume_positions(conn, "p") == {"dbo.a": Lsn.parse("0000002a:00000001:0001")}
    started = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC)
    for minutes, missing in ((0, 3), (5, 0)):
        control.record_reconciliation(
            conn,
            control.ReconciliationRecord(
                run_id=str(uuid.uuid4()), pipeline="p", source_table="dbo.a", target_table="dbo.a",
                status="inconsistent" if missing else "consistent", source_rows=10, target_rows=10 - missing,
                missing=missing, extra=0, different=0, keys={"missing_keys": [{"id": 1}]}, rechecked=True,
                repaired=0, suggested_action="none", error=None,
                started_at=started + dt.timedelta(minutes=minutes), duration_seconds=0.5,
            ),
        )  # fmt: skip
    (latest,) = control.latest_reconciliations(conn, "p")
    assert (latest.source_table, latest.status, latest.missing) == ("dbo.a", "consistent", 0)
    _ensure(fresh_target)
    assert _catalog(conn) == _catalog(fresh_target)


def test_version_1_target_without_resume_after_reads_no_resume_positions(target_connect: Connect) -> None:
    conn = target_connect()
    _run_all(conn, RELEASED_VERSION_1)
    assert control.resume_positions(conn, "p") == {}


def test_two_concurrent_starts_do_not_race(target_connect: Connect) -> None:
    """The second start waits for the first one's transaction, then finds every version applied."""
    first, second = target_connect(), target_connect()
    second_pid = second.run("SELECT pg_backend_pid()")[0][0]
    first.run("BEGIN")
    assert ensure_control_schema(first) == [m.version for m in control.MIGRATIONS]  # not committed yet
    outcome: dict[str, object] = {}

    def start_second() -> None:
        try:
            outcome["applied"] = _ensure(second)
        except Exception as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=start_second)
    thread.start()
    observer = target_connect()
    wait_for(
        lambda: observer.run(
            "SELECT count(*) = 1 FROM pg_locks WHERE pid = :pid AND locktype = 'advisory' AND NOT granted",
            pid=second_pid,
        )[0][0],
        what="the second start waiting for the first one's control lock",
    )
    assert thread.is_alive()
    first.run("COMMIT")
    thread.join(timeout=60)
    assert not thread.is_alive()
    assert outcome == {"applied": []}
    assert observer.run("SELECT component, version FROM mssql2pg.schema_version") == [["control", CONTROL_VERSION]]
    for conn in (first, second, observer):
        conn.close()


def test_version_4_target_upgrades_to_snapshot_progress(target_connect: Connect) -> None:
    """A target last written by version 4 gets ``snapshots``; a table recorded before is not loaded again (it is
    registered), and a load's progress round-trips its last key with the key's types."""
    conn = target_connect()
    _run_all(conn, [*RELEASED_VERSION_1, RELEASED_RESUME_AFTER, "UPDATE mssql2pg.schema_version SET version = 2"])
    conn.run("BEGIN")
    control.ensure_control_schema(conn)
    conn.run("COMMIT")
    conn.run("DROP TABLE mssql2pg.snapshots")
    conn.run("UPDATE mssql2pg.schema_version SET version = 4")
    conn.run(
        "INSERT INTO mssql2pg.table_state (pipeline, source_table, capture_instance, target_table) "
        "VALUES ('p', 'dbo.a', 'dbo_a', 'dbo.a')"
    )
    assert control.snapshots(conn, "p") == {}  # readers never migrate: no table yet reads as no load
    assert _ensure(conn) == [5, 6, 7, 8]
    assert control.registered_tables(conn, "p") == frozenset({"dbo.a"})
    at = Lsn.parse("0000002a:00000001:0001")
    started = control.start_snapshot(conn, "p", "dbo.b", group="", lsn=at, estimated=3_000_000_000)
    assert (started.lsn, started.last_key, started.rows_loaded, started.state) == (at, None, 0, "loading")
    key = (42, "x", dt.datetime(2026, 1, 2, 3, 4, 5, 6), uuid.UUID(int=7), b"\x00\xff", Decimal("1.50"))
    control.advance_snapshot(conn, "p", "dbo.b", key, 1000)
    again = control.start_snapshot(conn, "p", "dbo.b", group="", lsn=Lsn.parse("0000002b:00000001:0001"), estimated=1)
    assert (again.lsn, again.last_key, again.rows_loaded, again.rows_estimated) == (at, key, 1000, 3_000_000_000)
    control.finish_snapshot(conn, "p", "dbo.b", 1200, at)
    done = control.read_snapshot_progress(conn, "p", "dbo.b")
    assert done is not None
    assert (done.state, done.rows_loaded, done.consistent_lsn, done.loading) == ("done", 1200, at, False)


def test_dead_letters_of_a_version_7_target_are_read_as_they_are_and_a_retry_upgrades_it(
    target_connect: Connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Readers never migrate (``dlq list`` and ``show`` read a version 7 target without ``last_error``); ``dlq
    retry`` writes it, so it upgrades the control schema first, as a start would."""
    conn = target_connect()
    before = tuple(m for m in migrations.MIGRATIONS if m.version < 8)
    with monkeypatch.context() as patched:
        patched.setattr(migrations, "MIGRATIONS", before)
        patched.setattr(migrations, "CONTROL_VERSION", before[-1].version)
        _ensure(conn)
    letter = control.DeadLetterRecord(
        "dbo.a", "dbo_a", lsn(41), lsn(41), 2, None, {"values": {"id": 1}},
        "TargetConflictError [update_missing]", "the row is missing", "",
    )  # fmt: skip
    conn.run("BEGIN")
    [letter_id] = control.record_dead_letters(conn, "p", [letter])
    conn.run("COMMIT")
    [listed] = control.list_dead_letters(conn, pipeline="p")
    assert (listed.error_class, listed.last_error) == ("TargetConflictError [update_missing]", None)

    deadletter_ops._upgrade(conn)
    assert control.installed_version(conn) == CONTROL_VERSION
    conn.run("BEGIN")
    control.fail_dead_letter_retry(conn, letter_id, last_error="DatabaseError [42501]: refused")
    conn.run("COMMIT")
    stored = control.get_dead_letter(conn, letter_id)
    assert stored is not None
    assert (stored.error_class, stored.message, stored.retry_count, stored.last_error) == (
        "TargetConflictError [update_missing]",
        "the row is missing",
        1,
        "DatabaseError [42501]: refused",
    )
    conn.close()
