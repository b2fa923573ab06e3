"""The T-SQL of the reconciliation's source statements, compared with reviewed snapshots (as the reader's are,
``tests/unit/source/test_statements.py``). Rewrite only on request:
``MSSQL2PG_UPDATE_SNAPSHOTS=1 pytest tests/unit/reconcile/test_statements.py``."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.sql import ClauseElement

from mssql2pg.model import CaptureInstance, SourceColumn, TableId
from mssql2pg.positions import Lsn
from mssql2pg.reconcile import statements as st
from mssql2pg.reconcile.source import source_relation

SNAPSHOTS = Path(__file__).parent.parent / "snapshots" / "reconcile"
UPDATE = os.environ.get("MSSQL2PG_UPDATE_SNAPSHOTS") == "1"

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

STATEMENTS: dict[str, ClauseElement] = {
    "segment_sums": st.segment_sums(REL, 12),
    "segment_sums_within": st.segment_sums(REL, 24, 12),
    "segment_rows": st.segment_rows(REL, 24),
    "rows_by_key": st.rows_by_key(REL, 2),
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
