"""Validation at the read boundary (FR-014): change rows are checked against the capture instance's metadata.

* a value the decoder refuses marks that row faulty (it becomes a dead letter downstream); the other rows of the
  same transaction and of other tables are read as usual;
* a change table whose rows do not have the captured columns' shape, or a capture instance without a usable
  key, is a :class:`TableShapeError`: a table fault that pauses only that table.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable
from dataclasses import replace

import pg8000.exceptions
import pytds.tds_base as tds
import pytest

from mssql2pg.errors import TableFaultError, TerminalError
from mssql2pg.model import CaptureInstance, ChangeRow, ReaderItem, SourceColumn, TableId, TxChunk
from mssql2pg.positions import Lsn
from mssql2pg.source import LsnGapError, Reader, ReaderSettings
from mssql2pg.source.errors import TableShapeError
from mssql2pg.source.validation import check_instance, raw_form
from tests.unit.source.fakes import FakeSource, instance, lsn

ORDERS = replace(
    instance("dbo_orders", "dbo.orders"),
    columns=(
        SourceColumn(name="id", ordinal=1, sql_type="int", nullable=False),
        SourceColumn(name="qty", ordinal=2, sql_type="int"),
        SourceColumn(name="at", ordinal=3, sql_type="date"),
    ),
)
LINES = instance("dbo_lines", "dbo.lines")


def _rows(items: Iterable[ReaderItem]) -> list[ChangeRow]:
    return [r for i in items if isinstance(i, TxChunk) for r in i.rows]


def _read(src: FakeSource, *, page_rows: int | None = None) -> list[ReaderItem]:
    reader = Reader(src.connect, src.instances, ReaderSettings(chunk_rows=100, page_rows=page_rows))
    return list(reader.windows(Lsn.NULL))


def test_an_undecodable_value_marks_only_its_row_faulty_and_keeps_the_raw_value() -> None:
    src = FakeSource(instances=[ORDERS, LINES])
    src.add(ORDERS, 10, 1, 2, 1, 1, 5, "2024-01-02")
    src.add(ORDERS, 10, 2, 2, 2, 2, "twelve", b"\x00\xff")  # qty is not an int, at is not a date
    src.add(LINES, 10, 3, 2, 3, 7, 1)
    src.add(ORDERS, 11, 4, 2, 1, 3, "7", None)

    rows = _rows(_read(src))

    assert [(r.table.name, r.values[0], r.fault is None) for r in rows] == [
        ("orders", 1, True),
        ("orders", 2, False),
        ("lines", 7, True),
        ("orders", 3, True),
    ]
    bad = rows[1]
    assert bad.values == (2, "twelve", b"\x00\xff")  # decoded where possible, raw (picklable) where not
    assert bad.fault is not None
    assert "dbo.orders" in bad.fault
    assert "column qty (int)" in bad.fault
    assert "'twelve'" in bad.fault
    assert "column at (date)" in bad.fault
    assert "id" not in bad.fault.split(":")[0]  # the good column is not blamed
    assert rows[3].values == (3, 7, None)


def test_raw_form_is_picklable_and_json_friendly() -> None:
    assert raw_form(memoryview(b"\x01\x02")) == b"\x01\x02"
    assert raw_form(bytearray(b"\x03")) == b"\x03"
    assert raw_form("x") == "x"
    assert raw_form(5) == 5

    class Odd:
        def __repr__(self) -> str:
            return "<odd>"

    assert raw_form(Odd()) == "<odd>"
    pickle.dumps(raw_form(memoryview(b"\x01")))


def test_rows_wider_or_narrower_than_the_captured_columns_pause_the_table() -> None:
    src = FakeSource(instances=[ORDERS])
    src.add(ORDERS, 10, 1, 2, 1, 1, 5)  # one captured value missing

    with pytest.raises(TableShapeError) as info:
        _read(src)

    err = info.value
    assert isinstance(err, TableFaultError)
    assert isinstance(err, TerminalError)
    assert err.table == ORDERS.source
    assert err.state == "paused"
    assert "2 captured values" in str(err)
    assert "3 columns" in str(err)
    assert "mssql2pg resync dbo.orders" in err.remediation


@pytest.mark.parametrize(
    ("keys", "expected"),
    [((), "no primary key"), (("code",), r"key column\(s\) \['code'\] are not captured")],
)
def test_a_capture_instance_without_a_usable_key_is_a_table_fault(keys: tuple[str, ...], expected: str) -> None:
    ci = replace(ORDERS, key_columns=keys)

    with pytest.raises(TableShapeError, match=expected) as info:
        check_instance(ci)
    assert info.value.table == ORDERS.source

    src = FakeSource(instances=[ci, LINES])
    src.add(LINES, 10, 3, 2, 3, 7, 1)
    with pytest.raises(TableShapeError):
        _read(src)


def test_a_capture_instance_with_a_key_is_accepted() -> None:
    check_instance(ORDERS)


def test_table_faults_keep_their_fields_across_processes() -> None:
    errors: list[TableFaultError] = [
        TableShapeError(TableId("dbo", "orders"), "dbo_orders", "a column is missing"),
        LsnGapError(TableId("dbo", "orders"), "dbo_orders", lsn(5), lsn(9)),
    ]
    for error in errors:
        back = pickle.loads(pickle.dumps(error))  # noqa: S301
        assert type(back) is type(error)
        assert vars(back) == vars(error)
        assert (back.table, back.state, back.remediation) == (error.table, error.state, error.remediation)
    assert errors[1].state == "needs-resync"
    assert "mssql2pg resync dbo.orders" in errors[1].remediation


def test_missing_change_table_column_is_a_table_fault() -> None:
    """A captured column the change table no longer has (SQL Server Msg 207, PostgreSQL 42703), decided by the
    driver's code, as the drivers raise it, never by the message text."""
    from mssql2pg.source.validation import missing_column_fault  # noqa: PLC0415

    ci: CaptureInstance = ORDERS
    postgres = pg8000.exceptions.DatabaseError({"S": "ERROR", "C": "42703", "M": "column cdc_data.qty does not exist"})
    fault = missing_column_fault(ci, postgres)
    assert isinstance(fault, TableShapeError)
    assert "qty" in str(fault)
    sql_server = tds.ProgrammingError("Invalid column name 'qty'.")
    sql_server.number = sql_server.msg_no = 207
    sql_server.severity = 16
    assert missing_column_fault(ci, sql_server) is not None
    assert missing_column_fault(ci, RuntimeError("Invalid column name 'qty'.")) is None
    assert missing_column_fault(ci, tds.OperationalError("connection reset")) is None
