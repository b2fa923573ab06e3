"""The control schema: created idempotently, versioned, and filled with the replicated tables' state."""

from __future__ import annotations

import pytest

from mssql2pg.errors import IncompatibleTargetError
from mssql2pg.model import SourceColumn
from mssql2pg.sink import Applier, build_target_table
from mssql2pg.sink.control import CONTROL_VERSION, ensure_control_schema
from tests.fixtures.target import Connect, capture_instance

pytestmark = pytest.mark.integration

T = capture_instance("dbo.T", [SourceColumn("Id", 1, "int", nullable=False)], ["Id"])


def test_control_schema_is_created_once_and_versioned(target_connect: Connect) -> None:
    for _ in range(2):
        applier = Applier(target_connect, [build_target_table(T)], "p")
        applier.start()
        applier.close()
    conn = target_connect()
    tables = conn.run(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'mssql2pg' ORDER BY table_name"
    )
    assert [t[0] for t in tables] == ["checkpoints", "dead_letters", "schema_version", "table_state"]
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
        "retry_count", "status",
    ]  # fmt: skip


def test_paused_table_stays_paused_on_restart(target_connect: Connect) -> None:
    applier = Applier(target_connect, [build_target_table(T)], "p")
    applier.start()
    applier.close()
    conn = target_connect()
    conn.run("UPDATE mssql2pg.table_state SET state = 'paused', reason = 'dead letters'")
    again = Applier(target_connect, [build_target_table(T)], "p")
    again.start()
    again.close()
    assert conn.run("SELECT state, reason FROM mssql2pg.table_state") == [["paused", "dead letters"]]


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
