"""The T-SQL of the reconciliation's source statements, compared with reviewed snapshots (as the reader's are,
``tests/unit/source/test_statements.py``). Rewrite only on request:
``MSSQL2PG_UPDATE_SNAPSHOTS=1 pytest tests/unit/reconcile/test_statements.py``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Select
from sqlalchemy.sql import ClauseElement

from mssql2pg.model import CaptureInstance, SourceColumn, TableId
from mssql2pg.positions import Lsn
from mssql2pg.reconcile import statements as st
from mssql2pg.reconcile.sides import SourceSide
from mssql2pg.reconcile.source import key_decoded, key_decoder, rows_for_keys, source_relation
from mssql2pg.source.values import with_spatial_as_wkb

SNAPSHOTS = Path(__file__).parent.parent / "snapshots" / "reconcile"
UPDATE = os.environ.get("MSSQL2PG_UPDATE_SNAPSHOTS") == "1"
UTF8 = "Latin1_General_100_CI_AS_SC_UTF8"

# One column of every encoding kind; a two-column key with a name that needs quoting.
_COLUMNS = (
    SourceColumn("Order Id", 1, "int"),
    SourceColumn("line]no", 2, "uniqueidentifier"),
    SourceColumn("flag", 3, "bit"),
    SourceColumn("amount", 4, "decimal", precision=12, scale=3),
    SourceColumn("price", 5, "money"),
    SourceColumn("ratio", 6, "float"),
    SourceColumn("small_ratio", 7, "real"),
    SourceColumn("day", 8, "date"),
    SourceColumn("at_time", 9, "time", scale=7),
    SourceColumn("created", 10, "datetime"),
    SourceColumn("changed", 11, "datetime2", scale=7),
    SourceColumn("minute", 12, "smalldatetime"),
    SourceColumn("happened", 13, "datetimeoffset", scale=3),
    SourceColumn("name", 14, "nvarchar", max_length=50),
    SourceColumn("blob", 15, "varbinary", max_length=-1),
)
CI = CaptureInstance("Sales_Order Lines", TableId("Sales", "Order Lines"), Lsn.NULL, _COLUMNS, ("Order Id", "line]no"))
REL = source_relation(CI, "mssql")

# Issue 17 points 4-5: a varchar key in a UTF-8 collation, text in a code page, a spatial column read as EWKB.
WORDS = with_spatial_as_wkb(
    CaptureInstance(
        "dbo_words",
        TableId("dbo", "words"),
        Lsn.NULL,
        (
            SourceColumn("word", 1, "varchar", max_length=40, nullable=False, collation=UTF8),
            SourceColumn("note", 2, "varchar", max_length=-1, collation="Cyrillic_General_CI_AS"),
            SourceColumn("g", 3, "geography"),
        ),
        ("word",),
    )
)
WORDS_REL = source_relation(WORDS, "mssql")

STATEMENTS: dict[str, ClauseElement] = {
    "segment_sums": st.segment_sums(REL, 12),
    "segment_sums_within": st.segment_sums(REL, 24, 12),
    "segment_rows": st.segment_rows(REL, 24),
    "rows_by_key": st.rows_by_key(REL, 2),
    "segment_sums_text_and_wkb": st.segment_sums(WORDS_REL, 12),
    "segment_rows_text_and_wkb": st.segment_rows(WORDS_REL, 24),
    "rows_by_key_text_and_wkb": st.rows_by_key(WORDS_REL, 2),
    "rows_for_keys_text_and_wkb": rows_for_keys(WORDS, 2),
    # a key whose bytes are invalid in its code page (the pipeline dead-lettered its row) is looked up by its bytes
    "rows_by_key_as_read": st.rows_by_key(WORDS_REL, 1, as_read=True),
    "rows_for_keys_as_read": rows_for_keys(WORDS, 1, as_read=True),
}


def _tsql(stmt: ClauseElement) -> str:
    dialect = sa.create_engine("mssql+pytds://reader@mssql/shop").dialect
    lines = str(stmt.compile(dialect=dialect)).strip().splitlines()
    return "\n".join(line.rstrip() for line in lines) + "\n"


@pytest.mark.parametrize("name", sorted(STATEMENTS))
def test_tsql_matches_snapshot(name: str) -> None:
    path = SNAPSHOTS / f"{name}.sql"
    text = _tsql(STATEMENTS[name])
    if UPDATE:
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"no snapshot {path}; run with MSSQL2PG_UPDATE_SNAPSHOTS=1 and review the file"
    assert text == path.read_text(encoding="utf-8"), f"T-SQL of {name} changed; review and update the snapshot"


def test_every_snapshot_belongs_to_a_statement() -> None:
    assert {p.stem for p in SNAPSHOTS.glob("*.sql")} <= set(STATEMENTS)


def test_the_source_sql_is_t_sql_not_postgresql() -> None:
    text = _tsql(STATEMENTS["segment_sums"])
    assert "hashbytes('md5'" in text.lower()
    assert "COLLATE Latin1_General_100_BIN2_UTF8" in text
    assert "md5(" not in text
    assert "::" not in text
    assert "[Sales].[Order Lines]" in text
    assert "[line]]no]" in text


def test_segments_come_from_the_key_hash_not_from_key_order() -> None:
    text = _tsql(STATEMENTS["segment_rows"])
    assert "ORDER BY" not in text
    assert "/ 4294967296" in text  # 56 - 24 bits
    assert "BETWEEN" not in text
    assert " > " not in text


def test_text_is_compared_as_the_server_converts_it_and_keys_are_read_as_the_reader_reads_them() -> None:
    rows = _tsql(STATEMENTS["segment_rows_text_and_wkb"])
    # canonical text: SQL Server converts the column from its own code page (never python-tds's text)
    assert "CAST(src.[note] AS NVARCHAR(max))" in rows
    # the key value sent back: the stored bytes, decoded by the reader's decoder
    assert "CAST(src.[word] AS VARBINARY(MAX)) AS v0" in rows
    # a spatial: wkb column is compared as the expression the reader selects (SRID + WKB)
    assert "CAST(src.[g].STSrid AS BINARY(4)) + src.[g].STAsBinary()" in rows


def test_a_varchar_key_is_looked_up_by_its_text_in_its_collation() -> None:
    for name in ("rows_by_key_text_and_wkb", "rows_for_keys_text_and_wkb"):
        text = _tsql(STATEMENTS[name])
        assert f"= CAST(%(k0_1)s COLLATE {UTF8} AS VARCHAR(8000))" in text, name


def test_a_repair_reads_rows_as_the_streaming_reader_selects_them() -> None:
    text = _tsql(STATEMENTS["rows_for_keys_text_and_wkb"])
    assert "CAST(src.[word] AS VARBINARY(MAX)) AS [word]" in text
    assert "CAST(src.[note] AS VARBINARY(MAX)) AS [note]" in text
    assert "CAST(src.[g].STSrid AS BINARY(4)) + src.[g].STAsBinary() AS [g]" in text


@pytest.mark.parametrize(
    ("collation", "codec", "word", "invalid"),
    [
        (UTF8, "utf-8", "😀 Äpfel 日本", b"\xff"),
        ("Cyrillic_General_CI_AS", "cp1251", "Привет", b"\x98"),
        ("Japanese_CI_AS", "cp932", "日本語", b"\x82"),
        ("Chinese_PRC_CI_AS", "cp936", "中文", b"\x81"),
        ("Latin1_General_CI_AS", "cp1252", "café €", b"\x81"),
    ],
)
def test_a_key_read_as_bytes_is_named_and_looked_up_as_the_decoded_text(
    collation: str, codec: str, word: str, invalid: bytes
) -> None:
    ci = CaptureInstance(
        "dbo_k", TableId("dbo", "k"), Lsn.NULL, (SourceColumn("k", 1, "varchar", collation=collation),), ("k",)
    )
    assert key_decoder(ci)((word.encode(codec),)) == (word,)
    # invalid in its code page: named by its bytes (the target cannot hold that row: it is a dead letter)
    assert key_decoder(ci)((invalid,)) == (invalid,)


def test_a_key_that_cannot_be_decoded_is_looked_up_by_its_stored_bytes() -> None:
    for name in ("rows_by_key_as_read", "rows_for_keys_as_read"):
        text = _tsql(STATEMENTS[name])
        assert "COLLATE Latin1_General_100_CI_AS_SC_UTF8 AS VARCHAR(8000)" not in text, name
    assert "WHERE r.v0 = %(k0_0)s" in _tsql(STATEMENTS["rows_by_key_as_read"])
    assert "WHERE CAST(src.[word] AS VARBINARY(MAX)) = %(k0_0)s" in _tsql(STATEMENTS["rows_for_keys_as_read"])


class _RecordingSide(SourceSide):
    def __init__(self) -> None:
        super().__init__(conn=None, relation=WORDS_REL)  # type: ignore[arg-type]
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def _run(self, stmt: Select[Any], params: dict[str, Any]) -> list[Sequence[Any]]:
        self.sent.append((_tsql(stmt), params))
        return []


def test_the_source_side_looks_up_decodable_keys_by_text_and_the_others_by_bytes() -> None:
    side = _RecordingSide()
    side.rows_by_key([("Привет",), (b"\xff",), ("café",)])
    assert [params for _, params in side.sent] == [{"k0_0": "Привет", "k0_1": "café"}, {"k0_0": b"\xff"}]
    assert "COLLATE" in side.sent[0][0]
    assert "r.v0 = %(k0_0)s" in side.sent[1][0]


def test_a_repair_looks_up_keys_that_could_not_be_decoded_by_their_bytes() -> None:
    assert key_decoded(WORDS, ("Привет",))
    assert not key_decoded(WORDS, (b"\xff",))
    assert key_decoded(CI, (1, b"\x00" * 16))  # no varchar key column: keys are bound as they are
