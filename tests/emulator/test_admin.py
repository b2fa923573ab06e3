"""Net changes, cleanup, schema changes, disable and help procedures (emulator spelling)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pg8000.native
import pytest

from mssql2pg.emulator import connect
from tests.fixtures.emulator import enable_table

pytestmark = pytest.mark.integration


@pytest.fixture
def conn(emulated_source_url: str) -> Iterator[pg8000.native.Connection]:
    c = connect(emulated_source_url)
    c.run("CREATE SCHEMA dbo; CREATE TABLE dbo.o (id int PRIMARY KEY, q int, rv sys.rowversion)")
    yield c
    c.close()


def test_rowversion_is_reported_as_timestamp_and_stored_as_binary8(conn: pg8000.native.Connection) -> None:
    """§1.7 type exceptions: rowversion/timestamp columns are binary(8) in the change table."""
    enable_table(conn, "dbo", "o")
    assert conn.run("SELECT column_type FROM cdc.captured_columns WHERE column_name = 'rv'") == [["timestamp"]]
    conn.run("INSERT INTO dbo.o VALUES (1, 1, '\\x0000000000000001')")
    assert conn.run('SELECT rv FROM cdc."dbo_o_CT"') == [[b"\x00" * 7 + b"\x01"]]


def test_net_changes_collapse_per_key(conn: pg8000.native.Connection) -> None:
    """§2.3: one row per key with final values; insert+delete in the window vanishes; insert+update = op 2."""
    enable_table(conn, "dbo", "o", supports_net_changes=True)
    conn.run("INSERT INTO dbo.o (id, q) VALUES (1, 1), (2, 1)")
    conn.run("UPDATE dbo.o SET q = 7 WHERE id = 1")
    conn.run("DELETE FROM dbo.o WHERE id = 2")
    rows = conn.run(
        "SELECT \"__$operation\", id, q FROM cdc.fn_cdc_get_net_changes_dbo_o(sys.fn_cdc_get_min_lsn('dbo_o'), "
        "sys.fn_cdc_get_max_lsn(), 'all')"
    )
    assert [tuple(r) for r in rows] == [(2, 1, 7)]


def test_manual_cleanup_raises_min_lsn_and_deletes_below(conn: pg8000.native.Connection) -> None:
    """§2.7/§5: sp_cdc_cleanup_change_table raises the instance's start_lsn and deletes older change rows."""
    enable_table(conn, "dbo", "o")
    conn.run("INSERT INTO dbo.o (id, q) VALUES (1, 1)")
    conn.run("INSERT INTO dbo.o (id, q) VALUES (2, 1)")
    ((mx,),) = conn.run("SELECT sys.fn_cdc_get_max_lsn()")
    conn.run("CALL sys.sp_cdc_cleanup_change_table(capture_instance => 'dbo_o', low_water_mark => :m)", m=mx)
    assert conn.run("SELECT sys.fn_cdc_get_min_lsn('dbo_o')") == [[mx]]
    assert conn.run('SELECT id FROM cdc."dbo_o_CT"') == [[2]]


def test_type_change_alters_change_table_and_sets_required_column_update(conn: pg8000.native.Connection) -> None:
    """§4: a captured column's type change alters the _CT column and writes required_column_update = 1."""
    enable_table(conn, "dbo", "o")
    conn.run("ALTER TABLE dbo.o ALTER COLUMN q TYPE bigint")
    assert conn.run("SELECT required_column_update FROM cdc.ddl_history") == [[True]]
    assert conn.run(
        "SELECT data_type FROM information_schema.columns WHERE table_schema = 'cdc' AND table_name = 'dbo_o_CT' "
        "AND column_name = 'q'"
    ) == [["bigint"]]
    conn.run("INSERT INTO dbo.o (id, q) VALUES (1, 5000000000)")
    assert conn.run('SELECT q FROM cdc."dbo_o_CT"') == [[5000000000]]


def test_disable_table_drops_instance_and_functions(conn: pg8000.native.Connection) -> None:
    """§2.5: sp_cdc_disable_table drops the change table and functions; min LSN becomes 0x00…"""
    enable_table(conn, "dbo", "o")
    conn.run("CALL sys.sp_cdc_disable_table(source_schema => 'dbo', source_name => 'o', capture_instance => 'all')")
    assert conn.run("SELECT sys.fn_cdc_get_min_lsn('dbo_o')") == [[b"\x00" * 10]]
    assert conn.run("SELECT to_regclass('cdc.\"dbo_o_CT\"')") == [[None]]
    assert conn.run("SELECT is_tracked_by_cdc FROM sys.tables WHERE name = 'o'") == [[False]]
    conn.run("INSERT INTO dbo.o (id, q) VALUES (1, 1)")


def test_help_procedures(conn: pg8000.native.Connection) -> None:
    """§2.6/§2.7: help_change_data_capture, get_captured_columns and help_jobs as set-returning functions."""
    enable_table(conn, "dbo", "o")
    help_rows = conn.run("SELECT capture_instance, captured_column_list FROM sys.sp_cdc_help_change_data_capture()")
    assert help_rows[0][0] == "dbo_o"
    cols = conn.run("SELECT column_name, column_ordinal FROM sys.sp_cdc_get_captured_columns('dbo_o')")
    assert [tuple(c) for c in cols] == [("id", 1), ("q", 2), ("rv", 3)]
    conn.run("CALL sys.sp_cdc_change_job(job_type => 'capture', pollinginterval => 1)")
    jobs = {r[0]: r[1] for r in conn.run("SELECT job_type, pollinginterval FROM sys.sp_cdc_help_jobs()")}
    assert jobs["capture"] == 1


def test_unmapped_type_is_left_out_of_sys_columns_and_refused_by_enable(conn: pg8000.native.Connection) -> None:
    """A PostgreSQL-only type never breaks catalog queries; capturing it is refused with a hint."""
    conn.run("CREATE TABLE dbo.j (id int PRIMARY KEY, doc jsonb)")
    names = conn.run(
        "SELECT c.name FROM sys.columns c JOIN sys.tables t ON t.object_id = c.object_id WHERE t.name = 'j'"
    )
    assert names == [["id"]]
    with pytest.raises(pg8000.exceptions.DatabaseError, match="no SQL Server type"):
        enable_table(conn, "dbo", "j")


def test_retention_cleanup_job_raises_every_start_lsn(conn: pg8000.native.Connection) -> None:
    """§2.7 cleanup algorithm: low water mark = smallest LSN committed at or after max(tran_end_time) -
    retention; every instance's start_lsn is raised to it and older change rows are deleted."""
    enable_table(conn, "dbo", "o")
    enable_table(conn, "dbo", "o", capture_instance="dbo_o_v2")
    conn.run("INSERT INTO dbo.o (id, q) VALUES (1, 1)")
    conn.run("INSERT INTO dbo.o (id, q) VALUES (2, 1)")
    old, new = (r[0] for r in conn.run("SELECT start_lsn FROM cdc.lsn_time_mapping ORDER BY 1"))
    conn.run(
        "UPDATE cdc.lsn_time_mapping SET tran_end_time = tran_end_time - interval '2 hours' WHERE start_lsn = :l", l=old
    )
    conn.run("CALL sys.sp_cdc_change_job(job_type => 'cleanup', retention => 60)")
    conn.run("CALL sys.sp_MScdc_cleanup_job()")
    assert conn.run("SELECT sys.fn_cdc_get_min_lsn('dbo_o'), sys.fn_cdc_get_min_lsn('dbo_o_v2')") == [[new, new]]
    assert conn.run('SELECT id FROM cdc."dbo_o_CT"') == [[2]]
    assert conn.run('SELECT id FROM cdc."dbo_o_v2_CT"') == [[2]]


def test_capture_instance_name_longer_than_postgresql_allows_is_refused(conn: pg8000.native.Connection) -> None:
    """Not emulated (docs/emulator.md): SQL Server allows 100-character instance names (§2.5); the emulator's
    generated function names must fit 63 bytes, so 41+ bytes are refused with Msg 22997 and 40 are accepted."""
    with pytest.raises(pg8000.exceptions.DatabaseError, match="22997"):
        enable_table(conn, "dbo", "o", capture_instance="x" * 41)
    assert conn.run("SELECT count(*) FROM cdc.change_tables") == [[0]]
    enable_table(conn, "dbo", "o", capture_instance="y" * 40)
    conn.run("INSERT INTO dbo.o (id, q) VALUES (1, 1)")
    assert conn.run(f'SELECT id FROM cdc."{"y" * 40}_CT"') == [[1]]


def test_is_member_db_owner_answers_for_owners_and_not_for_a_plain_login(conn: pg8000.native.Connection) -> None:
    """``IS_MEMBER('db_owner')`` (what ``schema_evolution.manage_capture_instances`` asks before enabling or
    disabling an instance): 1 for the emulator's owner (a superuser here), 0 for a login with only SELECT
    grants, 1 once that login is in a role named db_owner; NULL for a role that does not exist."""
    assert conn.run("SELECT sys.is_member('db_owner')") == [[1]]
    assert conn.run("SELECT sys.is_member('no_such_role_here')") == [[None]]
    name = f"plain_{uuid.uuid4().hex[:8]}"
    conn.run(f"CREATE ROLE {name} LOGIN")
    try:
        conn.run(f"SET ROLE {name}")
        assert conn.run("SELECT sys.is_member('db_owner')") == [[0]]
        conn.run("RESET ROLE")
        conn.run(
            "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'db_owner') THEN "
            "CREATE ROLE db_owner; END IF; END $$"
        )
        conn.run(f"GRANT db_owner TO {name}")
        conn.run(f"SET ROLE {name}")
        assert conn.run("SELECT sys.is_member('db_owner')") == [[1]]
    finally:
        conn.run("RESET ROLE")
        conn.run(f"DROP ROLE {name}")
