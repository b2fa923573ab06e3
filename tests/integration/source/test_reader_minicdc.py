"""The reader's real SQL on a real PostgreSQL through pg8000, over a minimal CDC catalog (see ``minicdc``).

This proves the statements, parameter binding and keyset paging end to end while the full emulator is not
available; ``test_reader_emulator.py`` runs the same behaviours against ``mssql2pg.emulator`` once it exists.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from decimal import Decimal

import pytest
import sqlalchemy as sa

from mssql2pg.errors import SourceError
from mssql2pg.model import Heartbeat, Operation, TableId, TxChunk
from mssql2pg.positions import Lsn
from mssql2pg.source import LsnGapError, Reader, ReaderSettings, WindowStatus, load_capture_instances
from tests.fixtures.pg import PgServer
from tests.integration.source.minicdc import Col, MiniCdc

pytestmark = pytest.mark.integration

ORDER_COLS = (
    Col("id", "int", nullable=False),
    Col("customer", "nvarchar", max_length=200),
    Col("total", "decimal", precision=19, scale=4),
)
LINE_COLS = (Col("id", "int", nullable=False), Col("name", "nvarchar", max_length=-1))
PAY_COLS = (Col("id", "int", nullable=False), Col("paid", "bit"))


@pytest.fixture
def cdc(source_server: PgServer, source_dbname: str) -> Iterator[MiniCdc]:
    conn = source_server.connect(source_dbname)
    try:
        mini = MiniCdc(conn)
        mini.install()
        yield mini
    finally:
        conn.close()


@pytest.fixture
def engine(source_url: str) -> Iterator[sa.Engine]:
    eng = sa.create_engine(source_url.replace("postgresql://", "postgresql+pg8000://", 1))
    yield eng
    eng.dispose()


@pytest.fixture
def three_tables(cdc: MiniCdc) -> tuple[str, str, str]:
    return (
        cdc.enable_table("orders", ORDER_COLS, ["id"]),
        cdc.enable_table("lines", LINE_COLS, ["id"]),
        cdc.enable_table("payments", PAY_COLS, ["id"]),
    )


TABLES = [TableId("dbo", "orders"), TableId("dbo", "lines"), TableId("dbo", "payments")]


def test_catalog_reads_instances_columns_and_keys(engine: sa.Engine, three_tables: tuple[str, str, str]) -> None:
    with engine.connect() as conn:
        instances = {ci.name: ci for ci in load_capture_instances(conn)}
    orders = instances["dbo_orders"]
    assert orders.source == TableId("dbo", "orders")
    assert orders.key_columns == ("id",)
    assert [(c.name, c.sql_type, c.max_length, c.precision, c.scale, c.nullable) for c in orders.columns] == [
        ("id", "int", None, 0, 0, False),
        ("customer", "nvarchar", 100, 0, 0, True),
        ("total", "decimal", None, 19, 4, True),
    ]
    assert instances["dbo_lines"].columns[1].max_length == -1


def test_catalog_says_when_cdc_is_not_enabled(source_server: PgServer, source_dbname: str, engine: sa.Engine) -> None:
    with engine.connect() as conn, pytest.raises(SourceError, match="not enabled") as info:
        load_capture_instances(conn)
    assert "sp_cdc_enable_db" in (info.value.hint or "")


def test_multi_table_transaction_and_update_pair(
    cdc: MiniCdc, engine: sa.Engine, three_tables: tuple[str, str, str]
) -> None:
    orders, lines, payments = three_tables
    first = cdc.commit([(orders, 2, (1, "Zoë", Decimal("10.5000"))), (lines, 2, (1, "x" * 5000))])
    second = cdc.commit(
        [
            (orders, 3, (1, "Zoë", Decimal("10.5000"))),
            (orders, 4, (1, "Zoë", Decimal("12.0000"))),
            (payments, 2, (7, True)),
            (lines, 1, (1, "x" * 5000)),
        ]
    )
    items = list(Reader.for_tables(engine, TABLES).windows(Lsn.NULL))
    chunks = [i for i in items if isinstance(i, TxChunk)]
    assert [(c.commit_lsn, c.first, c.last, len(c.rows)) for c in chunks] == [
        (first, True, True, 2),
        (second, True, True, 4),
    ]
    assert [(r.table.name, r.operation) for r in chunks[1].rows] == [
        ("orders", Operation.UPDATE_BEFORE),
        ("orders", Operation.UPDATE_AFTER),
        ("payments", Operation.INSERT),
        ("lines", Operation.DELETE),
    ]
    before, after = chunks[1].rows[:2]
    assert (before.seqval, before.command_id) == (after.seqval, after.command_id)
    assert after.values == (1, "Zoë", Decimal("12.0000"))
    assert chunks[1].rows[2].values == (7, True)
    assert chunks[0].tran_id == bytes([first.to_int() % 256]) * 4
    assert chunks[0].commit_time is not None
    assert items[-1] == Heartbeat(lsn=second, source_time=chunks[1].commit_time, tables=tuple(TABLES))


def test_keyset_pages_on_real_sql_split_update_pairs_without_loss(
    cdc: MiniCdc, engine: sa.Engine, three_tables: tuple[str, str, str]
) -> None:
    orders = three_tables[0]
    changes = []
    for i in range(7):
        changes += [(orders, 3, (i, "a", None)), (orders, 4, (i, "b", None))]
    commit = cdc.commit(changes)
    cdc.commit([(orders, 2, (99, "c", None))])
    reader = Reader.for_tables(engine, [TABLES[0]], ReaderSettings(chunk_rows=4, page_rows=3))
    rows = [r for i in reader.windows(Lsn.NULL) if isinstance(i, TxChunk) for r in i.rows]
    assert [(r.values[0], r.operation) for r in rows if r.commit_lsn == commit] == [
        (i, op) for i in range(7) for op in (Operation.UPDATE_BEFORE, Operation.UPDATE_AFTER)
    ]
    assert rows[-1].values[0] == 99


def test_large_transaction_streams_in_bounded_chunks(
    cdc: MiniCdc, engine: sa.Engine, three_tables: tuple[str, str, str]
) -> None:
    lines = three_tables[1]
    before = cdc.commit([(lines, 2, (-1, "before"))])
    big = cdc.bulk_insert(lines, 20_000)
    after = cdc.commit([(lines, 2, (-2, "after"))])
    reader = Reader.for_tables(engine, [TABLES[1]], ReaderSettings(chunk_rows=500))
    sizes: list[int] = []
    flags: list[tuple[bool, bool]] = []
    expected_id = 0
    lsns = []
    for item in reader.windows(Lsn.NULL):
        if not isinstance(item, TxChunk):
            continue
        lsns.append(item.commit_lsn)
        if item.commit_lsn != big:
            continue
        sizes.append(len(item.rows))
        flags.append((item.first, item.last))
        for row in item.rows:  # checked as they stream; nothing is kept
            assert row.values[0] == expected_id
            expected_id += 1
    assert expected_id == 20_000
    assert len(sizes) == 40
    assert max(sizes) == 500
    assert flags[0] == (True, False)
    assert flags[-1] == (False, True)
    assert all(f == (False, False) for f in flags[1:-1])
    assert lsns[0] == before
    assert lsns[-1] == after


def test_null_max_lsn_and_idle_progress(cdc: MiniCdc, engine: sa.Engine, three_tables: tuple[str, str, str]) -> None:
    reader = Reader.for_tables(engine, TABLES)
    window = reader.window(Lsn.NULL)
    assert window.status is WindowStatus.NO_MAX_LSN
    assert list(window.items) == []
    marker = cdc.idle_marker()  # capture ran, nothing changed: the checkpoint may still advance
    assert list(reader.windows(Lsn.NULL)) == [
        Heartbeat(lsn=marker, source_time=_commit_time(engine, marker), tables=tuple(TABLES))
    ]
    assert list(reader.windows(marker)) == []
    assert reader.last_status is WindowStatus.CAUGHT_UP


def _commit_time(engine: sa.Engine, lsn: Lsn) -> object:
    with engine.connect() as conn:
        return conn.execute(
            sa.text("SELECT tran_end_time FROM cdc.lsn_time_mapping WHERE start_lsn = :l"), {"l": lsn.raw}
        ).scalar()


def test_lsn_gap_after_cleanup_names_the_table(
    cdc: MiniCdc, engine: sa.Engine, three_tables: tuple[str, str, str]
) -> None:
    orders = three_tables[0]
    checkpoint = cdc.commit([(orders, 2, (1, "a", None))])
    cdc.commit([(orders, 2, (2, "b", None))])
    last = cdc.commit([(orders, 2, (3, "c", None))])
    cdc.cleanup(orders, last)  # rows of the middle transaction are gone
    with pytest.raises(LsnGapError) as info:
        list(Reader.for_tables(engine, TABLES).windows(checkpoint))
    assert info.value.table == TableId("dbo", "orders")
    assert info.value.min_lsn == last
    assert "mssql2pg resync dbo.orders" in str(info.value)


def test_poll_stops_on_event(cdc: MiniCdc, engine: sa.Engine, three_tables: tuple[str, str, str]) -> None:
    orders = three_tables[0]
    lsn = cdc.commit([(orders, 2, (1, "a", None))])
    stop = threading.Event()
    reader = Reader.for_tables(engine, TABLES, ReaderSettings(poll_interval=0.01))
    seen = []
    for item in reader.read(Lsn.NULL, stop, until_caught_up=False):
        seen.append(item)
        if isinstance(item, Heartbeat):
            stop.set()
    assert [i.commit_lsn for i in seen if isinstance(i, TxChunk)] == [lsn]
    reader.close()
