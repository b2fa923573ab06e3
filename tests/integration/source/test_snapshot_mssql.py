"""Table snapshots against a real SQL Server (only where ``MSSQL2PG_TEST_MSSQL_URL`` points at one; skipped here).

What only a real SQL Server shows for issue 17 points 4-5 on the snapshot side: the initial snapshot's keyset
pages and a resync's streamed read select character columns as bytes and spatial columns as SRID + WKB, decode
them as the streaming reader does, and a page continues after a ``varchar`` key in a UTF-8 collation (non-ASCII)
compared in that collation, neither skipping nor repeating a row. Same database requirements as
``test_reader_mssql.py``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from mssql2pg.model import TableId, TxChunk
from mssql2pg.positions import Lsn
from mssql2pg.source import Reader, ReaderSettings
from mssql2pg.source.catalog import load_capture_instances
from mssql2pg.source.snapshot import read_page, read_snapshot
from mssql2pg.source.values import with_spatial_as_wkb

pytestmark = [pytest.mark.integration, pytest.mark.mssql]

EWKB = bytes.fromhex("0101000020E6100000000000000000F03F0000000000000040")  # SRID=4326;POINT(1 2)
WORDS = ["apple", "Äpfel", "café", "naïve", "zebra", "ß", "Привет", "ёж", "日本語", "中文", "😀 emoji"]


@pytest.fixture
def mssql(mssql_url: str) -> Iterator[sa.Engine]:
    engine = sa.create_engine(mssql_url, isolation_level="AUTOCOMMIT")
    yield engine
    engine.dispose()


def test_snapshot_pages_and_resync_read_like_streaming(mssql: sa.Engine) -> None:
    table = f"snap_{uuid.uuid4().hex[:8]}"
    with mssql.connect() as conn:
        if not conn.execute(sa.text("SELECT is_cdc_enabled FROM sys.databases WHERE name = DB_NAME()")).scalar():
            conn.execute(sa.text("EXEC sys.sp_cdc_enable_db"))
        conn.execute(
            sa.text(
                f"CREATE TABLE dbo.{table} (word varchar(40) COLLATE Latin1_General_100_CI_AS_SC_UTF8 PRIMARY KEY, "
                "ru varchar(40) COLLATE Cyrillic_General_CI_AS, g geography)"
            )
        )
        conn.execute(
            sa.text("EXEC sys.sp_cdc_enable_table @source_schema = N'dbo', @source_name = :t, @role_name = NULL"),
            {"t": table},
        )
        conn.execute(sa.text("EXEC sys.sp_cdc_scan @maxtrans = 500, @maxscans = 1, @continuous = 0"))
        start = Lsn.from_bytes(conn.execute(sa.text("SELECT sys.fn_cdc_get_max_lsn()")).scalar())
        for word in WORDS:
            conn.execute(
                sa.text(f"INSERT INTO dbo.{table} VALUES (:w, N'Ёжик', geography::Point(2, 1, 4326))"), {"w": word}
            )
        conn.execute(sa.text("EXEC sys.sp_cdc_scan @maxtrans = 500, @maxscans = 1, @continuous = 0"))
        (ci,) = [c for c in load_capture_instances(conn) if c.source == TableId("dbo", table)]
    ci = with_spatial_as_wkb(ci)
    try:
        reader = Reader.for_tables(mssql, [TableId("dbo", table)], ReaderSettings(spatial_wkb=frozenset([ci.source])))
        streamed = sorted(r.values for c in reader.windows(start) if isinstance(c, TxChunk) for r in c.rows)
        assert len(streamed) == len(WORDS)
        assert {v[0] for v in streamed} == set(WORDS)
        assert all(v[1:] == ("Ёжик", EWKB) for v in streamed)

        paged: list[tuple[object, ...]] = []
        after = None
        while True:  # pages of 2: every page after the first continues after a non-ASCII key
            page = read_page(mssql, ci, start, after, 2)
            assert all(r.fault is None for r in page.rows)
            paged += [r.values for r in page.rows]
            if page.final:
                break
            after = page.last_key
        assert sorted(paged) == streamed  # none skipped, none repeated

        with read_snapshot(mssql, ci, page_rows=3) as snapshot:
            resynced = sorted(r.values for c in snapshot.chunks for r in c.rows)
        assert resynced == streamed
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
