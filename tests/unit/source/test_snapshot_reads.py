"""Table snapshots read like the streaming reader (issue 17 points 4-5): character columns as their stored bytes,
decoded in their collation's code page; spatial columns of a ``spatial: wkb`` table as SRID + WKB, stored as
EWKB; a value that cannot be decoded is a dead letter naming its column. And the keyset of the initial
snapshot continues after a ``varchar`` key's decoded text, compared by SQL Server in the column's collation.

The fake connections hand back what python-tds would for the T-SQL selected (bytes for ``CAST(... AS
VARBINARY(MAX))``), and record the statements, compiled as T-SQL."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.sql import ClauseElement

from mssql2pg.errors import SourceError
from mssql2pg.model import CaptureInstance, SourceColumn, TableId
from mssql2pg.positions import Lsn
from mssql2pg.source.snapshot import _pages, _read_page
from mssql2pg.source.values import with_spatial_as_wkb

UTF8 = "Latin1_General_100_CI_AS_SC_UTF8"
CYRILLIC = "Cyrillic_General_CI_AS"
LSN = Lsn(b"\x00" * 9 + b"\x07")

POINT = bytes.fromhex("0101000000") + struct.pack("<dd", 1.0, 2.0)
AS_READ = (4326).to_bytes(4, "big") + POINT  # CAST(g.STSrid AS BINARY(4)) + g.STAsBinary()
EWKB = bytes.fromhex("0101000020E6100000000000000000F03F0000000000000040")  # SRID=4326;POINT(1 2)

# A table keyed by a varchar in a UTF-8 collation, with a cp1251 varchar, an nvarchar and a geography column.
CI = with_spatial_as_wkb(
    CaptureInstance(
        "dbo_words",
        TableId("dbo", "words"),
        LSN,
        (
            SourceColumn("word", 1, "varchar", max_length=50, nullable=False, collation=UTF8),
            SourceColumn("ru", 2, "varchar", max_length=50, collation=CYRILLIC),
            SourceColumn("wide", 3, "nvarchar", max_length=50, collation=CYRILLIC),
            SourceColumn("g", 4, "geography"),
        ),
        ("word",),
    )
)


def _tsql(stmt: ClauseElement) -> str:
    return str(stmt.compile(dialect=sa.create_engine("mssql+pytds://reader@mssql/shop").dialect))


def _stored(word: str, ru: str | None = "Привет", wide: str | None = "日本 😀") -> tuple[Any, ...]:
    """A row as python-tds delivers it for the snapshot's T-SQL: each character column's stored bytes."""
    return (
        word.encode("utf-8"),
        ru.encode("cp1251") if ru is not None else None,
        wide.encode("utf-16-le") if wide is not None else None,
        AS_READ,
    )


class _Result:
    def __init__(self, rows: Sequence[tuple[Any, ...]]) -> None:
        self._rows = list(rows)

    def all(self) -> list[tuple[Any, ...]]:
        return self._rows

    def fetchmany(self, size: int) -> list[tuple[Any, ...]]:
        page, self._rows = self._rows[:size], self._rows[size:]
        return page


class _Connection:
    """Answers each statement with the next of the given pages; records the T-SQL and the parameters."""

    def __init__(self, *pages: Sequence[tuple[Any, ...]], dialect: str = "mssql") -> None:
        self.dialect = type("Dialect", (), {"name": dialect})()
        self._pages = list(pages)
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def execute(self, stmt: ClauseElement, params: dict[str, Any] | None = None) -> _Result:
        self.sent.append((_tsql(stmt), dict(params or {})))
        return _Result(self._pages.pop(0))


def test_an_initial_snapshot_page_selects_and_decodes_each_column_as_streaming_does() -> None:
    conn = _Connection([_stored("café"), _stored("naïve", ru=None, wide=None)])

    page = _read_page(conn, CI, LSN, None, 10)  # type: ignore[arg-type]

    assert [r.values for r in page.rows] == [("café", "Привет", "日本 😀", EWKB), ("naïve", None, None, EWKB)]
    assert all(r.fault is None for r in page.rows)
    assert (page.last_key, page.final) == (("naïve",), True)
    tsql = conn.sent[0][0]
    assert "CAST(src.[word] AS VARBINARY(MAX)) AS [word]" in tsql
    assert "CAST(src.[ru] AS VARBINARY(MAX)) AS [ru]" in tsql
    assert "CAST(src.[wide] AS VARBINARY(MAX)) AS [wide]" in tsql
    assert "CAST(src.[g].STSrid AS BINARY(4)) + src.[g].STAsBinary() AS [g]" in tsql
    assert tsql.rstrip().endswith("ORDER BY src.[word]")


def test_the_next_page_continues_after_the_decoded_key_in_the_columns_collation() -> None:
    conn = _Connection([_stored("äpfel"), _stored("über")], [_stored("zürich")])

    first = _read_page(conn, CI, LSN, None, 2)  # type: ignore[arg-type]
    assert (first.last_key, first.final) == (("über",), False)
    second = _read_page(conn, CI, LSN, first.last_key, 2)  # type: ignore[arg-type]

    tsql, params = conn.sent[1]
    assert params == {"key_0": "über"}  # text, not the stored bytes and not mojibake
    assert f"WHERE src.[word] > CAST(%(key_0)s COLLATE {UTF8} AS VARCHAR(8000))" in tsql
    assert [r.values[0] for r in second.rows] == ["zürich"]
    assert second.final


def test_a_value_invalid_in_its_code_page_is_a_dead_letter_naming_the_column_and_the_page_goes_on() -> None:
    bad = (b"ok", b"\x98", None, None)  # 0x98 is undefined in cp1251
    conn = _Connection([_stored("a"), bad, _stored("c")])

    page = _read_page(conn, CI, LSN, None, 5)  # type: ignore[arg-type]

    assert [r.fault is None for r in page.rows] == [True, False, True]
    fault = page.rows[1].fault or ""
    assert "column ru (varchar)" in fault
    assert "cp1251" in fault
    assert page.rows[1].values[0] == "ok"


def test_a_page_ends_before_trailing_rows_whose_key_cannot_be_decoded_and_the_next_page_reads_them() -> None:
    bad_key = (b"\xff\xfe", None, None, None)  # not UTF-8
    conn = _Connection([_stored("a"), _stored("b"), bad_key], [bad_key, _stored("d")])

    page = _read_page(conn, CI, LSN, None, 3)  # type: ignore[arg-type]

    assert [r.values[0] for r in page.rows] == ["a", "b"]
    assert (page.last_key, page.final) == (("b",), False)  # not the end of the table, though shorter
    following = _read_page(conn, CI, LSN, page.last_key, 3)  # type: ignore[arg-type]
    assert following.final
    assert following.rows[0].fault is not None
    assert "column word (varchar)" in (following.rows[0].fault or "")
    assert following.last_key == ("d",)


def test_a_full_page_of_keys_that_cannot_be_decoded_stops_the_load_with_the_reason() -> None:
    bad_key = (b"\xff", None, None, None)
    conn = _Connection([bad_key, bad_key])
    with pytest.raises(SourceError, match="cannot be decoded"):
        _read_page(conn, CI, LSN, None, 2)  # type: ignore[arg-type]


def test_a_resync_on_sql_server_streams_one_query_selected_and_decoded_as_streaming_does() -> None:
    conn = _Connection([_stored("a"), _stored("b", ru="Ёж"), _stored("c")])

    pages = list(_pages(conn, CI, LSN, 2))  # type: ignore[arg-type]

    assert [([r.values for r in rows], final) for rows, final in pages] == [
        ([("a", "Привет", "日本 😀", EWKB), ("b", "Ёж", "日本 😀", EWKB)], False),
        ([("c", "Привет", "日本 😀", EWKB)], True),
    ]
    assert len(conn.sent) == 1
    assert "CAST(src.[g].STSrid AS BINARY(4)) + src.[g].STAsBinary() AS [g]" in conn.sent[0][0]
    assert "CAST(src.[ru] AS VARBINARY(MAX)) AS [ru]" in conn.sent[0][0]


def test_a_resync_on_the_emulator_pages_by_key_with_the_same_decoding() -> None:
    # The emulator's driver delivers text for text and the stored bytes for a spatial column.
    rows = [("a", "Привет", "x", AS_READ), ("b", None, None, None), ("c", "Ёж", "y", AS_READ)]
    conn = _Connection(rows[:2], rows[2:], dialect="postgresql")

    pages = list(_pages(conn, CI, LSN, 2))  # type: ignore[arg-type]

    assert [[r.values for r in rows] for rows, _ in pages] == [
        [("a", "Привет", "x", EWKB), ("b", None, None, None)],
        [("c", "Ёж", "y", EWKB)],
    ]
    assert conn.sent[1][1] == {"key_0": "b"}
