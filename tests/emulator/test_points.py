"""Conformance cases for the issue's numbered points not covered in test_conformance.py.

Each docstring cites the section of /work/shared/reference/sqlserver-cdc.md it checks. Parametrized over the
emulator and a real SQL Server (skipped unless MSSQL2PG_TEST_MSSQL_URL is set)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.emulator.backends import Backend
from tests.fixtures.waiting import wait_for

pytestmark = pytest.mark.integration


def _enable(b: Backend, table: str, **extra: str) -> None:
    """sp_cdc_enable_table on dbo.<table>; ``extra`` values are SQL literals (same spelling in both dialects)."""
    pg_args = "".join(f", {k} => {v}" for k, v in extra.items())
    ts_args = "".join(f", @{k} = {v}" for k, v in extra.items())
    backend_args = {
        "pg": f"CALL sys.sp_cdc_enable_table(source_schema => 'dbo', source_name => '{table}', role_name => NULL"
        f"{pg_args})",
        "tsql": f"EXEC sys.sp_cdc_enable_table @source_schema = N'dbo', @source_name = N'{table}', "
        f"@role_name = NULL{ts_args}",
    }
    b.run(**backend_args)


def _orders(b: Backend) -> None:
    b.run(
        pg="CREATE TABLE dbo.orders (id int PRIMARY KEY, name varchar(20), qty int)",
        tsql="CREATE TABLE dbo.orders (id int PRIMARY KEY, name nvarchar(20), qty int)",
    )
    _enable(b, "orders")


def _same(b: Backend, sql: str, /, **params: object) -> list[tuple[Any, ...]]:
    """A statement spelled the same in both dialects."""
    return b.run(pg=sql, tsql=sql, **params)


# --- point 1: catalog meaning -------------------------------------------------------------------------------


def test_catalog_rows_describe_the_capture_instance(backend: Backend) -> None:
    """§1.1-§1.3: change_tables has one row per instance pointing at the source table (source_object_id =
    sys.tables.object_id); captured_columns.column_id is the SOURCE column_id and column_ordinal the position
    among captured columns; index_columns lists the primary key columns of that change table."""
    _orders(backend)
    ((obj, src, ci, net, start),) = _same(
        backend,
        "SELECT object_id, source_object_id, capture_instance, supports_net_changes, start_lsn FROM cdc.change_tables",
    )
    assert ci == "dbo_orders"
    assert bool(net) is True
    assert start is None or len(start) == 10
    ((table_id,),) = backend.run(
        pg="SELECT t.object_id FROM sys.tables t JOIN sys.schemas s ON s.schema_id = t.schema_id "
        "WHERE s.name = 'dbo' AND t.name = 'orders'",
        tsql="SELECT OBJECT_ID('dbo.orders')",
    )
    assert src == table_id
    assert obj != src
    cols = _same(
        backend,
        "SELECT object_id, column_name, column_id, column_ordinal FROM cdc.captured_columns ORDER BY column_ordinal",
    )
    assert cols == [(obj, "id", 1, 1), (obj, "name", 2, 2), (obj, "qty", 3, 3)]
    assert _same(backend, "SELECT object_id, column_name, index_ordinal, column_id FROM cdc.index_columns") == [
        (obj, "id", 1, 1)
    ]


# --- point 2: update mask with more than 8 columns ----------------------------------------------------------


def test_update_mask_with_nine_columns_has_two_bytes(backend: Backend) -> None:
    """§1.7 mask: 9 captured columns need ceil(9/8) = 2 bytes; ordinal 9 is the lowest bit of the FIRST byte and
    ordinal 1 the lowest bit of the LAST byte."""
    cols = ", ".join(f"c{i} int" for i in range(2, 10))
    _same(backend, f"CREATE TABLE dbo.nine (id int PRIMARY KEY, {cols})")
    _enable(backend, "nine")
    _same(backend, "INSERT INTO dbo.nine (id) VALUES (1)")
    _same(backend, "UPDATE dbo.nine SET c9 = 1 WHERE id = 1")
    _same(backend, "UPDATE dbo.nine SET c2 = 1 WHERE id = 1")
    backend.capture()
    masks = backend.run(
        pg='SELECT "__$operation", "__$update_mask" FROM cdc."dbo_nine_CT" ORDER BY "__$start_lsn", "__$seqval", 1',
        tsql="SELECT __$operation, __$update_mask FROM cdc.dbo_nine_CT ORDER BY __$start_lsn, __$seqval, 1",
    )
    assert masks == [
        (2, b"\x01\xff"),
        (3, b"\x01\x00"),
        (4, b"\x01\x00"),
        (3, b"\x00\x02"),
        (4, b"\x00\x02"),
    ]


# --- point 3: transactions, LSNs and lsn_time_mapping --------------------------------------------------------


def test_multi_table_transaction_shares_one_commit_lsn_and_one_mapping_row(backend: Backend) -> None:
    """§3.2/§3.3/§1.5: all rows of one transaction carry the same 10-byte commit LSN in every change table;
    lsn_time_mapping gets exactly one row per transaction (tran_begin_time <= tran_end_time, a tran_id that
    differs between transactions); LSNs grow in commit order."""
    _orders(backend)
    _same(backend, "CREATE TABLE dbo.lines (id int PRIMARY KEY, order_id int)")
    _enable(backend, "lines")
    for n in (1, 2):
        backend.run(pg="BEGIN", tsql="BEGIN TRANSACTION")
        backend.run(
            pg="INSERT INTO dbo.orders VALUES (:n, 'o', 1)", tsql="INSERT INTO dbo.orders VALUES (:n, N'o', 1)", n=n
        )
        _same(backend, "INSERT INTO dbo.lines VALUES (:k1, :n), (:k2, :n)", k1=n * 10, k2=n * 10 + 1, n=n)
        _same(backend, "COMMIT")
    backend.capture()
    orders = backend.run(
        pg='SELECT id, "__$start_lsn" FROM cdc."dbo_orders_CT" ORDER BY 1',
        tsql="SELECT id, __$start_lsn FROM cdc.dbo_orders_CT ORDER BY 1",
    )
    lines = backend.run(
        pg='SELECT DISTINCT order_id, "__$start_lsn" FROM cdc."dbo_lines_CT" ORDER BY 1',
        tsql="SELECT DISTINCT order_id, __$start_lsn FROM cdc.dbo_lines_CT ORDER BY 1",
    )
    assert lines == orders
    lsn1, lsn2 = orders[0][1], orders[1][1]
    assert len(lsn1) == len(lsn2) == 10
    assert lsn1 < lsn2
    mapping = backend.run(
        pg="SELECT start_lsn, tran_begin_time, tran_end_time, tran_id FROM cdc.lsn_time_mapping "
        "WHERE tran_id <> '\\x00'::bytea ORDER BY start_lsn",
        tsql="SELECT start_lsn, tran_begin_time, tran_end_time, tran_id FROM cdc.lsn_time_mapping "
        "WHERE tran_id <> 0x00 ORDER BY start_lsn",
    )
    assert [m[0] for m in mapping] == [lsn1, lsn2]
    assert all(m[1] <= m[2] for m in mapping)
    assert mapping[0][3] != mapping[1][3]


# --- point 4: functions ----------------------------------------------------------------------------------------


def _two_transactions_at_distinct_times(b: Backend) -> tuple[bytes, bytes, object, object]:
    """Two committed inserts whose tran_end_time differ (waits for the server clock to pass the first)."""
    _orders(b)
    _same(b, "INSERT INTO dbo.orders (id) VALUES (1)")
    b.capture()
    ((t1,),) = _same(b, "SELECT sys.fn_cdc_map_lsn_to_time(sys.fn_cdc_get_max_lsn())")
    wait_for(
        lambda: b.run(
            pg="SELECT clock_timestamp()::timestamp(3) > :t",
            tsql="SELECT CASE WHEN GETDATE() > :t THEN 1 ELSE 0 END",
            t=t1,
        )[0][0],
        timeout=5,
        what="the server clock to pass the first commit time",
    )
    _same(b, "INSERT INTO dbo.orders (id) VALUES (2)")
    b.capture()
    (l1,), (l2,) = b.run(
        pg='SELECT "__$start_lsn" FROM cdc."dbo_orders_CT" ORDER BY 1',
        tsql="SELECT __$start_lsn FROM cdc.dbo_orders_CT ORDER BY 1",
    )
    ((t2,),) = _same(b, "SELECT sys.fn_cdc_map_lsn_to_time(:l)", l=l2)
    assert t1 < t2
    return l1, l2, t1, t2


def test_map_time_to_lsn_all_four_operators(backend: Backend) -> None:
    """§2.1: map_time_to_lsn compares against tran_end_time with the four relational operators and returns NULL
    when nothing qualifies; map_lsn_to_time returns the tran_end_time of a start_lsn."""
    l1, l2, t1, t2 = _two_transactions_at_distinct_times(backend)

    def at(op: str, t: object) -> object:
        return _same(backend, "SELECT sys.fn_cdc_map_time_to_lsn(:op, :t)", op=op, t=t)[0][0]

    assert at("largest less than", t2) == l1
    assert at("largest less than or equal", t2) == l2
    assert at("smallest greater than", t1) == l2
    assert at("smallest greater than or equal", t1) == l1
    assert at("largest less than", t1) is None
    assert at("smallest greater than", t2) is None


MIN = "sys.fn_cdc_get_min_lsn('dbo_orders')"
MAX = "sys.fn_cdc_get_max_lsn()"


@pytest.mark.parametrize(
    "bounds",
    [
        pytest.param((f"sys.fn_cdc_decrement_lsn({MIN})", MAX, "all"), id="from-below-min"),
        pytest.param((MIN, f"sys.fn_cdc_increment_lsn({MAX})", "all"), id="to-above-max"),
        pytest.param((MAX, MIN, "all"), id="from-after-to"),
        pytest.param(("NULL", MAX, "all"), id="null-from"),
        pytest.param((MIN, "NULL", "all"), id="null-to"),
        pytest.param((MIN, MAX, "everything"), id="bad-row-filter"),
    ],
)
def test_invalid_ranges_raise_313(backend: Backend, bounds: tuple[str, str, str]) -> None:
    """§2.2/§5: NULL bounds, from below min LSN, to above max LSN, from > to and a bad row filter all raise Msg
    313 from both the all-changes and the net-changes functions (the bound expressions are spelled the same in
    both dialects; T-SQL needs them in variables)."""
    from_expr, to_expr, opt = bounds
    _orders(backend)
    _same(backend, "INSERT INTO dbo.orders (id) VALUES (1)")
    _same(backend, "INSERT INTO dbo.orders (id) VALUES (2)")
    backend.capture()
    for kind in ("all", "net"):
        with pytest.raises(Exception, match="313"):
            backend.run(
                pg=f"SELECT * FROM cdc.fn_cdc_get_{kind}_changes_dbo_orders({from_expr}, {to_expr}, :opt)",
                tsql=f"DECLARE @f binary(10) = {from_expr}, @t binary(10) = {to_expr}; "
                f"SELECT * FROM cdc.fn_cdc_get_{kind}_changes_dbo_orders(@f, @t, :opt)",
                opt=opt,
            )


def test_net_changes_row_filter_options(backend: Backend) -> None:
    """§2.3: net changes give one row per key with the values of its last change: an updated pre-existing row
    is op 4 (with its mask under 'all with mask'), a row inserted and updated in the window is op 2, a row
    inserted and deleted vanishes, a deleted pre-existing row is op 1; 'all with merge' turns ops 2/4 into 5
    (mask NULL)."""
    _orders(backend)
    _same(backend, "INSERT INTO dbo.orders (id, qty) VALUES (1, 1), (2, 1)")
    backend.capture()
    ((first,),) = _same(backend, "SELECT sys.fn_cdc_get_max_lsn()")
    _same(backend, "UPDATE dbo.orders SET qty = 7 WHERE id = 1")
    _same(backend, "DELETE FROM dbo.orders WHERE id = 2")
    _same(backend, "INSERT INTO dbo.orders (id, qty) VALUES (3, 1)")
    _same(backend, "UPDATE dbo.orders SET qty = 9 WHERE id = 3")
    _same(backend, "INSERT INTO dbo.orders (id, qty) VALUES (4, 1)")
    _same(backend, "DELETE FROM dbo.orders WHERE id = 4")
    backend.capture()

    def net(opt: str) -> list[tuple[object, ...]]:
        return backend.run(
            pg='SELECT id, "__$operation", "__$update_mask", qty FROM cdc.fn_cdc_get_net_changes_dbo_orders('
            "sys.fn_cdc_increment_lsn(:f), sys.fn_cdc_get_max_lsn(), :opt) ORDER BY id",
            tsql="DECLARE @f binary(10) = sys.fn_cdc_increment_lsn(:f), @t binary(10) = sys.fn_cdc_get_max_lsn(); "
            "SELECT id, __$operation, __$update_mask, qty FROM cdc.fn_cdc_get_net_changes_dbo_orders(@f, @t, :opt) "
            "ORDER BY id",
            f=first,
            opt=opt,
        )

    assert net("all") == [(1, 4, None, 7), (2, 1, None, 1), (3, 2, None, 9)]
    assert net("all with mask") == [(1, 4, b"\x04", 7), (2, 1, None, 1), (3, 2, None, 9)]
    assert net("all with merge") == [(1, 5, None, 7), (2, 1, None, 1), (3, 5, None, 9)]


def test_net_changes_all_with_mask_ors_every_update_in_the_window(backend: Backend) -> None:
    """§2.3: under 'all with mask' an op 4 row's mask is the OR of the masks of all the key's updates in the
    window (SQL Server's CLR sys.ORMask), not just the last update's."""
    _orders(backend)
    backend.run(pg="INSERT INTO dbo.orders VALUES (1, 'a', 1)", tsql="INSERT INTO dbo.orders VALUES (1, N'a', 1)")
    backend.capture()
    ((first,),) = _same(backend, "SELECT sys.fn_cdc_get_max_lsn()")
    backend.run(pg="UPDATE dbo.orders SET name = 'b'", tsql="UPDATE dbo.orders SET name = N'b'")
    _same(backend, "UPDATE dbo.orders SET qty = 2")
    backend.capture()
    rows = backend.run(
        pg='SELECT "__$operation", "__$update_mask" FROM cdc.fn_cdc_get_net_changes_dbo_orders('
        "sys.fn_cdc_increment_lsn(:f), sys.fn_cdc_get_max_lsn(), 'all with mask')",
        tsql="DECLARE @f binary(10) = sys.fn_cdc_increment_lsn(:f), @t binary(10) = sys.fn_cdc_get_max_lsn(); "
        "SELECT __$operation, __$update_mask FROM cdc.fn_cdc_get_net_changes_dbo_orders(@f, @t, 'all with mask')",
        f=first,
    )
    assert rows == [(4, b"\x06")]


# --- point 5: procedures ---------------------------------------------------------------------------------------


def test_enable_table_with_column_list_index_name_and_role(backend: Backend) -> None:
    """§2.5/§1.3: @captured_column_list limits the captured columns (ordinals 1..n among them, change table has
    only those); @index_name replaces the PK in index_columns; role_name and index_name land in change_tables."""
    _same(backend, "CREATE TABLE dbo.items (id int PRIMARY KEY, code int NOT NULL, a int, b int)")
    _same(backend, "CREATE UNIQUE INDEX ux_items_code ON dbo.items (code)")
    backend.run(  # bit parameters are boolean in the emulator (docs/emulator.md)
        pg="CALL sys.sp_cdc_enable_table(source_schema => 'dbo', source_name => 'items', role_name => NULL, "
        "captured_column_list => 'code, [a]', index_name => 'ux_items_code', supports_net_changes => true)",
        tsql="EXEC sys.sp_cdc_enable_table @source_schema = N'dbo', @source_name = N'items', @role_name = NULL, "
        "@captured_column_list = N'code, [a]', @index_name = N'ux_items_code', @supports_net_changes = 1",
    )
    assert _same(backend, "SELECT index_name, role_name FROM cdc.change_tables") == [("ux_items_code", None)]
    assert _same(backend, "SELECT column_name, column_id, column_ordinal FROM cdc.captured_columns ORDER BY 3") == [
        ("code", 2, 1),
        ("a", 3, 2),
    ]
    assert _same(backend, "SELECT column_name, index_ordinal, column_id FROM cdc.index_columns") == [("code", 1, 2)]
    names = backend.run(
        pg="SELECT column_name FROM information_schema.columns WHERE table_schema = 'cdc' "
        "AND table_name = 'dbo_items_CT' ORDER BY ordinal_position",
        tsql="SELECT name FROM sys.columns WHERE object_id = OBJECT_ID('cdc.dbo_items_CT') ORDER BY column_id",
    )
    assert [n[0] for n in names][5:] == ["code", "a", "__$command_id"]
    _same(backend, "INSERT INTO dbo.items VALUES (1, 10, 5, 6)")
    _same(backend, "UPDATE dbo.items SET b = 7")  # b is not captured
    _same(backend, "UPDATE dbo.items SET a = 8")
    backend.capture()
    rows = backend.run(
        pg='SELECT "__$operation", code, a FROM cdc."dbo_items_CT" ORDER BY "__$start_lsn", "__$seqval", 1',
        tsql="SELECT __$operation, code, a FROM cdc.dbo_items_CT ORDER BY __$start_lsn, __$seqval, 1",
    )
    assert (2, 10, 5) in rows
    assert (4, 10, 8) in rows


def test_role_name_is_recorded(backend: Backend) -> None:
    """§2.5: @role_name is stored in change_tables.role_name (SQL Server also creates and enforces the role;
    the emulator records it only — see docs/emulator.md)."""
    _same(backend, "CREATE TABLE dbo.r (id int PRIMARY KEY)")
    backend.run(
        pg="CALL sys.sp_cdc_enable_table(source_schema => 'dbo', source_name => 'r', role_name => 'cdc_reader')",
        tsql="EXEC sys.sp_cdc_enable_table @source_schema = N'dbo', @source_name = N'r', @role_name = N'cdc_reader'",
    )
    assert _same(backend, "SELECT role_name FROM cdc.change_tables") == [("cdc_reader",)]


def test_change_job_and_help_jobs_report_retention_and_polling_interval(backend: Backend) -> None:
    """§2.7/§1.6: sp_cdc_change_job sets the cleanup job's retention (minutes) and the capture job's polling
    interval (seconds); sp_cdc_help_jobs reports them (defaults 4320 minutes and 5 seconds)."""
    _orders(backend)
    sql_pg = "SELECT job_type, pollinginterval, retention FROM sys.sp_cdc_help_jobs() ORDER BY job_type"
    sql_ts = "EXEC sys.sp_cdc_help_jobs"

    def jobs() -> dict[str, tuple[object, object]]:
        rows = backend.run(pg=sql_pg, tsql=sql_ts)
        if backend.name == "mssql":  # job_id, job_type, job_name, maxtrans, maxscans, continuous, polling, retention
            return {str(r[1]): (r[6], r[7]) for r in rows}
        return {str(r[0]): (r[1], r[2]) for r in rows}

    assert jobs()["cleanup"][1] == 4320
    assert jobs()["capture"][0] == 5
    backend.run(
        pg="CALL sys.sp_cdc_change_job(job_type => 'cleanup', retention => 60)",
        tsql="EXEC sys.sp_cdc_change_job @job_type = N'cleanup', @retention = 60",
    )
    backend.run(
        pg="CALL sys.sp_cdc_change_job(job_type => 'capture', pollinginterval => 2)",
        tsql="EXEC sys.sp_cdc_change_job @job_type = N'capture', @pollinginterval = 2",
    )
    assert jobs()["cleanup"][1] == 60
    assert jobs()["capture"][0] == 2


def test_captured_columns_procedure_and_help_list_the_instance(backend: Backend) -> None:
    """§2.6: sp_cdc_help_change_data_capture lists each instance with its index and captured column lists;
    sp_cdc_get_captured_columns gives column_name, column_id and column_ordinal per captured column."""
    _orders(backend)
    backend.run(
        pg="CALL sys.sp_cdc_enable_table(source_schema => 'dbo', source_name => 'orders', role_name => NULL, "
        "capture_instance => 'orders_v2', captured_column_list => 'id, qty')",
        tsql="EXEC sys.sp_cdc_enable_table @source_schema = N'dbo', @source_name = N'orders', @role_name = NULL, "
        "@capture_instance = N'orders_v2', @captured_column_list = N'id, qty'",
    )
    help_rows = backend.run(
        pg="SELECT capture_instance, index_column_list, captured_column_list "
        "FROM sys.sp_cdc_help_change_data_capture('dbo', 'orders') ORDER BY 1",
        tsql="EXEC sys.sp_cdc_help_change_data_capture @source_schema = N'dbo', @source_name = N'orders'",
    )
    if backend.name == "mssql":
        help_rows = sorted((r[2], r[13], r[14]) for r in help_rows)
    norm = [
        (ci, str(ix).replace("[", "").replace("]", ""), str(cl).replace("[", "").replace("]", ""))
        for ci, ix, cl in help_rows
    ]
    assert norm == [("dbo_orders", "id", "id, name, qty"), ("orders_v2", "id", "id, qty")]
    cols = backend.run(
        pg="SELECT column_name, column_id, column_ordinal FROM sys.sp_cdc_get_captured_columns('orders_v2')",
        tsql="EXEC sys.sp_cdc_get_captured_columns @capture_instance = N'orders_v2'",
    )
    if backend.name == "mssql":
        cols = [(r[3], r[4], r[5]) for r in cols]
    assert sorted(cols, key=lambda c: c[2]) == [("id", 1, 1), ("qty", 3, 2)]


# --- point 6: schema changes -----------------------------------------------------------------------------------


def test_drop_column_leaves_change_table_and_writes_ddl_history(backend: Backend) -> None:
    """§4: dropping a captured column leaves the change-table column in place (NULL from then on) and writes a
    ddl_history row with required_column_update = 0."""
    _orders(backend)
    backend.run(pg="ALTER TABLE dbo.orders DROP COLUMN qty", tsql="ALTER TABLE dbo.orders DROP COLUMN qty")
    backend.run(pg="INSERT INTO dbo.orders VALUES (1, 'a')", tsql="INSERT INTO dbo.orders VALUES (1, N'a')")
    backend.capture()
    hist = _same(backend, "SELECT required_column_update, ddl_command FROM cdc.ddl_history")
    assert len(hist) == 1
    assert not hist[0][0]
    assert "qty" in str(hist[0][1]).lower()
    rows = backend.run(
        pg='SELECT id, name, qty FROM cdc."dbo_orders_CT"', tsql="SELECT id, name, qty FROM cdc.dbo_orders_CT"
    )
    assert rows == [(1, "a", None)]
    assert [c[0] for c in _same(backend, "SELECT column_name FROM cdc.captured_columns ORDER BY column_ordinal")] == [
        "id",
        "name",
        "qty",
    ]


def test_second_capture_instance_picks_up_the_new_shape(backend: Backend) -> None:
    """§4 (the two-instance migration): after ADD COLUMN the old instance keeps its columns; a second instance
    enabled afterwards captures the new column, and both capture the same later changes."""
    _orders(backend)
    backend.run(
        pg="ALTER TABLE dbo.orders ADD COLUMN note varchar(5)", tsql="ALTER TABLE dbo.orders ADD note nvarchar(5)"
    )
    backend.run(
        pg="CALL sys.sp_cdc_enable_table(source_schema => 'dbo', source_name => 'orders', role_name => NULL, "
        "capture_instance => 'dbo_orders_v2')",
        tsql="EXEC sys.sp_cdc_enable_table @source_schema = N'dbo', @source_name = N'orders', @role_name = NULL, "
        "@capture_instance = N'dbo_orders_v2'",
    )
    backend.run(
        pg="INSERT INTO dbo.orders VALUES (1, 'a', 1, 'n')", tsql="INSERT INTO dbo.orders VALUES (1, N'a', 1, N'n')"
    )
    backend.capture()
    per_instance = _same(
        backend,
        "SELECT ct.capture_instance, cc.column_name FROM cdc.captured_columns cc "
        "JOIN cdc.change_tables ct ON ct.object_id = cc.object_id ORDER BY 1, cc.column_ordinal",
    )
    assert per_instance == [
        ("dbo_orders", "id"),
        ("dbo_orders", "name"),
        ("dbo_orders", "qty"),
        ("dbo_orders_v2", "id"),
        ("dbo_orders_v2", "name"),
        ("dbo_orders_v2", "qty"),
        ("dbo_orders_v2", "note"),
    ]
    assert backend.run(
        pg='SELECT id, note FROM cdc."dbo_orders_v2_CT"', tsql="SELECT id, note FROM cdc.dbo_orders_v2_CT"
    ) == [(1, "n")]
    assert backend.run(pg='SELECT id FROM cdc."dbo_orders_CT"', tsql="SELECT id FROM cdc.dbo_orders_CT") == [(1,)]
