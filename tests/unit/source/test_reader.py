"""The reader's merge, chunking, heartbeat, keyset resume, gap check and polling, against an in-memory source."""

from __future__ import annotations

import dataclasses
import pickle
import threading
from collections.abc import Iterable

import pg8000.exceptions
import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from mssql2pg.errors import ReplanError, SourceError
from mssql2pg.model import ChangeRow, Heartbeat, Operation, ReaderItem, TableId, TxChunk
from mssql2pg.positions import Lsn
from mssql2pg.source import LsnGapError, Reader, ReaderSettings, WindowStatus
from mssql2pg.source.errors import CaptureInstancesChangedError
from mssql2pg.source.reader import Position, assemble
from tests.unit.source import fakes
from tests.unit.source.fakes import FakeSource, instance, lsn

ORDERS = instance("dbo_orders", "dbo.orders")
LINES = instance("dbo_lines", "dbo.lines")
PAYMENTS = instance("dbo_payments", "dbo.payments")


def _reader(src: FakeSource, chunk_rows: int = 100, page_rows: int | None = None) -> Reader:
    return Reader(src.connect, src.instances, ReaderSettings(chunk_rows=chunk_rows, page_rows=page_rows))


def _chunks(items: Iterable[ReaderItem]) -> list[TxChunk]:
    return [i for i in items if isinstance(i, TxChunk)]


def _rows(items: Iterable[ReaderItem]) -> list[ChangeRow]:
    return [r for c in _chunks(items) for r in c.rows]


def _key(r: ChangeRow) -> tuple[str, int, int, int]:
    return (r.capture_instance, r.commit_lsn.to_int(), r.seqval.to_int(), int(r.operation))


def test_rows_of_all_tables_merge_by_commit_lsn_then_command_id_with_interleaved_seqvals() -> None:
    src = FakeSource(instances=[ORDERS, LINES])
    # Two transactions interleaved in the log: tx A (commit 100) has seqvals 10, 30; tx B (commit 90) 20, 25.
    src.add(ORDERS, 100, 10, 2, 1, 1, 1)
    src.add(LINES, 100, 30, 2, 2, 11, 1)
    src.add(LINES, 90, 20, 2, 1, 12, 1)
    src.add(ORDERS, 90, 25, 2, 2, 2, 1)
    items = list(_reader(src).windows(Lsn.NULL))
    assert [(r.commit_lsn.to_int(), r.command_id, r.table.name) for r in _rows(items)] == [
        (90, 1, "lines"),
        (90, 2, "orders"),
        (100, 1, "orders"),
        (100, 2, "lines"),
    ]


def test_command_id_orders_rows_inside_a_transaction_even_against_seqval() -> None:
    # KB 3030352: seqval order can be wrong for updated rows; command_id is the documented order.
    src = FakeSource(instances=[ORDERS])
    src.add(ORDERS, 50, 40, 2, 1, 1, 1)
    src.add(ORDERS, 50, 30, 2, 2, 2, 1)
    assert [r.values[0] for r in _rows(_reader(src).windows(Lsn.NULL))] == [1, 2]


def test_multi_table_transaction_is_one_chunk_and_update_pair_stays_in_order() -> None:
    src = FakeSource(instances=[ORDERS, LINES, PAYMENTS])
    src.add(ORDERS, 70, 60, 3, 1, 1, 10)
    src.add(ORDERS, 70, 60, 4, 1, 1, 11)
    src.add(LINES, 70, 61, 2, 2, 5, 1)
    src.add(PAYMENTS, 70, 62, 1, 3, 9, 1)
    chunks = _chunks(_reader(src).windows(Lsn.NULL))
    assert len(chunks) == 1
    chunk = chunks[0]
    assert (chunk.first, chunk.last, chunk.commit_lsn) == (True, True, lsn(70))
    assert [(r.table.name, r.operation) for r in chunk.rows] == [
        ("orders", Operation.UPDATE_BEFORE),
        ("orders", Operation.UPDATE_AFTER),
        ("lines", Operation.INSERT),
        ("payments", Operation.DELETE),
    ]
    assert chunk.commit_time == src.times[lsn(70).raw or b""][0]
    assert chunk.tran_id == bytes([70])


@pytest.mark.parametrize(
    ("size", "chunk_rows", "expected"),
    [
        (1, 3, [(1, True, True)]),
        (3, 3, [(3, True, True)]),
        (4, 3, [(3, True, False), (1, False, True)]),
        (7, 3, [(3, True, False), (3, False, False), (1, False, True)]),
        (6, 3, [(3, True, False), (3, False, True)]),
    ],
)
def test_chunk_flags(size: int, chunk_rows: int, expected: list[tuple[int, bool, bool]]) -> None:
    src = FakeSource(instances=[ORDERS])
    for i in range(size):
        src.add(ORDERS, 1000, 100 + i, 2, i + 1, i, 0)
    src.add(ORDERS, 1001, 999, 2, 1, -1, 0)  # a following one-row transaction
    chunks = _chunks(_reader(src, chunk_rows=chunk_rows).windows(Lsn.NULL))
    assert [(len(c.rows), c.first, c.last) for c in chunks[:-1]] == expected
    assert all(c.commit_lsn == lsn(1000) for c in chunks[:-1])
    assert (chunks[-1].commit_lsn, chunks[-1].first, chunks[-1].last) == (lsn(1001), True, True)


def test_window_ends_with_a_heartbeat_at_max_lsn_even_without_rows() -> None:
    src = FakeSource(instances=[ORDERS])
    src.add(ORDERS, 10, 5, 2, 1, 1, 1)
    src.max = lsn(20)  # later transactions touched other tables only
    src.times[lsn(20).raw or b""] = (src.times[lsn(10).raw or b""][0], b"\x00")
    items = list(_reader(src).windows(lsn(10)))
    assert items == [Heartbeat(lsn=lsn(20), source_time=src.times[lsn(20).raw or b""][0], tables=(ORDERS.source,))]
    items = list(_reader(src).windows(Lsn.NULL))
    assert isinstance(items[0], TxChunk)
    assert isinstance(items[-1], Heartbeat)
    assert items[-1].lsn == lsn(20)


def test_window_is_exclusive_below_and_inclusive_at_max_lsn() -> None:
    src = FakeSource(instances=[ORDERS])
    for commit in (10, 11, 12):
        src.add(ORDERS, commit, commit - 5, 2, 1, commit, 0)
    src.max = lsn(11)  # capture has not finished 12 yet: it must not be read
    assert [r.commit_lsn.to_int() for r in _rows(_reader(src).windows(lsn(10)))] == [11]


def test_keyset_pages_resume_exactly_inside_a_transaction_and_an_update_pair() -> None:
    src = FakeSource(instances=[ORDERS])
    # One transaction: insert, update pair (shares lsn, command id, seqval), insert; page size 2 splits the pair.
    src.add(ORDERS, 500, 100, 2, 1, 1, 0)
    src.add(ORDERS, 500, 101, 3, 2, 1, 0)
    src.add(ORDERS, 500, 101, 4, 2, 1, 5)
    src.add(ORDERS, 500, 102, 2, 3, 2, 0)
    src.add(ORDERS, 501, 103, 1, 1, 2, 0)
    items = list(_reader(src, chunk_rows=10, page_rows=2).windows(Lsn.NULL))
    rows = _rows(items)
    assert [(r.commit_lsn.to_int(), r.operation) for r in rows] == [
        (500, Operation.INSERT),
        (500, Operation.UPDATE_BEFORE),
        (500, Operation.UPDATE_AFTER),
        (500, Operation.INSERT),
        (501, Operation.DELETE),
    ]
    resumes = [after for _, after, _ in src.page_requests]
    assert resumes[0] == Lsn.NULL
    assert resumes[1] == Position(lsn(500).raw or b"", 2, lsn(101).raw or b"", 3)  # between the update halves
    assert resumes[2] == Position(lsn(500).raw or b"", 3, lsn(102).raw or b"", 2)
    assert len(resumes) == 3  # the last page came back short: no extra query


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.lists(st.integers(1, 6), min_size=1, max_size=3), min_size=1, max_size=6),
    page_rows=st.integers(1, 5),
    chunk_rows=st.integers(1, 5),
)
def test_every_row_exactly_once_in_order_for_any_page_and_chunk_size(
    sizes: list[list[int]], page_rows: int, chunk_rows: int
) -> None:
    """Property: transactions of random sizes spread over up to three tables come out complete and in order."""
    tables = [ORDERS, LINES, PAYMENTS]
    src = FakeSource(instances=tables)
    seq = 10_000
    expected = []
    for tx, per_table in enumerate(sizes):
        commit = 20_000 + tx
        command = 0
        for t, count in enumerate(per_table):
            for _ in range(count):
                command += 1
                seq -= 1  # seqvals fall across transactions: not monotonic, as with interleaved writers
                src.add(tables[t], commit, seq, 2, command, command, tx)
                expected.append((tables[t].name, commit, command))
    items = list(_reader(src, chunk_rows=chunk_rows, page_rows=page_rows).windows(Lsn.NULL))
    got = [(r.capture_instance, r.commit_lsn.to_int(), r.command_id) for r in _rows(items)]
    assert got == expected
    chunks = _chunks(items)
    assert all(len(c.rows) <= chunk_rows for c in chunks)
    assert all(len({r.commit_lsn for r in c.rows}) == 1 for c in chunks)
    assert sum(c.last for c in chunks) == len(sizes) == sum(c.first for c in chunks)
    # commit times are read in pages of page_rows too; every chunk still gets its own transaction's
    assert all((c.commit_time, c.tran_id) == src.times[c.commit_lsn.raw or b""] for c in chunks)
    assert isinstance(items[-1], Heartbeat)


def test_large_transaction_is_streamed_not_materialised() -> None:
    src = FakeSource(instances=[ORDERS])
    for i in range(1000):
        src.add(ORDERS, 7000, 1 + i, 2, i + 1, i, 0)
    window = _reader(src, chunk_rows=10, page_rows=10).window(Lsn.NULL)
    first = next(window.items)
    assert isinstance(first, TxChunk)
    assert (len(first.rows), first.first, first.last) == (10, True, False)
    assert len(src.page_requests) <= 2  # only what the first chunk (plus lookahead) needed was fetched
    rest = list(window.items)
    assert sum(len(c.rows) for c in _chunks(rest)) == 990


def test_null_max_lsn_reads_nothing_and_says_so() -> None:
    src = FakeSource(instances=[ORDERS])
    reader = _reader(src)
    window = reader.window(lsn(5))
    assert window.status is WindowStatus.NO_MAX_LSN
    assert list(window.items) == []
    assert src.page_requests == []


def test_caught_up_window_reads_nothing() -> None:
    src = FakeSource(instances=[ORDERS])
    src.add(ORDERS, 10, 5, 2, 1, 1, 1)
    reader = _reader(src)
    assert list(reader.windows(lsn(10))) == []
    assert reader.last_status is WindowStatus.CAUGHT_UP


def test_gap_below_min_lsn_raises_a_table_level_error() -> None:
    src = FakeSource(instances=[ORDERS, LINES])
    src.add(ORDERS, 30, 25, 2, 1, 1, 1)
    src.floors["dbo_orders"] = lsn(20)  # cleanup removed everything below 20; the checkpoint is 10
    with pytest.raises(LsnGapError) as info:
        list(_reader(src).windows(lsn(10)))
    err = info.value
    assert (err.table, err.capture_instance, err.checkpoint, err.min_lsn) == (
        ORDERS.source,
        "dbo_orders",
        lsn(10),
        lsn(20),
    )
    assert "mssql2pg resync dbo.orders" in str(err)


def test_no_gap_when_the_floor_is_right_after_the_checkpoint() -> None:
    src = FakeSource(instances=[ORDERS])
    src.add(ORDERS, 30, 25, 2, 1, 1, 1)
    src.floors["dbo_orders"] = lsn(11)
    assert len(_rows(_reader(src).windows(lsn(10)))) == 1


def test_gap_detected_when_cleanup_runs_between_pages() -> None:
    src = FakeSource(instances=[ORDERS])
    for i in range(4):
        src.add(ORDERS, 40 + i, 30 + i, 2, 1, i, 0)
    items = _reader(src, chunk_rows=1, page_rows=2).windows(lsn(10))
    assert next(items).commit_lsn == lsn(40)  # type: ignore[union-attr]
    src.floors["dbo_orders"] = lsn(43)  # cleanup overtakes the reader after its first page
    with pytest.raises(LsnGapError):
        list(items)


def test_vanished_capture_instance_is_a_source_error() -> None:
    src = FakeSource(instances=[ORDERS])
    src.add(ORDERS, 30, 25, 2, 1, 1, 1)
    src.floors["dbo_orders"] = Lsn.ZERO
    with pytest.raises(SourceError, match="gone or not readable"):
        list(_reader(src).windows(lsn(10)))


def test_null_command_id_is_refused_rather_than_paged_wrongly() -> None:
    src = FakeSource(instances=[ORDERS])
    src.rows["dbo_orders"] = [(lsn(5).raw, lsn(4).raw, 2, None, None, 1, 1)]
    src.max = lsn(5)
    with pytest.raises(SourceError, match="__\\$command_id"):
        list(_reader(src).windows(Lsn.NULL))


def test_two_capture_instances_split_the_window_without_doubling() -> None:
    old = instance("dbo_orders", "dbo.orders", start=1)
    new = instance("dbo_orders_v2", "dbo.orders", start=50, columns=("id", "v", "extra"))
    src = FakeSource(instances=[new, old])
    src.add(old, 40, 39, 2, 1, 1, 1)
    for commit in (60, 70):  # both instances receive changes after the new one starts
        src.add(old, commit, commit - 1, 2, 1, commit, 1)
        src.add(new, commit, commit - 1, 2, 1, commit, 1, 3)
    rows = _rows(_reader(src).windows(Lsn.NULL))
    assert [(r.capture_instance, r.commit_lsn.to_int()) for r in rows] == [
        ("dbo_orders", 40),
        ("dbo_orders_v2", 60),
        ("dbo_orders_v2", 70),
    ]
    assert rows[-1].values == (70, 1, 3)


def test_for_tables_rediscovers_instances_each_window() -> None:
    src = FakeSource(instances=[ORDERS])
    src.add(ORDERS, 10, 5, 2, 1, 1, 1)
    reader = Reader(src.connect, (), ReaderSettings(), tables=[TableId("dbo", "orders")])
    assert len(_rows(reader.windows(Lsn.NULL))) == 1
    src.instances = []
    with pytest.raises(SourceError, match="sp_cdc_enable_table"):
        list(reader.windows(Lsn.NULL))


def test_a_planned_reader_stops_before_a_window_whose_capture_instances_changed() -> None:
    """Issue 12 point 1: a reader built with the plan's instances raises CaptureInstancesChangedError (a
    re-plan, with the pickled fields intact for the reader process) at the first window that finds others: a
    new instance, a changed column type, or none at all; and reads nothing of that window."""
    orders = TableId("dbo", "orders")
    src = FakeSource(instances=[ORDERS])
    src.add(ORDERS, 10, 5, 2, 1, 1, 1)
    reader = Reader(src.connect, (), ReaderSettings(), tables=[orders], planned={orders: (ORDERS,)})
    assert len(_rows(reader.windows(Lsn.NULL))) == 1
    same_shape_later = dataclasses.replace(ORDERS, start_lsn=lsn(2))  # the start LSN alone is not a change
    src.instances = [same_shape_later]
    assert len(_rows(reader.windows(Lsn.NULL))) == 1

    v2 = instance("dbo_orders_v2", "dbo.orders", start=50)
    wider = dataclasses.replace(
        ORDERS, columns=(ORDERS.columns[0], dataclasses.replace(ORDERS.columns[1], sql_type="bigint"))
    )
    for now, names in (([ORDERS, v2], ("dbo_orders", "dbo_orders_v2")), ([wider], ("dbo_orders",)), ([], ())):
        src.instances = now
        window = reader.windows(Lsn.NULL)
        with pytest.raises(CaptureInstancesChangedError) as raised:
            next(window)
        error = pickle.loads(pickle.dumps(raised.value))  # noqa: S301 - our own object
        assert isinstance(error, ReplanError)
        assert (error.table, error.was, error.now) == (orders, ("dbo_orders",), names)


def test_an_instance_disabled_while_its_change_table_is_read_is_a_replan_not_a_failure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The race that ended a running pipeline: the catalog still listed the instance, then its change table was
    dropped before the page was read (``relation "cdc.dbo_orders_CT" does not exist``, SQL Server 208). The
    reader looks at the catalog again: the instance is gone, so it is a re-plan (the table pauses as gone)."""
    orders = TableId("dbo", "orders")
    src = FakeSource(instances=[ORDERS])
    src.add(ORDERS, 10, 5, 2, 1, 1, 1)
    reader = Reader(src.connect, (), ReaderSettings(), tables=[orders], planned={orders: (ORDERS,)})
    dropped = sa.exc.ProgrammingError(
        "SELECT ...", {}, pg8000.exceptions.DatabaseError({"C": "42P01", "M": 'relation "cdc.dbo_orders_CT"'})
    )

    def disabled_meanwhile(*args: object) -> object:
        src.instances = []
        raise dropped

    monkeypatch.setattr(fakes._Backend, "change_page", disabled_meanwhile)
    with pytest.raises(CaptureInstancesChangedError) as raised:
        list(reader.windows(Lsn.NULL))
    assert raised.value.now == ()
    assert raised.value.__cause__ is dropped


def test_a_read_failure_with_the_instances_unchanged_stays_what_it_was(monkeypatch: pytest.MonkeyPatch) -> None:
    orders = TableId("dbo", "orders")
    src = FakeSource(instances=[ORDERS])
    src.add(ORDERS, 10, 5, 2, 1, 1, 1)
    reader = Reader(src.connect, (), ReaderSettings(), tables=[orders], planned={orders: (ORDERS,)})
    lost = sa.exc.OperationalError("SELECT ...", {}, ConnectionResetError("reset by peer"))

    def fails(*args: object) -> object:
        raise lost

    monkeypatch.setattr(fakes._Backend, "change_page", fails)
    with pytest.raises(sa.exc.OperationalError) as raised:
        list(reader.windows(Lsn.NULL))
    assert raised.value is lost


def test_a_planned_reader_notices_a_changed_instance_on_an_idle_source() -> None:
    """Caught up (nothing new to read), the planned reader still compares the instances at every poll."""
    orders = TableId("dbo", "orders")
    src = FakeSource(instances=[ORDERS])
    src.add(ORDERS, 10, 5, 2, 1, 1, 1)
    reader = Reader(src.connect, (), ReaderSettings(), tables=[orders], planned={orders: (ORDERS,)})
    assert reader.window(lsn(10)).status is WindowStatus.CAUGHT_UP
    src.instances = [ORDERS, instance("dbo_orders_v2", "dbo.orders", start=50)]
    with pytest.raises(CaptureInstancesChangedError):
        reader.window(lsn(10))


def test_poll_continues_across_windows_and_stops_on_event() -> None:
    src = FakeSource(instances=[ORDERS])
    src.add(ORDERS, 10, 5, 2, 1, 1, 1)
    stop = threading.Event()
    reader = Reader(src.connect, src.instances, ReaderSettings(poll_interval=0))
    seen: list[ReaderItem] = []
    for item in reader.poll(Lsn.NULL, stop):
        seen.append(item)
        if isinstance(item, Heartbeat) and item.lsn == lsn(10):
            src.add(ORDERS, 11, 6, 2, 1, 2, 1)  # new work arrives while we poll
        if isinstance(item, Heartbeat) and item.lsn == lsn(11):
            stop.set()
    assert [r.commit_lsn.to_int() for r in _rows(seen)] == [10, 11]


def test_poll_until_caught_up_returns_after_one_pass() -> None:
    src = FakeSource(instances=[ORDERS])
    src.add(ORDERS, 10, 5, 2, 1, 1, 1)
    items = list(_reader(src).read(Lsn.NULL, threading.Event(), until_caught_up=True))
    assert isinstance(items[-1], Heartbeat)
    assert len(_rows(items)) == 1


def test_poll_without_max_lsn_waits_instead_of_spinning() -> None:
    src = FakeSource(instances=[ORDERS])
    stop = threading.Event()
    waits: list[float] = []

    class CountingStop(threading.Event):
        def wait(self, timeout: float | None = None) -> bool:
            waits.append(timeout or 0)
            if len(waits) >= 3:
                stop.set()
            return False

        def is_set(self) -> bool:
            return stop.is_set()

    reader = Reader(src.connect, src.instances, ReaderSettings(poll_interval=2.5))
    assert list(reader.poll(Lsn.NULL, CountingStop())) == []
    assert waits == [2.5, 2.5, 2.5]
    assert src.connections == 3  # one max-LSN query per poll, nothing else
    assert reader.last_status is WindowStatus.NO_MAX_LSN


def test_assemble_without_rows_yields_nothing() -> None:
    assert list(assemble([], 5, lambda _lsn: (None, None))) == []


@pytest.mark.parametrize("bad", [{"chunk_rows": 0}, {"page_rows": 0}, {"poll_interval": -1}])
def test_settings_validation(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must"):
        ReaderSettings(**bad)  # type: ignore[arg-type]


def test_transaction_without_a_time_mapping_row_has_no_commit_time() -> None:
    src = FakeSource(instances=[ORDERS])
    src.add(ORDERS, 10, 5, 2, 1, 1, 1)
    src.add(ORDERS, 11, 6, 2, 1, 2, 1)
    src.add(ORDERS, 12, 7, 2, 1, 3, 1)
    del src.times[lsn(11).raw or b""]
    chunks = _chunks(_reader(src, page_rows=1).windows(Lsn.NULL))
    assert [c.commit_time is None for c in chunks] == [False, True, False]
    assert chunks[2].tran_id == bytes([12])


def test_lsn_gap_error_survives_pickling_with_its_table() -> None:
    err = LsnGapError(ORDERS.source, "dbo_orders", lsn(10), lsn(20))
    copy = pickle.loads(pickle.dumps(err))  # noqa: S301 - our own object
    assert (copy.table, copy.checkpoint, copy.min_lsn, copy.hint) == (ORDERS.source, lsn(10), lsn(20), err.hint)
