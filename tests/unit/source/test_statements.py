"""The T-SQL every source statement compiles to, compared with reviewed snapshots.

No SQL Server runs here, so the production text is pinned instead: a change to a statement shows up as a diff
of ``tests/unit/snapshots/*.sql`` in review. Snapshots are only ever rewritten on request:
``MSSQL2PG_UPDATE_SNAPSHOTS=1 pytest tests/unit/source/test_statements.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql import ClauseElement

from mssql2pg.source import statements

SNAPSHOTS = Path(__file__).parent.parent / "snapshots"
UPDATE = os.environ.get("MSSQL2PG_UPDATE_SNAPSHOTS") == "1"

# A capture instance and column names that need quoting, to show the quoting in the snapshot.
_CI = "dbo_Order Lines"
_COLS = ["id", "Name", "weird]col", "__$not_meta"]

STATEMENTS: dict[str, ClauseElement] = {
    "max_lsn": statements.MAX_LSN,
    "min_lsn": statements.MIN_LSN,
    "source_clock": statements.SOURCE_CLOCK,
    "capture_instances": statements.CAPTURE_INSTANCES,
    "capture_instance_catalog": statements.CAPTURE_INSTANCE_CATALOG,
    "commit_times_page": statements.commit_times_page(500),
    "commit_time": statements.COMMIT_TIME,
    "change_rows_first_page": statements.change_rows_page(_CI, _COLS, 500, resume=False),
    "change_rows_next_page": statements.change_rows_page(_CI, _COLS, 500, resume=True),
    # character columns read as their stored bytes, decoded by the collation's code page (issue 17 point 4)
    "change_rows_first_page_raw_text": statements.change_rows_page(_CI, _COLS, 500, resume=False, raw={"Name"}),
    "change_rows_next_page_raw_text": statements.change_rows_page(
        _CI, _COLS, 500, resume=True, raw={"Name", "weird]col"}
    ),
    "source_rows_raw_text": statements.source_rows("dbo", "Order Lines", _COLS, ["id", "Name"], raw={"Name"}),
    # geography/geometry read as SRID + WKB by the source itself (option spatial: wkb; issue 17 point 5)
    "change_rows_first_page_wkb": statements.change_rows_page(_CI, _COLS, 500, resume=False, wkb={"weird]col"}),
    "change_rows_next_page_wkb": statements.change_rows_page(_CI, _COLS, 500, resume=True, wkb={"weird]col"}),
    "source_rows_wkb": statements.source_rows("dbo", "Order Lines", _COLS, ["id", "Name"], wkb={"weird]col"}),
    "source_rows": statements.source_rows("dbo", "Order Lines", _COLS, ["id", "Name"]),
    "source_row_count": statements.source_row_count("dbo", "Order Lines", mssql=True),
    "source_rows_first_page": statements.source_rows_page(
        "dbo", "Order Lines", _COLS, ["id", "Name"], 500, resume=False
    ),
    "source_rows_next_page": statements.source_rows_page("dbo", "Order Lines", _COLS, ["id", "Name"], 500, resume=True),
    # the initial snapshot's keyset pages read like the streaming reader (issue 17 points 4-5): text as bytes,
    # spatial as SRID + WKB; a varchar key continues after the decoded text, bound in the column's collation
    "source_rows_first_page_raw_text_wkb": statements.source_rows_page(
        "dbo", "Order Lines", _COLS, ["id", "Name"], 500, resume=False, raw={"Name"}, wkb={"weird]col"}
    ),
    "source_rows_next_page_raw_text_key": statements.source_rows_page(
        "dbo",
        "Order Lines",
        _COLS,
        ["id", "Name"],
        500,
        resume=True,
        raw={"Name"},
        key_collations={"Name": "Latin1_General_100_CI_AS_SC_UTF8"},
    ),
    "current_user": statements.CURRENT_USER,
    "can_read": statements.can_read("cdc", f"{_CI}_CT"),
    # schema_evolution.manage_capture_instances (issue 12 point 8)
    "source_table_columns": statements.SOURCE_TABLE_COLUMNS,
    "instance_options": statements.INSTANCE_OPTIONS,
    "ddl_seen": statements.DDL_SEEN,
    "is_db_owner": statements.IS_DB_OWNER,
    "enable_table": statements.ENABLE_TABLE,
    "disable_table": statements.DISABLE_TABLE,
    # the retention margin of a held position (issue 12)
    "cleanup_retention": statements.cleanup_retention(mssql=True),
}


def _mssql_dialect() -> sa.Dialect:
    # The production driver's dialect (python-tds), so the snapshot shows its parameter style too.
    return sa.create_engine("mssql+pytds://reader@mssql/shop").dialect


def _tsql(stmt: ClauseElement) -> str:
    # Trailing blanks are dropped so that editors and hooks cannot break the comparison.
    lines = str(stmt.compile(dialect=_mssql_dialect())).strip().splitlines()
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
    orphans = {p.stem for p in SNAPSHOTS.glob("*.sql")} - set(STATEMENTS)
    assert not orphans, f"snapshots without a statement: {sorted(orphans)}"


def test_statements_use_bind_parameters_not_literals() -> None:
    text = _tsql(statements.change_rows_page(_CI, _COLS, 500, resume=True))
    for param in ("%(lsn)s", "%(command_id)s", "%(seqval)s", "%(operation)s", "%(to_lsn)s"):
        assert param in text
    assert "0x" not in text


def test_change_table_and_metadata_columns_are_bracket_quoted() -> None:
    text = _tsql(statements.change_rows_page(_CI, _COLS, 10, resume=False))
    assert "FROM cdc.[dbo_Order Lines_CT] AS cdc_data" in text
    assert "cdc_data.[__$start_lsn]" in text
    assert "[weird]]col]" in text  # a closing bracket is doubled
    assert "TOP __[POSTCOMPILE_param_1]" in text


def test_keyset_order_is_lsn_command_seqval_operation() -> None:
    text = _tsql(statements.change_rows_page(_CI, _COLS, 10, resume=True))
    order_by = text[text.index("ORDER BY") :]
    positions = [order_by.index(f"[__${c}]") for c in ("start_lsn", "command_id", "seqval", "operation")]
    assert positions == sorted(positions)


def test_page_size_becomes_limit_on_postgresql() -> None:
    text = str(statements.change_rows_page(_CI, _COLS, 10, resume=False).compile(dialect=postgresql.dialect()))
    assert 'cdc."dbo_Order Lines_CT"' in text
    assert "LIMIT" in text


def test_a_varchar_key_read_as_bytes_is_compared_as_text_in_its_collation_and_ordered_by_the_column() -> None:
    text = _tsql(
        statements.source_rows_page(
            "dbo", "T", ["k", "v"], ["k"], 10, resume=True, raw={"k"}, key_collations={"k": "Cyrillic_General_CI_AS"}
        )
    )
    assert "CAST(src.[k] AS VARBINARY(MAX)) AS [k]" in text  # the value: its stored bytes, decoded by values.py
    # the predicate: the column itself (an index range) against the decoded text turned back into the column's
    # own code page by SQL Server, so comparison and index order agree
    assert "WHERE src.[k] > CAST(%(key_0)s COLLATE Cyrillic_General_CI_AS AS VARCHAR(8000))" in text
    assert text.rstrip().endswith("ORDER BY src.[k]")


def test_the_emulator_compares_the_key_as_bound() -> None:
    stmt = statements.source_rows_page("dbo", "T", ["k"], ["k"], 10, resume=True, raw={"k"}, key_collations={"k": "X"})
    text = str(stmt.compile(dialect=postgresql.dialect()))
    assert "COLLATE" not in text
    assert 'src."k" > %(key_0)s' in text


def test_a_collation_name_that_is_not_a_plain_name_is_refused() -> None:
    with pytest.raises(ValueError, match="collation"):
        statements.source_rows_page("dbo", "T", ["k"], ["k"], 10, resume=True, key_collations={"k": "x; DROP"})


def test_cdc_procedures_bind_every_argument_by_name() -> None:
    """No value is ever spliced into a procedure call: the T-SQL names each argument and binds it, and the
    emulator's form (PostgreSQL ``CALL``) does the same."""
    text = _tsql(statements.ENABLE_TABLE)
    assert text.startswith("EXEC sys.sp_cdc_enable_table @source_schema = %(source_schema)s, ")
    assert "@captured_column_list = %(captured_column_list)s" in text
    pg = str(statements.DISABLE_TABLE.compile(dialect=postgresql.dialect()))
    assert pg == (
        "CALL sys.sp_cdc_disable_table(source_schema => %(source_schema)s, source_name => %(source_name)s, "
        "capture_instance => %(capture_instance)s)"
    )
