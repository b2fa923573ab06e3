"""Rows of a resync snapshot: inserts at the snapshot LSN; a value that cannot be read marks only its row."""

from __future__ import annotations

from dataclasses import replace

from mssql2pg.model import ChangeRow, Operation, SourceColumn
from mssql2pg.source.snapshot import _pages, _row
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


class _StreamedResult:
    def __init__(self, rows: list[tuple[int, str]]) -> None:
        self._rows = rows
        self.fetches: list[int] = []

    def fetchmany(self, size: int) -> list[tuple[int, str]]:
        self.fetches.append(size)
        page, self._rows = self._rows[:size], self._rows[size:]
        return page


class _MssqlConnection:
    """Stands in for a SQLAlchemy connection to SQL Server: one query, rows fetched as they are needed."""

    def __init__(self, rows: list[tuple[int, str]]) -> None:
        self.dialect = type("Dialect", (), {"name": "mssql"})()
        self.result = _StreamedResult(rows)
        self.statements: list[str] = []

    def execute(self, statement: object, *_args: object) -> _StreamedResult:
        self.statements.append(str(statement))
        return self.result


def _values(pages: list[tuple[tuple[ChangeRow, ...], bool]]) -> list[tuple[list[tuple[object, ...]], bool]]:
    return [([r.values for r in rows], final) for rows, final in pages]


def test_sql_server_snapshot_is_one_streamed_query_fetched_page_by_page() -> None:
    rows = [(i, str(i)) for i in range(1, 8)]
    conn = _MssqlConnection(rows)
    pages = list(_pages(conn, ORDERS, lsn(7), 3))  # type: ignore[arg-type]
    decoded = [(i, i) for i in range(1, 8)]
    assert _values(pages) == [(decoded[0:3], False), (decoded[3:6], False), (decoded[6:7], True)]
    assert len(conn.statements) == 1  # no keyset comparisons on SQL Server
    assert "ORDER BY" in conn.statements[0]
    assert conn.result.fetches == [3, 3, 3]


def test_a_table_of_exactly_full_pages_ends_with_an_empty_page() -> None:
    conn = _MssqlConnection([(1, "1"), (2, "2")])
    assert _values(list(_pages(conn, ORDERS, lsn(7), 2))) == [([(1, 1), (2, 2)], False), ([], True)]  # type: ignore[arg-type]
