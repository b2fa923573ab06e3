"""The reader against a real SQL Server (only where ``MSSQL2PG_TEST_MSSQL_URL`` points at one; skipped here).

The URL must name a database whose user may enable CDC (db_owner, and sysadmin for ``sp_cdc_enable_db`` unless
it is already enabled). ``sys.sp_cdc_scan`` runs the capture synchronously, so no wait on SQL Server Agent is
needed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal

import pytest
import sqlalchemy as sa

from mssql2pg.model import Operation, TableId, TxChunk
from mssql2pg.positions import Lsn
from mssql2pg.source import Reader, ReaderSettings

pytestmark = [pytest.mark.integration, pytest.mark.mssql]


@pytest.fixture
def mssql(mssql_url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(mssql_url, isolation_level="AUTOCOMMIT")
    yield engine
    engine.dispose()


def test_transaction_with_update_pair_from_real_change_tables(mssql: sa.Engine) -> None:
    table = f"reader_{uuid.uuid4().hex[:8]}"
    with mssql.connect() as conn:
        if not conn.execute(sa.text("SELECT is_cdc_enabled FROM sys.databases WHERE name = DB_NAME()")).scalar():
            conn.execute(sa.text("EXEC sys.sp_cdc_enable_db"))
        conn.execute(sa.text(f"CREATE TABLE dbo.{table} (id int PRIMARY KEY, name nvarchar(20), amount money)"))
        conn.execute(
            sa.text(
                "EXEC sys.sp_cdc_enable_table @source_schema = N'dbo', @source_name = :t, @role_name = NULL, "
                "@supports_net_changes = 0"
            ),
            {"t": table},
        )
        conn.execute(sa.text("EXEC sys.sp_cdc_scan @maxtrans = 500, @maxscans = 1, @continuous = 0"))
        start = Lsn.from_bytes(conn.execute(sa.text("SELECT sys.fn_cdc_get_max_lsn()")).scalar())
        conn.execute(
            sa.text(
                f"BEGIN TRAN; INSERT INTO dbo.{table} VALUES (1, N'Zoë', 1.5); "
                f"UPDATE dbo.{table} SET amount = 2.25 WHERE id = 1; COMMIT"
            )
        )
        conn.execute(sa.text("EXEC sys.sp_cdc_scan @maxtrans = 500, @maxscans = 1, @continuous = 0"))
    try:
        reader = Reader.for_tables(mssql, [TableId("dbo", table)], ReaderSettings(chunk_rows=2, page_rows=1))
        chunks = [i for i in reader.windows(start) if isinstance(i, TxChunk)]
        rows = [r for c in chunks for r in c.rows]
        assert [r.operation for r in rows] == [Operation.INSERT, Operation.UPDATE_BEFORE, Operation.UPDATE_AFTER]
        assert rows[-1].values == (1, "Zoë", Decimal("2.2500"))
        assert [(c.first, c.last) for c in chunks] == [(True, False), (False, True)]
        assert len({r.commit_lsn for r in rows}) == 1
    finally:
        with mssql.connect() as conn:
            conn.execute(
                sa.text(
                    "EXEC sys.sp_cdc_disable_table @source_schema = N'dbo', @source_name = :t, "
                    "@capture_instance = N'all'"
                ),
                {"t": table},
            )
            conn.execute(sa.text(f"DROP TABLE dbo.{table}"))


def test_character_columns_in_their_collations_code_page(mssql: sa.Engine) -> None:
    """What only a real SQL Server shows (issue 17 point 4): varchar bytes stored in each collation's code page
    (cp1252, cp1251, cp932, cp936, UTF-8) and nvarchar as UTF-16 with surrogate pairs arrive as the same
    characters; bytes invalid in the code page make that row a fault naming the column, the others decode."""
    table = f"enc_{uuid.uuid4().hex[:8]}"
    texts = {
        "latin": ("Latin1_General_CI_AS", "café – € œ"),
        "cyr": ("Cyrillic_General_CI_AS", "Привет, ёжик"),
        "jp": ("Japanese_CI_AS", "日本語テキスト"),
        "cn": ("Chinese_PRC_CI_AS", "中文简体"),
        "utf8": ("Latin1_General_100_CI_AS_SC_UTF8", "😀 café 中文"),
    }
    columns = ", ".join(f"{name} varchar(100) COLLATE {coll}" for name, (coll, _) in texts.items())
    with mssql.connect() as conn:
        if not conn.execute(sa.text("SELECT is_cdc_enabled FROM sys.databases WHERE name = DB_NAME()")).scalar():
            conn.execute(sa.text("EXEC sys.sp_cdc_enable_db"))
        conn.execute(sa.text(f"CREATE TABLE dbo.{table} (id int PRIMARY KEY, {columns}, wide nvarchar(100))"))
        conn.execute(
            sa.text("EXEC sys.sp_cdc_enable_table @source_schema = N'dbo', @source_name = :t, @role_name = NULL"),
            {"t": table},
        )
        conn.execute(sa.text("EXEC sys.sp_cdc_scan @maxtrans = 500, @maxscans = 1, @continuous = 0"))
        start = Lsn.from_bytes(conn.execute(sa.text("SELECT sys.fn_cdc_get_max_lsn()")).scalar())
        values = ", ".join(f"N'{text}'" for _, text in texts.values())
        conn.execute(sa.text(f"INSERT INTO dbo.{table} VALUES (1, {values}, N'😀 𝄞 e\u0301')"))
        # 0x81 is undefined in cp1252: only a binary cast can store it
        conn.execute(
            sa.text(f"INSERT INTO dbo.{table} (id, latin, cyr) VALUES (2, CAST(0x6F6B81 AS varchar(10)), 'ok')")
        )
        conn.execute(sa.text("EXEC sys.sp_cdc_scan @maxtrans = 500, @maxscans = 1, @continuous = 0"))
    try:
        reader = Reader.for_tables(mssql, [TableId("dbo", table)], ReaderSettings())
        rows = [r for c in reader.windows(start) if isinstance(c, TxChunk) for r in c.rows]
        good, bad = rows
        assert good.fault is None
        assert good.values == (1, *(text for _, text in texts.values()), "😀 𝄞 e\u0301")
        assert bad.fault is not None
        assert "column latin (varchar)" in bad.fault
        assert "cp1252" in bad.fault
        assert bad.values[2] == "ok"
    finally:
        with mssql.connect() as conn:
            conn.execute(
                sa.text(
                    "EXEC sys.sp_cdc_disable_table @source_schema = N'dbo', @source_name = :t, "
                    "@capture_instance = N'all'"
                ),
                {"t": table},
            )
            conn.execute(sa.text(f"DROP TABLE dbo.{table}"))
