"""The record of source schema changes, ``mssql2pg.schema_changes`` (issue 12): written once per change, listed,
approved; a target at the previous control version gains the table in place."""

from __future__ import annotations

import pytest

from mssql2pg import control
from mssql2pg.control import migrations
from tests.fixtures.target import Connect

pytestmark = pytest.mark.integration

ADDED = control.SchemaChange(
    "dbo.a", "add-column", "auto-applied", capture_instance="dbo_a_v2", column_name="note", new_type="varchar(10)",
    ddl='ALTER TABLE "dbo"."a" ADD COLUMN IF NOT EXISTS "note" character varying(10)',
)  # fmt: skip
NARROWED = control.SchemaChange(
    "dbo.a", "type-change", "pending-review", capture_instance="dbo_a", column_name="v", old_type="int",
    new_type="varchar(5)", ddl='ALTER TABLE "dbo"."a" ALTER COLUMN "v" TYPE character varying(5)',
)  # fmt: skip


def _ensure(conn: object) -> list[int]:
    conn.run("BEGIN")  # type: ignore[attr-defined]
    applied = control.ensure_control_schema(conn)  # type: ignore[arg-type]
    conn.run("COMMIT")  # type: ignore[attr-defined]
    return applied


def test_changes_are_recorded_listed_and_approved(target_connect: Connect) -> None:
    conn = target_connect()
    _ensure(conn)
    added, new = control.record_schema_change(conn, "p", ADDED)
    assert new
    pending, new = control.record_schema_change(conn, "p", NARROWED)
    assert new
    # the same pending change noticed again (a restart) is not recorded twice; an applied one would be
    assert control.record_schema_change(conn, "p", NARROWED) == (pending, False)
    control.record_schema_change(conn, "other", NARROWED)

    listed = control.list_schema_changes(conn, "p")
    assert [(c.id, c.change, c.status, c.column_name) for c in listed] == [
        (added, "add-column", "auto-applied", "note"),
        (pending, "type-change", "pending-review", "v"),
    ]
    assert listed[0].applied_at is not None
    assert listed[1].applied_at is None
    assert listed[1].ddl == NARROWED.ddl
    assert listed[1].as_json()["new_type"] == "varchar(5)"
    assert [c.id for c in control.list_schema_changes(conn, "p", status="pending-review")] == [pending]

    control.approve_schema_change(conn, "p", pending)
    approved = control.get_schema_change(conn, "p", pending)
    assert approved is not None
    assert approved.status == "approved"
    assert approved.applied_at is not None
    assert control.get_schema_change(conn, "p", 10_000) is None
    conn.close()


def test_status_outside_the_four_is_refused_before_the_database() -> None:
    with pytest.raises(ValueError, match="status"):
        control.SchemaChange("dbo.a", "add-column", "applied")


def test_previous_version_target_gains_schema_changes_in_place(
    target_connect: Connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = target_connect()
    before = tuple(m for m in migrations.MIGRATIONS if m.version < 6)
    with monkeypatch.context() as patched:
        patched.setattr(migrations, "MIGRATIONS", before)
        patched.setattr(migrations, "CONTROL_VERSION", before[-1].version)
        _ensure(conn)
    assert not control.control_table_exists(conn, "schema_changes")
    conn.run("INSERT INTO mssql2pg.checkpoints (pipeline, lsn, lsn_text) VALUES ('p', '\\x00000000000000000001', 'x')")

    assert _ensure(conn) == [m.version for m in migrations.MIGRATIONS if m.version > before[-1].version]
    assert control.installed_version(conn) == control.CONTROL_VERSION
    assert conn.run("SELECT pipeline FROM mssql2pg.checkpoints") == [["p"]]
    change_id, _ = control.record_schema_change(conn, "p", ADDED)
    assert [c.id for c in control.list_schema_changes(conn, "p")] == [change_id]
    conn.close()


def test_counts_by_table_and_status_follow_an_approval_made_anywhere(target_connect: Connect) -> None:
    """What ``mssql2pg_schema_changes{table, status}`` exports: the rows of this pipeline now, so an approval by
    ``mssql2pg schema approve`` (another process) moves a change from pending-review to approved."""
    conn = target_connect()
    assert control.count_schema_changes(conn, "p") == {}  # before the first run: no control schema
    _ensure(conn)
    control.record_schema_change(conn, "p", ADDED)
    pending, _ = control.record_schema_change(conn, "p", NARROWED)
    control.record_schema_change(conn, "other", NARROWED)
    assert control.count_schema_changes(conn, "p") == {("dbo.a", "auto-applied"): 1, ("dbo.a", "pending-review"): 1}
    control.approve_schema_change(conn, "p", pending)
    assert control.count_schema_changes(conn, "p") == {("dbo.a", "auto-applied"): 1, ("dbo.a", "approved"): 1}
    conn.close()
