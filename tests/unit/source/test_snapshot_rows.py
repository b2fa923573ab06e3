"""Rows of a resync snapshot: inserts at the snapshot LSN; a value that cannot be read marks only its row."""

from __future__ import annotations

from dataclasses import replace

from mssql2pg.model import Operation, SourceColumn
from mssql2pg.source.snapshot import _row
from mssql2pg.source.values import RowDecoder
from tests.unit.source.fakes import instance, lsn

ORDERS = replace(
    instance("dbo_orders", "dbo.orders"),
    columns=(
        SourceColumn(name="id", ordinal=1, sql_type="int", nullable=False),
        SourceColumn(name="qty", ordinal=2, sql_type="int"),
    ),
)


def test_a_snapshot_row_is_an_insert_at_the_snapshot_lsn() -> None:
    row = _row(ORDERS, lsn(7), (1, "5"), RowDecoder(ORDERS.columns))
    assert (row.operation, row.commit_lsn, row.seqval, row.values, row.fault) == (
        Operation.INSERT,
        lsn(7),
        lsn(7),
        (1, 5),
        None,
    )


def test_an_undecodable_snapshot_value_marks_the_row_faulty_and_names_the_column() -> None:
    row = _row(ORDERS, lsn(7), (2, "twenty"), RowDecoder(ORDERS.columns))
    assert row.fault is not None
    assert "qty" in row.fault
    assert "twenty" in row.fault
    assert row.values[0] == 2
