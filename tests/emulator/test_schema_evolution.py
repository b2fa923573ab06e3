"""Conformance cases for schema changes on captured tables (what issue 12's schema evolution reads).

Each docstring cites the section of /work/shared/reference/sqlserver-cdc.md (or the Microsoft page) it checks.
Parametrized over the emulator and a real SQL Server (skipped unless MSSQL2PG_TEST_MSSQL_URL is set); DDL is
spelled per dialect, the rest the same in both."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, NamedTuple

import pytest

from tests.emulator.backends import Backend

pytestmark = pytest.mark.integration

ZERO = b"\x00" * 10


def _same(b: Backend, sql: str, /, **params: object) -> list[tuple[Any, ...]]:
    """A statement spelled the same in both dialects."""
    return b.run(pg=sql, tsql=sql, **params)


def _enable(b: Backend, table: str, capture_instance: str | None = None) -> None:
    ci_pg = f", capture_instance => '{capture_instance}'" if capture_instance else ""
    ci_ts = f", @capture_instance = N'{capture_instance}'" if capture_instance else ""
    b.run(
        pg=f"CALL sys.sp_cdc_enable_table(source_schema => 'dbo', source_name => '{table}', role_name => NULL{ci_pg})",
        tsql=f"EXEC sys.sp_cdc_enable_table @source_schema = N'dbo', @source_name = N'{table}', "
        f"@role_name = NULL{ci_ts}",
    )


def _disable(b: Backend, table: str, capture_instance: str) -> None:
    b.run(
        pg=f"CALL sys.sp_cdc_disable_table(source_schema => 'dbo', source_name => '{table}', "
        f"capture_instance => '{capture_instance}')",
        tsql=f"EXEC sys.sp_cdc_disable_table @source_schema = N'dbo', @source_name = N'{table}', "
        f"@capture_instance = N'{capture_instance}'",
    )


def _orders(b: Backend) -> None:
    b.run(
        pg="CREATE TABLE dbo.orders (id int PRIMARY KEY, name varchar(20), qty int)",
        tsql="CREATE TABLE dbo.orders (id int PRIMARY KEY, name nvarchar(20), qty int)",
    )
    _enable(b, "orders")


def _table_id(b: Backend, table: str) -> int:
    ((object_id,),) = b.run(
        pg="SELECT t.object_id FROM sys.tables t JOIN sys.schemas s ON s.schema_id = t.schema_id "
        "WHERE s.name = 'dbo' AND t.name = :t",
        tsql="SELECT OBJECT_ID('dbo.' + :t)",
        t=table,
    )
    return int(object_id)


def _ct_rows(b: Backend, ci: str, cols: str) -> list[tuple[Any, ...]]:
    """``(__$start_lsn, __$operation, <cols>)`` of a change table in commit order."""
    return b.run(
        pg=f'SELECT "__$start_lsn", "__$operation", {cols} FROM cdc."{ci}_CT" '
        'ORDER BY "__$start_lsn", "__$command_id", "__$seqval", "__$operation"',
        tsql=f"SELECT __$start_lsn, __$operation, {cols} FROM cdc.[{ci}_CT] "
        "ORDER BY __$start_lsn, __$command_id, __$seqval, __$operation",
    )


def _ct_columns(b: Backend, ci: str) -> list[str]:
    rows = b.run(
        pg="SELECT column_name FROM information_schema.columns WHERE table_schema = 'cdc' AND table_name = :t "
        "ORDER BY ordinal_position",
        tsql="SELECT name FROM sys.columns WHERE object_id = OBJECT_ID('cdc.' + QUOTENAME(:t)) ORDER BY column_id",
        t=f"{ci}_CT",
    )
    return [str(r[0]) for r in rows]


def _captured(b: Backend, ci: str) -> list[tuple[Any, ...]]:
    """``(column_name, column_id, column_type, column_ordinal)`` of an instance, in ordinal order."""
    return _same(
        b,
        "SELECT cc.column_name, cc.column_id, cc.column_type, cc.column_ordinal FROM cdc.captured_columns cc "
        "JOIN cdc.change_tables ct ON ct.object_id = cc.object_id WHERE ct.capture_instance = :ci "
        "ORDER BY cc.column_ordinal",
        ci=ci,
    )


def _instances(b: Backend) -> list[tuple[Any, ...]]:
    """``(capture_instance, source_object_id, start_lsn)`` of every instance, by name."""
    return _same(b, "SELECT capture_instance, source_object_id, start_lsn FROM cdc.change_tables ORDER BY 1")


# --- cdc.ddl_history ------------------------------------------------------------------------------------------


def test_ddl_history_records_each_column_change_with_its_commit_lsn(backend: Backend) -> None:
    """§1.4/§4 and MS cdc.ddl_history: ADD COLUMN, DROP COLUMN and a captured column's type change each write
    one row for the instance: source_object_id = the source table, object_id = its change table,
    required_column_update = 1 only for the type change, ddl_command = the DDL statement, ddl_lsn = the LSN of
    the DDL's commit (above every change committed before it, below every change committed after it), ddl_time
    set. sp_cdc_get_ddl_history reports the same rows for the instance."""
    _orders(backend)
    _same(backend, "INSERT INTO dbo.orders (id) VALUES (1)")
    backend.run(
        pg="ALTER TABLE dbo.orders ADD COLUMN note varchar(5)", tsql="ALTER TABLE dbo.orders ADD note nvarchar(5)"
    )
    _same(backend, "INSERT INTO dbo.orders (id) VALUES (2)")
    _same(backend, "ALTER TABLE dbo.orders DROP COLUMN qty")
    _same(backend, "INSERT INTO dbo.orders (id) VALUES (3)")
    backend.run(
        pg="ALTER TABLE dbo.orders ALTER COLUMN name TYPE varchar(40)",
        tsql="ALTER TABLE dbo.orders ALTER COLUMN name nvarchar(40)",
    )
    _same(backend, "INSERT INTO dbo.orders (id) VALUES (4)")
    backend.capture()

    source_id = _table_id(backend, "orders")
    ((ct_id,),) = _same(backend, "SELECT object_id FROM cdc.change_tables")
    history = _same(
        backend,
        "SELECT source_object_id, object_id, required_column_update, ddl_command, ddl_lsn, ddl_time "
        "FROM cdc.ddl_history ORDER BY ddl_lsn",
    )
    assert [(h[0], h[1], bool(h[2])) for h in history] == [
        (source_id, ct_id, False),
        (source_id, ct_id, False),
        (source_id, ct_id, True),
    ]
    for h, column in zip(history, ("note", "qty", "name"), strict=True):
        assert column in str(h[3]).lower()
        assert "alter table" in str(h[3]).lower()
        assert len(h[4]) == 10
        assert h[5] is not None
    insert_lsns = [r[0] for r in _ct_rows(backend, "dbo_orders", "id")]
    ddl_lsns = [h[4] for h in history]
    assert insert_lsns[0] < ddl_lsns[0] < insert_lsns[1] < ddl_lsns[1] < insert_lsns[2] < ddl_lsns[2] < insert_lsns[3]
    reported = backend.run(
        pg="SELECT capture_instance, required_column_update, ddl_lsn FROM sys.sp_cdc_get_ddl_history('dbo_orders')",
        tsql="EXEC sys.sp_cdc_get_ddl_history @capture_instance = N'dbo_orders'",
    )
    if backend.name == "mssql":  # source_schema, source_table, capture_instance, required_column_update, ...
        reported = [(r[2], r[3], r[5]) for r in reported]
    assert sorted((bytes(r[2]), str(r[0]), bool(r[1])) for r in reported) == [
        (bytes(h[4]), "dbo_orders", bool(h[2])) for h in history
    ]


class TypeChange(NamedTuple):
    """One type change: column definition and ALTER per dialect (pg, tsql), the value inserted before and after
    it, the two values the change table then holds, and (data_type, character_maximum_length,
    numeric_precision, numeric_scale) as sp_cdc_get_captured_columns reports the new type."""

    create: tuple[str, str]
    alter: tuple[str, str]
    values: tuple[object, object]
    captured: tuple[object, object]
    reported: tuple[object, ...]


TYPE_CHANGES = [
    pytest.param(
        TypeChange(
            ("v int", "v int"),
            (
                "ALTER TABLE dbo.t ALTER COLUMN v TYPE text USING v::text",
                "ALTER TABLE dbo.t ALTER COLUMN v nvarchar(max)",
            ),
            (7, 8),
            ("7", "8"),
            ("nvarchar", -1, None, None),
        ),
        id="int-to-text",
    ),
    pytest.param(
        TypeChange(
            ("v text", "v nvarchar(max)"),
            ("ALTER TABLE dbo.t ALTER COLUMN v TYPE int USING v::int", "ALTER TABLE dbo.t ALTER COLUMN v int"),
            ("7", "8"),
            (7, 8),
            ("int", None, 10, 0),
        ),
        id="text-to-int",
    ),
    pytest.param(
        TypeChange(
            ("v varchar(10)", "v nvarchar(10)"),
            ("ALTER TABLE dbo.t ALTER COLUMN v TYPE varchar(20)", "ALTER TABLE dbo.t ALTER COLUMN v nvarchar(20)"),
            ("abc", "abcdefghijklmnop"),
            ("abc", "abcdefghijklmnop"),
            ("nvarchar", 20, None, None),
        ),
        id="varchar10-to-varchar20",
    ),
    pytest.param(
        TypeChange(
            ("v numeric(10,2)", "v numeric(10,2)"),
            ("ALTER TABLE dbo.t ALTER COLUMN v TYPE numeric(12,4)", "ALTER TABLE dbo.t ALTER COLUMN v numeric(12,4)"),
            (Decimal("1.25"), Decimal("12345678.1234")),
            (Decimal("1.2500"), Decimal("12345678.1234")),
            ("decimal", None, 12, 4),
        ),
        id="numeric10_2-to-numeric12_4",
    ),
]


@pytest.mark.parametrize("change", TYPE_CHANGES)
def test_type_change_alters_the_change_table_column(backend: Backend, change: TypeChange) -> None:
    """§4 + MS about-CDC "Handling changes to source tables": a captured column's type change is propagated to
    the change table (rows already captured are converted, later ones have the new type), written to ddl_history
    with required_column_update = 1, and sp_cdc_get_captured_columns reports the new type. The emulator's
    PostgreSQL spelling uses a USING clause where PostgreSQL needs one (text -> int)."""
    backend.run(
        pg=f"CREATE TABLE dbo.t (id int PRIMARY KEY, {change.create[0]})",
        tsql=f"CREATE TABLE dbo.t (id int PRIMARY KEY, {change.create[1]})",
    )
    _enable(backend, "t")
    _same(backend, "INSERT INTO dbo.t VALUES (1, :v)", v=change.values[0])
    backend.run(pg=change.alter[0], tsql=change.alter[1])
    _same(backend, "INSERT INTO dbo.t VALUES (2, :v)", v=change.values[1])
    backend.capture()
    assert [r[2:] for r in _ct_rows(backend, "dbo_t", "id, v")] == [(1, change.captured[0]), (2, change.captured[1])]
    assert [bool(r[0]) for r in _same(backend, "SELECT required_column_update FROM cdc.ddl_history")] == [True]
    assert _captured(backend, "dbo_t")[1][2] == change.reported[0]
    facts = backend.run(
        pg="SELECT column_name, data_type, character_maximum_length, numeric_precision, numeric_scale "
        "FROM sys.sp_cdc_get_captured_columns('dbo_t')",
        tsql="EXEC sys.sp_cdc_get_captured_columns @capture_instance = N'dbo_t'",
    )
    if backend.name == "mssql":  # ..., column_name [3], ..., data_type [6], char len [7], precision [8], radix, scale
        facts = [(r[3], r[6], r[7], r[8], r[10]) for r in facts]
    assert [f[1:] for f in facts if f[0] == "v"] == [change.reported]


def test_a_key_column_type_change_is_refused(backend: Backend) -> None:
    """MS enable-and-disable-CDC: the primary key CDC uses cannot be changed while the table is enabled; SQL
    Server refuses ALTER COLUMN on a column the key index depends on (Msg 5074 / Msg 4922). Nothing changes."""
    _orders(backend)
    with pytest.raises(Exception, match=r"5074|4922"):
        backend.run(
            pg="ALTER TABLE dbo.orders ALTER COLUMN id TYPE bigint",
            tsql="ALTER TABLE dbo.orders ALTER COLUMN id bigint NOT NULL",
        )
    assert _captured(backend, "dbo_orders")[0][:3] == ("id", 1, "int")
    assert _same(backend, "SELECT count(*) FROM cdc.ddl_history") == [(0,)]


def test_renaming_a_captured_column_is_refused(backend: Backend) -> None:
    """Debezium's SQL Server docs ("Refreshing capture tables after a schema change"): SQL Server does not allow
    renaming a column of a CDC-enabled table. The error number/text (Msg 4928 "Cannot alter column ... because
    it is 'enabled for Change Data Capture'") is UNCONFIRMED; the catalog stays as it was."""
    _orders(backend)
    with pytest.raises(Exception, match="4928"):
        backend.run(
            pg="ALTER TABLE dbo.orders RENAME COLUMN qty TO quantity",
            tsql="EXEC sp_rename 'dbo.orders.qty', 'quantity', 'COLUMN'",
        )
    assert [c[0] for c in _captured(backend, "dbo_orders")] == ["id", "name", "qty"]


# --- an existing capture instance keeps its shape -----------------------------------------------------------


def test_an_existing_instance_keeps_its_shape_after_add_and_drop(backend: Backend) -> None:
    """§4 + MS about-CDC: an added column is ignored by the existing instance (captured_columns, the change
    table and the all-changes function keep their columns); a dropped captured column stays in the change
    table and is NULL in later rows; a column re-added under a dropped column's name is a NEW column (new
    column_id), so the instance keeps capturing NULL for the old one."""
    _orders(backend)
    before_captured = _captured(backend, "dbo_orders")
    before_ct = _ct_columns(backend, "dbo_orders")
    _same(backend, "INSERT INTO dbo.orders VALUES (1, 'a', 5)")
    backend.run(
        pg="ALTER TABLE dbo.orders ADD COLUMN note varchar(5)", tsql="ALTER TABLE dbo.orders ADD note nvarchar(5)"
    )
    _same(backend, "ALTER TABLE dbo.orders DROP COLUMN qty")
    backend.run(
        pg="ALTER TABLE dbo.orders ADD COLUMN qty varchar(5)", tsql="ALTER TABLE dbo.orders ADD qty nvarchar(5)"
    )
    _same(backend, "INSERT INTO dbo.orders (id, name, note, qty) VALUES (2, 'b', 'n', 'q')")
    _same(backend, "UPDATE dbo.orders SET qty = 'r', note = 'm' WHERE id = 2")
    backend.capture()
    assert _captured(backend, "dbo_orders") == before_captured
    assert _ct_columns(backend, "dbo_orders") == before_ct
    assert [r[1:] for r in _ct_rows(backend, "dbo_orders", "id, name, qty")] == [
        (2, 1, "a", 5),
        (2, 2, "b", None),
        (3, 2, "b", None),
        (4, 2, "b", None),
    ]
    width = backend.run(
        pg="SELECT * FROM cdc.fn_cdc_get_all_changes_dbo_orders(sys.fn_cdc_get_min_lsn('dbo_orders'), "
        "sys.fn_cdc_get_max_lsn(), 'all')",
        tsql="DECLARE @f binary(10) = sys.fn_cdc_get_min_lsn('dbo_orders'), @t binary(10) = sys.fn_cdc_get_max_lsn(); "
        "SELECT * FROM cdc.fn_cdc_get_all_changes_dbo_orders(@f, @t, N'all')",
    )
    assert {len(r) for r in width} == {4 + 3}  # __$start_lsn, __$seqval, __$operation, __$update_mask + id, name, qty


# --- a second capture instance ---------------------------------------------------------------------------------


def test_second_capture_instance_lifecycle(backend: Backend) -> None:
    """§2.1/§2.5/§2.6/§4: a second instance on the same table captures the current columns; its start_lsn
    (cdc.change_tables, = fn_cdc_get_min_lsn) lies above every change committed before it was enabled and at or
    below the first one after; both instances receive every later change; sp_cdc_help_change_data_capture lists
    both; a third is refused (Msg 22962); sp_cdc_disable_table with one capture_instance drops only that one
    (its min LSN becomes 0x00..., the table stays tracked), after which a new second instance is allowed."""
    _orders(backend)
    _same(backend, "INSERT INTO dbo.orders VALUES (1, 'a', 1)")
    backend.run(
        pg="ALTER TABLE dbo.orders ADD COLUMN note varchar(5)", tsql="ALTER TABLE dbo.orders ADD note nvarchar(5)"
    )
    _same(backend, "INSERT INTO dbo.orders VALUES (2, 'b', 2, 'x')")
    backend.capture()
    _enable(backend, "orders", "x2")
    _same(backend, "INSERT INTO dbo.orders VALUES (3, 'c', 3, 'y')")
    _same(backend, "UPDATE dbo.orders SET note = 'z' WHERE id = 1")
    backend.capture()

    assert [c[0] for c in _captured(backend, "x2")] == ["id", "name", "qty", "note"]
    source_id = _table_id(backend, "orders")
    (old, new) = _instances(backend)
    assert (old[0], old[1], new[0], new[1]) == ("dbo_orders", source_id, "x2", source_id)
    start = new[2]
    assert start is not None
    assert len(start) == 10
    assert _same(backend, "SELECT sys.fn_cdc_get_min_lsn('x2')") == [(start,)]
    old_rows = _ct_rows(backend, "dbo_orders", "id")
    new_rows = _ct_rows(backend, "x2", "id, note")
    assert [r[2] for r in old_rows if r[0] < start] == [1, 2]
    assert [r[1:] for r in old_rows if r[0] >= start] == [(2, 3), (3, 1), (4, 1)]
    assert [r[1:] for r in new_rows] == [(2, 3, "y"), (3, 1, None), (4, 1, "z")]
    assert [r[0] for r in old_rows if r[0] >= start] == [r[0] for r in new_rows]

    listed = backend.run(
        pg="SELECT capture_instance FROM sys.sp_cdc_help_change_data_capture('dbo', 'orders')",
        tsql="EXEC sys.sp_cdc_help_change_data_capture @source_schema = N'dbo', @source_name = N'orders'",
    )
    names = sorted(str(r[2] if backend.name == "mssql" else r[0]) for r in listed)
    assert names == ["dbo_orders", "x2"]
    with pytest.raises(Exception, match="22962"):
        _enable(backend, "orders", "x3")

    _disable(backend, "orders", "dbo_orders")
    assert [i[0] for i in _instances(backend)] == ["x2"]
    assert _same(backend, "SELECT sys.fn_cdc_get_min_lsn('dbo_orders')") == [(ZERO,)]
    tracked = backend.run(
        pg="SELECT is_tracked_by_cdc FROM sys.tables WHERE object_id = :o",
        tsql="SELECT is_tracked_by_cdc FROM sys.tables WHERE object_id = :o",
        o=source_id,
    )
    assert [bool(t[0]) for t in tracked] == [True]
    _enable(backend, "orders", "x3")
    _same(backend, "INSERT INTO dbo.orders VALUES (4, 'd', 4, 'w')")
    backend.capture()
    assert [r[2] for r in _ct_rows(backend, "x2", "id")][-1] == 4
    assert [r[2] for r in _ct_rows(backend, "x3", "id")] == [4]


# --- the source table renamed or dropped ----------------------------------------------------------------------


def test_renamed_table_keeps_its_capture_instance(backend: Backend) -> None:
    """§4 (Debezium: after sp_rename of the table, capture goes on) + §1.1: the instance is bound to the
    source table's object_id, so after a rename change_tables.source_object_id still names the table (now under
    its new name, as sp_cdc_help_change_data_capture shows), the instance keeps its name and captures on."""
    _orders(backend)
    source_id = _table_id(backend, "orders")
    _same(backend, "INSERT INTO dbo.orders VALUES (1, 'a', 1)")
    backend.run(
        pg="ALTER TABLE dbo.orders RENAME TO orders_renamed", tsql="EXEC sp_rename 'dbo.orders', 'orders_renamed'"
    )
    _same(backend, "INSERT INTO dbo.orders_renamed VALUES (2, 'b', 2)")
    backend.capture()
    assert _table_id(backend, "orders_renamed") == source_id
    assert [(i[0], i[1]) for i in _instances(backend)] == [("dbo_orders", source_id)]
    assert [r[2] for r in _ct_rows(backend, "dbo_orders", "id")] == [1, 2]
    listed = backend.run(
        pg="SELECT source_schema, source_table, capture_instance FROM sys.sp_cdc_help_change_data_capture()",
        tsql="EXEC sys.sp_cdc_help_change_data_capture",
    )
    assert [tuple(r[:3]) for r in listed] == [("dbo", "orders_renamed", "dbo_orders")]


def test_dropped_table_loses_its_capture_instances(backend: Backend) -> None:
    """MS enable-and-disable-CDC ("If a change data capture-enabled table is dropped, change data capture
    metadata that is associated with the table is automatically removed"): DROP TABLE removes the table's
    instances, their change tables and functions and their rows in change_tables, captured_columns,
    index_columns and ddl_history (fn_cdc_get_min_lsn back to 0x00...); other tables keep capturing."""
    _orders(backend)
    _enable(backend, "orders", "x2")
    _same(backend, "CREATE TABLE dbo.other (id int PRIMARY KEY)")
    _enable(backend, "other")
    _same(backend, "INSERT INTO dbo.orders VALUES (1, 'a', 1)")
    backend.run(
        pg="ALTER TABLE dbo.orders ADD COLUMN note varchar(5)", tsql="ALTER TABLE dbo.orders ADD note nvarchar(5)"
    )
    backend.capture()
    ((other_ct,),) = _same(backend, "SELECT object_id FROM cdc.change_tables WHERE capture_instance = 'dbo_other'")
    _same(backend, "DROP TABLE dbo.orders")
    _same(backend, "INSERT INTO dbo.other VALUES (1)")
    backend.capture()
    assert [i[0] for i in _instances(backend)] == ["dbo_other"]
    for table in ("captured_columns", "index_columns", "ddl_history"):
        ids = {r[0] for r in _same(backend, f"SELECT DISTINCT object_id FROM cdc.{table}")}
        assert ids <= {other_ct}, table
    for ci in ("dbo_orders", "x2"):
        assert _same(backend, "SELECT sys.fn_cdc_get_min_lsn(:ci)", ci=ci) == [(ZERO,)]
        gone = backend.run(
            pg="SELECT to_regclass(format('cdc.%I', :t::text)), to_regprocedure(format("
            "'cdc.%I(bytea, bytea, text)', 'fn_cdc_get_all_changes_' || :ci::text))",
            tsql="SELECT OBJECT_ID('cdc.' + QUOTENAME(:t)), OBJECT_ID('cdc.fn_cdc_get_all_changes_' + :ci)",
            t=f"{ci}_CT",
            ci=ci,
        )
        assert gone == [(None, None)]
    assert [r[2] for r in _ct_rows(backend, "dbo_other", "id")] == [1]
