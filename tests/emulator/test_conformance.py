"""Conformance cases: each names the fact of /work/shared/reference/sqlserver-cdc.md it checks.

Parametrized over the emulator and a real SQL Server (skipped unless MSSQL2PG_TEST_MSSQL_URL is set)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.emulator.backends import Backend

pytestmark = pytest.mark.integration

ZERO = b"\x00" * 10


def _orders(b: Backend, *, extra_pg: str = "", extra_tsql: str = "") -> None:
    b.run(
        pg=f"CREATE TABLE dbo.orders (id int PRIMARY KEY, name varchar(20), qty int{extra_pg})",
        tsql=f"CREATE TABLE dbo.orders (id int PRIMARY KEY, name nvarchar(20), qty int{extra_tsql})",
    )
    b.run(
        pg="CALL sys.sp_cdc_enable_table(source_schema => 'dbo', source_name => 'orders', role_name => NULL)",
        tsql="EXEC sys.sp_cdc_enable_table @source_schema = N'dbo', @source_name = N'orders', @role_name = NULL",
    )


def _ct(b: Backend, ci: str = "dbo_orders", cols: str = "id") -> list[tuple[Any, ...]]:
    return b.run(
        pg=f'SELECT "__$start_lsn", "__$seqval", "__$operation", "__$update_mask", "__$command_id", {cols} '
        f'FROM cdc."{ci}_CT" ORDER BY 1, 5, 2, 3',
        tsql=f"SELECT __$start_lsn, __$seqval, __$operation, __$update_mask, __$command_id, {cols} "
        f"FROM cdc.{ci}_CT ORDER BY 1, 5, 2, 3",
    )


def test_catalog_tables_have_sql_server_column_order(backend: Backend) -> None:
    """§1: the five catalog tables have SQL Server's column names in SQL Server's order."""
    expected = {
        "captured_columns": "object_id column_name column_id column_type column_ordinal is_computed masking_function",
        "change_tables": "object_id version source_object_id capture_instance start_lsn end_lsn supports_net_changes "
        "has_drop_pending role_name index_name filegroup_name create_date partition_switch",
        "ddl_history": "source_object_id object_id required_column_update ddl_command ddl_lsn ddl_time",
        "index_columns": "object_id column_name index_ordinal column_id",
        "lsn_time_mapping": "start_lsn tran_begin_time tran_end_time tran_id tran_begin_lsn",
    }
    for table, cols in expected.items():
        rows = backend.run(
            pg="SELECT column_name FROM information_schema.columns WHERE table_schema = 'cdc' "
            "AND table_name = :t ORDER BY ordinal_position",
            tsql="SELECT c.name FROM sys.columns c WHERE c.object_id = OBJECT_ID('cdc.' + :t) ORDER BY c.column_id",
            t=table,
        )
        assert [r[0] for r in rows] == cols.split(), table


def test_change_table_columns_and_nullability(backend: Backend) -> None:
    """§1.7: _CT columns are __$start_lsn, __$end_lsn, __$seqval, __$operation, __$update_mask, captured
    columns, __$command_id; captured columns are all nullable even when NOT NULL in the source."""
    _orders(backend)
    rows = backend.run(
        pg="SELECT column_name, is_nullable FROM information_schema.columns WHERE table_schema = 'cdc' "
        "AND table_name = 'dbo_orders_CT' ORDER BY ordinal_position",
        tsql="SELECT name, CASE WHEN is_nullable = 1 THEN 'YES' ELSE 'NO' END FROM sys.columns "
        "WHERE object_id = OBJECT_ID('cdc.dbo_orders_CT') ORDER BY column_id",
    )
    names = [r[0] for r in rows]
    assert names == [
        "__$start_lsn",
        "__$end_lsn",
        "__$seqval",
        "__$operation",
        "__$update_mask",
        "id",
        "name",
        "qty",
        "__$command_id",
    ]
    assert dict(rows)["id"] == "YES"


def test_insert_update_delete_operations_and_shared_commit_lsn(backend: Backend) -> None:
    """§1.7/§3.2: insert = op 2, delete = op 1, update = op 3 + op 4 sharing seqval, mask and command_id; every
    row of a transaction shares the commit LSN; seqvals lie below it; command_id counts from 1."""
    _orders(backend)
    backend.run(pg="BEGIN", tsql="BEGIN TRANSACTION")
    backend.run(
        pg="INSERT INTO dbo.orders VALUES (1, 'a', 1), (2, 'b', 2)",
        tsql="INSERT INTO dbo.orders VALUES (1, N'a', 1), (2, N'b', 2)",
    )
    backend.run(pg="UPDATE dbo.orders SET qty = 5 WHERE id = 1", tsql="UPDATE dbo.orders SET qty = 5 WHERE id = 1")
    backend.run(pg="DELETE FROM dbo.orders WHERE id = 2", tsql="DELETE FROM dbo.orders WHERE id = 2")
    backend.run(pg="COMMIT", tsql="COMMIT")
    backend.capture()
    rows = _ct(backend)
    assert [(r[2], r[4], r[5]) for r in rows] == [(2, 1, 1), (2, 2, 2), (3, 3, 1), (4, 3, 1), (1, 4, 2)]
    assert len({r[0] for r in rows}) == 1
    commit = rows[0][0]
    assert all(len(r[0]) == 10 and r[1] < commit for r in rows)
    before, after = rows[2], rows[3]
    assert before[1] == after[1]
    assert before[3] == after[3] == b"\x04"
    assert rows[0][3] == b"\x07"
    mapping = backend.run(
        pg="SELECT start_lsn, tran_id FROM cdc.lsn_time_mapping",
        tsql="SELECT start_lsn, tran_id FROM cdc.lsn_time_mapping WHERE tran_id <> 0x00",
    )
    assert [m[0] for m in mapping] == [commit]
    assert mapping[0][1] != b"\x00"


def test_primary_key_update_is_delete_plus_insert(backend: Backend) -> None:
    """§1.7: an update of the primary key is captured as op 1 + op 2 with the same seqval."""
    _orders(backend)
    backend.run(pg="INSERT INTO dbo.orders VALUES (1, 'a', 1)", tsql="INSERT INTO dbo.orders VALUES (1, N'a', 1)")
    backend.run(pg="UPDATE dbo.orders SET id = 9 WHERE id = 1", tsql="UPDATE dbo.orders SET id = 9 WHERE id = 1")
    backend.capture()
    rows = _ct(backend)[1:]
    assert sorted((r[2], r[5]) for r in rows) == [(1, 1), (2, 9)]
    assert rows[0][1] == rows[1][1]


def test_update_mask_bit_order_over_17_columns(backend: Backend) -> None:
    """§1.7 mask: ceil(n/8) bytes, ordinal 1 = lowest bit of the LAST byte (tested with 18 columns)."""
    cols = ", ".join(f"c{i} int" for i in range(2, 19))
    backend.run(
        pg=f"CREATE TABLE dbo.wide (id int PRIMARY KEY, {cols})",
        tsql=f"CREATE TABLE dbo.wide (id int PRIMARY KEY, {cols})",
    )
    backend.run(
        pg="CALL sys.sp_cdc_enable_table(source_schema => 'dbo', source_name => 'wide', role_name => NULL)",
        tsql="EXEC sys.sp_cdc_enable_table @source_schema = N'dbo', @source_name = N'wide', @role_name = NULL",
    )
    backend.run(pg="INSERT INTO dbo.wide (id) VALUES (1)", tsql="INSERT INTO dbo.wide (id) VALUES (1)")
    backend.run(
        pg="UPDATE dbo.wide SET c2 = 1, c9 = 1, c17 = 1, c18 = 1 WHERE id = 1",
        tsql="UPDATE dbo.wide SET c2 = 1, c9 = 1, c17 = 1, c18 = 1 WHERE id = 1",
    )
    backend.capture()
    rows = _ct(backend, "dbo_wide")
    assert rows[0][3] == b"\x03\xff\xff"
    mask = rows[1][3]
    assert mask == bytes([0b00000011, 0b00000001, 0b00000010])
    bits = backend.run(
        pg="SELECT sys.fn_cdc_is_bit_set(p, :m) FROM generate_series(1, 18) p ORDER BY p",
        tsql="SELECT sys.fn_cdc_is_bit_set(p.n, :m) FROM (SELECT TOP 18 ROW_NUMBER() OVER (ORDER BY object_id) n "
        "FROM sys.objects) p ORDER BY p.n",
        m=mask,
    )
    assert [i + 1 for i, r in enumerate(bits) if r[0]] == [2, 9, 17, 18]
    ordinal = backend.run(
        pg="SELECT sys.fn_cdc_get_column_ordinal('dbo_wide', 'c17')",
        tsql="SELECT sys.fn_cdc_get_column_ordinal('dbo_wide', 'c17')",
    )
    assert ordinal == [(17,)]


def test_lob_before_image_is_null_unless_changed(backend: Backend) -> None:
    """§1.7 LOB rules: (max) columns are NULL in the op 3 before-image unless that column changed."""
    backend.run(
        pg="CREATE TABLE dbo.docs (id int PRIMARY KEY, body text, title varchar(10))",
        tsql="CREATE TABLE dbo.docs (id int PRIMARY KEY, body nvarchar(max), title nvarchar(10))",
    )
    backend.run(
        pg="CALL sys.sp_cdc_enable_table(source_schema => 'dbo', source_name => 'docs', role_name => NULL)",
        tsql="EXEC sys.sp_cdc_enable_table @source_schema = N'dbo', @source_name = N'docs', @role_name = NULL",
    )
    backend.run(
        pg="INSERT INTO dbo.docs VALUES (1, 'long', 't')", tsql="INSERT INTO dbo.docs VALUES (1, N'long', N't')"
    )
    backend.run(pg="UPDATE dbo.docs SET title = 'u'", tsql="UPDATE dbo.docs SET title = N'u'")
    backend.run(pg="UPDATE dbo.docs SET body = 'longer'", tsql="UPDATE dbo.docs SET body = N'longer'")
    backend.capture()
    rows = _ct(backend, "dbo_docs", "body, title")
    assert [(r[2], r[5], r[6]) for r in rows] == [
        (2, "long", "t"),
        (3, None, "t"),
        (4, "long", "u"),
        (3, "long", "u"),
        (4, "longer", "u"),
    ]


def test_lsn_functions(backend: Backend) -> None:
    """§2.1: min LSN is 0x00.. for an unknown instance; increment/decrement are ±1 on the 80-bit value;
    map_lsn_to_time gives tran_end_time; map_time_to_lsn finds the LSN by commit time."""
    _orders(backend)
    backend.run(pg="INSERT INTO dbo.orders VALUES (1, 'a', 1)", tsql="INSERT INTO dbo.orders VALUES (1, N'a', 1)")
    backend.capture()
    ((unknown, mx, inc, dec, t),) = backend.run(
        pg="SELECT sys.fn_cdc_get_min_lsn('nope'), sys.fn_cdc_get_max_lsn(), "
        "sys.fn_cdc_increment_lsn('\\x0000002a00000590ffff'::bytea), "
        "sys.fn_cdc_decrement_lsn('\\x0000002a000005900000'::bytea), "
        "sys.fn_cdc_map_lsn_to_time(sys.fn_cdc_get_max_lsn())",
        tsql="SELECT sys.fn_cdc_get_min_lsn('nope'), sys.fn_cdc_get_max_lsn(), "
        "sys.fn_cdc_increment_lsn(0x0000002a00000590ffff), sys.fn_cdc_decrement_lsn(0x0000002a000005900000), "
        "sys.fn_cdc_map_lsn_to_time(sys.fn_cdc_get_max_lsn())",
    )
    assert unknown == ZERO
    assert inc == bytes.fromhex("0000002a000005910000")
    assert dec == bytes.fromhex("0000002a0000058fffff")
    ((found,),) = backend.run(
        pg="SELECT sys.fn_cdc_map_time_to_lsn('largest less than or equal', :t)",
        tsql="SELECT sys.fn_cdc_map_time_to_lsn('largest less than or equal', :t)",
        t=t,
    )
    assert found == mx
    ((none,),) = backend.run(
        pg="SELECT sys.fn_cdc_map_time_to_lsn('smallest greater than', :t)",
        tsql="SELECT sys.fn_cdc_map_time_to_lsn('smallest greater than', :t)",
        t=t,
    )
    assert none is None


def test_all_changes_closed_range_filters_and_313(backend: Backend) -> None:
    """§2.2: closed range; 'all' drops op 3; no __$command_id; an invalid range raises Msg 313."""
    _orders(backend)
    backend.run(pg="INSERT INTO dbo.orders VALUES (1, 'a', 1)", tsql="INSERT INTO dbo.orders VALUES (1, N'a', 1)")
    backend.run(pg="UPDATE dbo.orders SET qty = 2", tsql="UPDATE dbo.orders SET qty = 2")
    backend.capture()
    q_pg = (
        'SELECT "__$operation" FROM cdc.fn_cdc_get_all_changes_dbo_orders('
        "sys.fn_cdc_get_min_lsn('dbo_orders'), sys.fn_cdc_get_max_lsn(), :opt) ORDER BY 1"
    )
    q_ts = (
        "DECLARE @f binary(10) = sys.fn_cdc_get_min_lsn('dbo_orders'), @t binary(10) = sys.fn_cdc_get_max_lsn(); "
        "SELECT __$operation FROM cdc.fn_cdc_get_all_changes_dbo_orders(@f, @t, :opt) ORDER BY 1"
    )
    assert [r[0] for r in backend.run(pg=q_pg, tsql=q_ts, opt="all")] == [2, 4]
    assert [r[0] for r in backend.run(pg=q_pg, tsql=q_ts, opt=" ALL UPDATE OLD ")] == [2, 3, 4]
    with pytest.raises(Exception, match="313") as excinfo:
        backend.run(
            pg="SELECT * FROM cdc.fn_cdc_get_all_changes_dbo_orders(sys.fn_cdc_get_max_lsn(), "
            "sys.fn_cdc_increment_lsn(sys.fn_cdc_get_max_lsn()), 'all')",
            tsql="DECLARE @t binary(10) = sys.fn_cdc_get_max_lsn(); "
            "SELECT * FROM cdc.fn_cdc_get_all_changes_dbo_orders(@t, sys.fn_cdc_increment_lsn(@t), 'all')",
        )
    assert "insufficient number of arguments" in str(excinfo.value)


def test_third_capture_instance_is_refused(backend: Backend) -> None:
    """§2.5/§4: at most two capture instances per table; a third raises Msg 22962."""
    _orders(backend)
    backend.run(
        pg="CALL sys.sp_cdc_enable_table(source_schema => 'dbo', source_name => 'orders', role_name => NULL, "
        "capture_instance => 'dbo_orders_v2')",
        tsql="EXEC sys.sp_cdc_enable_table @source_schema = N'dbo', @source_name = N'orders', @role_name = NULL, "
        "@capture_instance = N'dbo_orders_v2'",
    )
    with pytest.raises(Exception, match="22962"):
        backend.run(
            pg="CALL sys.sp_cdc_enable_table(source_schema => 'dbo', source_name => 'orders', role_name => NULL, "
            "capture_instance => 'dbo_orders_v3')",
            tsql="EXEC sys.sp_cdc_enable_table @source_schema = N'dbo', @source_name = N'orders', "
            "@role_name = NULL, @capture_instance = N'dbo_orders_v3'",
        )
    backend.run(pg="INSERT INTO dbo.orders VALUES (1, 'a', 1)", tsql="INSERT INTO dbo.orders VALUES (1, N'a', 1)")
    backend.capture()
    assert len(_ct(backend)) == len(_ct(backend, "dbo_orders_v2")) == 1


def test_add_column_writes_ddl_history_and_leaves_change_table(backend: Backend) -> None:
    """§4: ADD COLUMN writes a ddl_history row (required_column_update = 0) and does not change the _CT."""
    _orders(backend)
    backend.run(
        pg="ALTER TABLE dbo.orders ADD COLUMN note varchar(5)", tsql="ALTER TABLE dbo.orders ADD note nvarchar(5)"
    )
    backend.run(
        pg="INSERT INTO dbo.orders VALUES (1, 'a', 1, 'x')", tsql="INSERT INTO dbo.orders VALUES (1, N'a', 1, N'x')"
    )
    backend.capture()
    hist = backend.run(
        pg="SELECT required_column_update FROM cdc.ddl_history",
        tsql="SELECT required_column_update FROM cdc.ddl_history",
    )
    assert [bool(h[0]) for h in hist] == [False]
    assert [r[5:] for r in _ct(backend, cols="id, name, qty")] == [(1, "a", 1)]


def test_captured_columns_report_sql_server_type_names(backend: Backend) -> None:
    """§1.2 + sys.columns: column_type is the SQL Server type name; max_length counts bytes (nvarchar(20) = 40)."""
    _orders(backend)
    types = backend.run(
        pg="SELECT column_name, column_type FROM cdc.captured_columns ORDER BY column_ordinal",
        tsql="SELECT column_name, column_type FROM cdc.captured_columns ORDER BY column_ordinal",
    )
    assert types == [("id", "int"), ("name", "nvarchar"), ("qty", "int")]
    ((length,),) = backend.run(
        pg="SELECT max_length FROM sys.columns WHERE object_id = (SELECT t.object_id FROM sys.tables t "
        "JOIN sys.schemas s ON s.schema_id = t.schema_id WHERE s.name = 'dbo' AND t.name = 'orders') "
        "AND name = 'name'",
        tsql="SELECT max_length FROM sys.columns WHERE object_id = OBJECT_ID('dbo.orders') AND name = 'name'",
    )
    assert length == 40


def test_sys_columns_names_the_collation_of_character_columns_only(backend: Backend) -> None:
    """sys.columns.collation_name: set for character columns (their code page, read by source/values.py), NULL
    for the others. The emulator stores UTF-8 text and says so with a _UTF8 collation."""
    _orders(backend)
    rows = backend.run(
        pg="SELECT name, collation_name FROM sys.columns WHERE object_id = (SELECT t.object_id FROM sys.tables t "
        "JOIN sys.schemas s ON s.schema_id = t.schema_id WHERE s.name = 'dbo' AND t.name = 'orders') "
        "ORDER BY column_id",
        tsql="SELECT name, collation_name FROM sys.columns WHERE object_id = OBJECT_ID('dbo.orders') "
        "ORDER BY column_id",
    )
    assert [name for name, _ in rows] == ["id", "name", "qty"]
    collations = dict(rows)
    assert collations["id"] is None
    assert collations["qty"] is None
    assert isinstance(collations["name"], str)
    assert collations["name"]
