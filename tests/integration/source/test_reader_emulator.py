"""The reader against the SQL Server CDC emulator (``mssql2pg.emulator``): real capture, real change tables."""

from __future__ import annotations

import datetime as dt
import tracemalloc
from collections.abc import Iterator
from decimal import Decimal

import pg8000.native
import pytest
import sqlalchemy as sa

from mssql2pg.emulator import connect
from mssql2pg.emulator.install import scan, set_capture_mode
from mssql2pg.model import Heartbeat, Operation, TableId, TxChunk
from mssql2pg.positions import Lsn
from mssql2pg.source import LsnGapError, Reader, ReaderSettings, WindowStatus
from tests.fixtures.emulator import enable_table

pytestmark = pytest.mark.integration

ORDERS, LINES, PAYMENTS = TableId("dbo", "orders"), TableId("dbo", "order lines"), TableId("sales", "Payments")
TABLES = [ORDERS, LINES, PAYMENTS]


@pytest.fixture
def engine(emulated_source_url: str) -> Iterator[sa.Engine]:
    eng = sa.create_engine(emulated_source_url.replace("postgresql://", "postgresql+pg8000://", 1))
    yield eng
    eng.dispose()


@pytest.fixture
def shop(emulated_source: pg8000.native.Connection) -> pg8000.native.Connection:
    """Three captured tables, one with a blank in its name and one in another schema with mixed case."""
    conn = emulated_source
    conn.run("CREATE SCHEMA IF NOT EXISTS dbo")
    conn.run("CREATE SCHEMA IF NOT EXISTS sales")
    conn.run(
        "CREATE TABLE dbo.orders (id int PRIMARY KEY, customer varchar(50) NOT NULL, total sys.money, "
        "placed sys.datetimeoffset, flags sys.tinyint)"
    )
    conn.run('CREATE TABLE dbo."order lines" (order_id int, line int, sku varchar(20), PRIMARY KEY (order_id, line))')
    conn.run('CREATE TABLE sales."Payments" (id int PRIMARY KEY, paid boolean, amount numeric(12,2))')
    enable_table(conn, "dbo", "orders")
    enable_table(conn, "dbo", "order lines")
    enable_table(conn, "sales", "Payments")
    return conn


def _max_lsn(conn: pg8000.native.Connection) -> Lsn:
    return Lsn.from_bytes(conn.run("SELECT sys.fn_cdc_get_max_lsn()")[0][0])


def _chunks(reader: Reader, after: Lsn) -> list[TxChunk]:
    return [i for i in reader.windows(after) if isinstance(i, TxChunk)]


def test_multi_table_transaction_comes_out_whole_with_update_pair_and_values(
    shop: pg8000.native.Connection, engine: sa.Engine
) -> None:
    start = _max_lsn(shop)
    shop.run("BEGIN")
    shop.run("INSERT INTO dbo.orders VALUES (1, 'Zoë', 10.5, '2024-03-31 02:30:00.1234567 +05:30', 255)")
    shop.run("""INSERT INTO dbo."order lines" VALUES (1, 1, 'A'), (1, 2, 'B')""")
    shop.run('INSERT INTO sales."Payments" VALUES (1, true, 10.50)')
    shop.run("COMMIT")
    shop.run("UPDATE dbo.orders SET total = 12 WHERE id = 1")
    chunks = _chunks(Reader.for_tables(engine, TABLES), start)
    assert [(len(c.rows), c.first, c.last) for c in chunks] == [(4, True, True), (2, True, True)]
    first, update = chunks
    assert [(r.table, r.operation) for r in first.rows] == [
        (ORDERS, Operation.INSERT),
        (LINES, Operation.INSERT),
        (LINES, Operation.INSERT),
        (PAYMENTS, Operation.INSERT),
    ]
    assert first.rows[0].values == (
        1,
        "Zoë",
        Decimal("10.5000"),
        dt.datetime(2024, 3, 31, 2, 30, 0, 123456, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))),
        255,
    )
    assert first.rows[3].values == (1, True, Decimal("10.50"))
    assert first.commit_time is not None
    assert first.tran_id is not None
    assert [r.operation for r in update.rows] == [Operation.UPDATE_BEFORE, Operation.UPDATE_AFTER]
    assert [r.values[2] for r in update.rows] == [Decimal("10.5000"), Decimal("12.0000")]
    assert update.rows[0].seqval == update.rows[1].seqval
    assert first.commit_lsn < update.commit_lsn


def test_interleaved_transactions_come_out_in_commit_order(
    shop: pg8000.native.Connection, engine: sa.Engine, emulated_source_url: str
) -> None:
    start = _max_lsn(shop)
    other = connect(emulated_source_url)
    try:
        shop.run("BEGIN")
        shop.run("INSERT INTO dbo.orders VALUES (1, 'first writer', 1, NULL, 0)")
        other.run("BEGIN")
        other.run("INSERT INTO dbo.orders VALUES (2, 'second writer', 2, NULL, 0)")
        other.run('INSERT INTO sales."Payments" VALUES (2, false, 2)')
        other.run("COMMIT")  # commits first although it started writing later
        shop.run('INSERT INTO sales."Payments" VALUES (1, false, 1)')
        shop.run("COMMIT")
    finally:
        other.close()
    chunks = _chunks(Reader.for_tables(engine, TABLES, ReaderSettings(chunk_rows=10, page_rows=1)), start)
    assert [[r.values[0] for r in c.rows] for c in chunks] == [[2, 2], [1, 1]]
    assert [[r.table for r in c.rows] for c in chunks] == [[ORDERS, PAYMENTS], [ORDERS, PAYMENTS]]


@pytest.mark.slow
def test_hundred_thousand_row_transaction_streams_in_bounded_chunks(
    shop: pg8000.native.Connection, engine: sa.Engine
) -> None:
    start = _max_lsn(shop)
    shop.run("""INSERT INTO dbo."order lines" SELECT 7, g, 'sku' || g FROM generate_series(1, 100000) AS g""")
    shop.run("""INSERT INTO dbo."order lines" VALUES (8, 1, 'after')""")
    reader = Reader.for_tables(engine, [LINES], ReaderSettings(chunk_rows=2_500))
    sizes, flags, next_line = [], [], 1
    tracemalloc.start()
    try:
        for item in reader.windows(start):
            if isinstance(item, TxChunk) and item.rows[0].values[0] == 7:
                sizes.append(len(item.rows))
                flags.append((item.first, item.last))
                for row in item.rows:
                    assert row.values[1] == next_line  # complete and in order; nothing is kept
                    next_line += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert next_line == 100_001
    assert len(sizes) == 40
    assert max(sizes) == 2_500
    assert flags[0] == (True, False)
    assert flags[-1] == (False, True)
    # One page of the change table plus one chunk, not 100,000 rows: a generous bound that a materialised
    # transaction (well over 50 MB of ChangeRow objects) could not meet.
    assert peak < 40 * 1024 * 1024


def test_null_max_lsn_until_capture_runs(emulated_source_url: str, engine: sa.Engine) -> None:
    conn = connect(emulated_source_url)
    try:
        conn.run("CREATE SCHEMA IF NOT EXISTS dbo")
        conn.run("CREATE TABLE dbo.orders (id int PRIMARY KEY, customer varchar(50), total sys.money, x int, y int)")
        set_capture_mode(emulated_source_url, "agent")  # capture only when the "Agent" scans
        enable_table(conn, "dbo", "orders")
        conn.run("INSERT INTO dbo.orders VALUES (1, 'a', 1, 0, 0)")
    finally:
        conn.close()
    reader = Reader.for_tables(engine, [ORDERS])
    window = reader.window(Lsn.NULL)
    assert window.status is WindowStatus.NO_MAX_LSN
    assert list(window.items) == []
    assert scan(emulated_source_url) >= 1
    items = list(reader.windows(Lsn.NULL))
    assert reader.last_status is WindowStatus.READ
    assert [r.values[0] for i in items if isinstance(i, TxChunk) for r in i.rows] == [1]
    assert isinstance(items[-1], Heartbeat)


def test_lsn_gap_after_cleanup_is_reported_for_the_table(shop: pg8000.native.Connection, engine: sa.Engine) -> None:
    shop.run("INSERT INTO dbo.orders VALUES (1, 'a', 1, NULL, 0)")
    checkpoint = _max_lsn(shop)
    shop.run("INSERT INTO dbo.orders VALUES (2, 'b', 1, NULL, 0)")
    shop.run("INSERT INTO dbo.orders VALUES (3, 'c', 1, NULL, 0)")
    low = _max_lsn(shop)
    shop.run("CALL sys.sp_cdc_cleanup_change_table(capture_instance => 'dbo_orders', low_water_mark => :l)", l=low.raw)
    reader = Reader.for_tables(engine, TABLES)
    with pytest.raises(LsnGapError) as info:
        list(reader.windows(checkpoint))
    assert info.value.table == ORDERS
    assert info.value.min_lsn == low
    assert "mssql2pg resync dbo.orders" in str(info.value)
    # a checkpoint at the new floor reads on without complaint
    assert [r.values[0] for c in _chunks(reader, low.decrement()) for r in c.rows] == [3]


def test_idle_source_still_advances_with_a_heartbeat(shop: pg8000.native.Connection, engine: sa.Engine) -> None:
    shop.run("CREATE TABLE dbo.uncaptured (id int)")
    before = _max_lsn(shop)
    shop.run('INSERT INTO sales."Payments" VALUES (1, true, 1)')
    after = _max_lsn(shop)
    items = list(Reader.for_tables(engine, [ORDERS]).windows(before))
    assert items == [Heartbeat(lsn=after, source_time=items[0].source_time, tables=(ORDERS,))]  # type: ignore[union-attr]


def test_schema_change_with_a_second_capture_instance_reads_each_change_once(
    shop: pg8000.native.Connection, engine: sa.Engine
) -> None:
    start = _max_lsn(shop)
    shop.run("INSERT INTO dbo.orders VALUES (1, 'before', 1, NULL, 0)")
    shop.run("ALTER TABLE dbo.orders ADD COLUMN note varchar(10)")
    enable_table(shop, "dbo", "orders", capture_instance="dbo_orders_v2")
    shop.run("INSERT INTO dbo.orders VALUES (2, 'after', 2, NULL, 0, 'new')")
    shop.run("UPDATE dbo.orders SET note = 'x' WHERE id = 1")
    rows = [r for c in _chunks(Reader.for_tables(engine, [ORDERS]), start) for r in c.rows]
    assert [(r.capture_instance, r.values[0], r.operation) for r in rows] == [
        ("dbo_orders", 1, Operation.INSERT),
        ("dbo_orders_v2", 2, Operation.INSERT),
        ("dbo_orders_v2", 1, Operation.UPDATE_BEFORE),
        ("dbo_orders_v2", 1, Operation.UPDATE_AFTER),
    ]
    assert rows[1].values[-1] == "new"
    assert rows[-1].values[-1] == "x"
