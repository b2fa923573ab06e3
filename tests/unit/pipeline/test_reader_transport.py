"""Reader items cross the process boundary (``mssql2pg.pipeline.reader_process``) unchanged.

The transport packs items into plain tuples (cheap to pickle, cheap to rebuild); these tests hold it to
"what arrives equals what was sent", for every canonical value type of :mod:`mssql2pg.model`.
"""

from __future__ import annotations

import pickle
import uuid
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal

import pytest

from mssql2pg.classify import ClassifiedTerminalError, ClassifiedTransientError
from mssql2pg.errors import IncompatibleTargetError, Mssql2pgError, TransientError
from mssql2pg.model import ChangeRow, Heartbeat, Operation, ReaderItem, TableId, TxChunk
from mssql2pg.pipeline.reader_process import pack, unpack
from mssql2pg.positions import Lsn
from mssql2pg.source.errors import LsnGapError

ORDERS, LINES = TableId("dbo", "orders"), TableId("sales", "Order Lines")
VALUES = (
    True,
    -(2**63),
    Decimal("-12345678901234567890.1234567890"),
    1.5e300,
    date(1, 1, 1),
    time(23, 59, 59, 999999),
    datetime(9999, 12, 31, 23, 59, 59, 999999),
    datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone(timedelta(hours=11))),
    "",
    "𝄞 non-BMP",
    b"\x00\xff",
    uuid.UUID("6f9619ff-8b86-d011-b42d-00c04fc964ff"),
    None,
)


def _lsn(n: int) -> Lsn:
    return Lsn.from_int(n)


def _row(table: TableId, ci: str, commit: int, seq: int, *, op: Operation, values: tuple[object, ...]) -> ChangeRow:
    return ChangeRow(table, ci, _lsn(commit), _lsn(seq), op, values, command_id=seq, update_mask=b"\x1f")


def _batch() -> list[ReaderItem]:
    return [
        TxChunk(
            _lsn(10),
            (
                _row(ORDERS, "dbo_orders", 10, 1, op=Operation.INSERT, values=VALUES),
                _row(LINES, "sales_lines", 10, 2, op=Operation.DELETE, values=(1, None)),
            ),
            first=True,
            last=False,
            commit_time=datetime(2024, 1, 2, 3, 4, 5, 6),
            tran_id=b"\x00\x01",
        ),
        TxChunk(
            _lsn(10),
            (
                _row(ORDERS, "dbo_orders", 10, 3, op=Operation.UPDATE_BEFORE, values=VALUES),
                _row(ORDERS, "dbo_orders", 10, 3, op=Operation.UPDATE_AFTER, values=VALUES),
            ),
            first=False,
            last=True,
        ),
        Heartbeat(_lsn(11), datetime(2024, 1, 2, 3, 4, 6, tzinfo=UTC), (ORDERS, LINES)),
        Heartbeat(Lsn.NULL),
    ]


def test_a_batch_arrives_equal_after_pickling() -> None:
    batch = _batch()

    received = unpack(pickle.loads(pickle.dumps(pack(batch), protocol=pickle.HIGHEST_PROTOCOL)))  # noqa: S301

    assert received == batch
    assert [type(i) for i in received] == [type(i) for i in batch]
    assert all(type(r.operation) is Operation for i in received if isinstance(i, TxChunk) for r in i.rows)


def test_rows_of_one_chunk_share_its_commit_lsn() -> None:
    """A chunk is one source transaction: its rows' commit LSN is the chunk's (model contract), sent once."""
    chunk = unpack(pack(_batch()))[0]

    assert isinstance(chunk, TxChunk)
    assert all(r.commit_lsn is chunk.commit_lsn for r in chunk.rows)


def test_a_row_whose_commit_lsn_differs_from_its_chunk_is_refused() -> None:
    bad = TxChunk(_lsn(10), (_row(ORDERS, "dbo_orders", 9, 1, op=Operation.INSERT, values=(1,)),))

    with pytest.raises(ValueError, match="commit LSN"):
        pack([bad])


@pytest.mark.parametrize(
    "error",
    [
        TransientError("connection lost", hint="wait"),
        IncompatibleTargetError("bad table", hint="fix it"),
        ClassifiedTransientError("reset", code="08006", driver="pg8000", scope="connection", hint="h"),
        ClassifiedTerminalError("bad", code=8115, driver="pytds", scope="row"),
        LsnGapError(ORDERS, "dbo_orders", _lsn(5), _lsn(9)),
    ],
)
def test_errors_keep_type_message_and_fields_across_processes(error: Mssql2pgError) -> None:
    """The reader process sends its error to the applier's process, which decides retry / pause / stop by type."""
    error.component = "source"  # type: ignore[attr-defined]

    back = pickle.loads(pickle.dumps(error))  # noqa: S301

    assert type(back) is type(error)
    assert str(back) == str(error)
    assert back.hint == error.hint
    assert vars(back) == vars(error)


def test_a_faulty_row_keeps_its_fault_and_raw_values_across_processes() -> None:
    """Read-side validation marks undecodable rows; the mark must reach the applier, or the row would be applied."""
    faulty = ChangeRow(
        ORDERS,
        "dbo_orders",
        _lsn(12),
        _lsn(1),
        Operation.INSERT,
        (1, "twelve", b"\x00"),
        command_id=1,
        fault="dbo.orders: column qty (int): cannot decode 'twelve'",
    )
    good = ChangeRow(ORDERS, "dbo_orders", _lsn(12), _lsn(2), Operation.INSERT, (2, 12, None), command_id=2)
    batch: list[ReaderItem] = [TxChunk(_lsn(12), (faulty, good))]

    received = unpack(pickle.loads(pickle.dumps(pack(batch))))  # noqa: S301

    assert received == batch
    chunk = received[0]
    assert isinstance(chunk, TxChunk)
    assert [r.fault for r in chunk.rows] == [faulty.fault, None]
