"""Reconcile compares non-ASCII text and ``spatial: wkb`` tables as the pipeline stores them (issue 17 points 4-5,
the reconcile side): a table keyed by non-ASCII ``varchar`` text with a geography column read as EWKB is
consistent after replication, a real difference in text or geometry is still found with its key, and
``--repair`` rewrites the keys with the same values streaming writes (EWKB, the same characters).

The emulator stores UTF-8 text and its geography column holds what SQL Server's ``CAST(g.STSrid AS BINARY(4)) +
g.STAsBinary()`` returns; the T-SQL of the source side is pinned by ``tests/unit/snapshots/reconcile``. The
target side's canonical encoding of EWKB is checked here on PostgreSQL with raw bytes in both byte orders."""

from __future__ import annotations

import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pg8000.native
import pytest
import sqlalchemy as sa

from mssql2pg.config import Config, load_config
from mssql2pg.emulator import connect
from mssql2pg.model import SourceColumn
from mssql2pg.pipeline.assembly import Pipeline
from mssql2pg.reconcile.canonical import FieldSpec, pg_field, pg_wkb_as_read
from mssql2pg.reconcile.run import Settings, reconcile
from mssql2pg.reconcile.target import compile_for_target
from mssql2pg.source.values import column_decoder
from tests.e2e.pipeline_process import write_config
from tests.fixtures.emulator import enable_table

pytestmark = pytest.mark.integration


def _as_read(srid: int, x: float, y: float) -> bytes:
    """SRID (big-endian) + OGC WKB of a point, little-endian: what the source expression returns."""
    return srid.to_bytes(4, "big") + bytes.fromhex("0101000000") + struct.pack("<dd", x, y)


def _ewkb_big_endian(srid: int, x: float, y: float) -> bytes:
    return bytes([0]) + (0x20000001).to_bytes(4, "big") + srid.to_bytes(4, "big") + struct.pack(">dd", x, y)


WORDS = ["apple", "Äpfel", "café", "naïve", "ß", "Привет", "ёж", "日本語", "中文", "😀 emoji", "e\u0301"]


def _g(i: int) -> bytes | None:
    return _as_read(4326 if i % 2 else 3857, float(i), -float(i)) if i % 4 else None


@pytest.fixture
def words(emulated_source_url: str, target_url: str, tmp_path: Path) -> Iterator[tuple[Config, Any, Any]]:
    src = connect(emulated_source_url)
    dst = connect(target_url)
    src.run("CREATE SCHEMA dbo")
    src.run("CREATE TABLE dbo.words (word varchar(40) PRIMARY KEY, note text, g sys.geography)")
    enable_table(src, "dbo", "words")
    for i, word in enumerate(WORDS):
        src.run("INSERT INTO dbo.words VALUES (:w, :n, :g)", w=word, n=f"{word} – «{i}» €", g=_g(i))
    path = write_config(tmp_path / "p.yaml", emulated_source_url, target_url, [{"name": "dbo.words", "spatial": "wkb"}])
    config = load_config(path)
    Pipeline.from_config(config).run(threading.Event(), until_caught_up=True)
    yield config, src, dst
    src.close()
    dst.close()


def _rows(dst: pg8000.native.Connection) -> list[list[Any]]:
    return sorted(dst.run("SELECT word, note, g FROM dbo.words"), key=lambda r: r[0])


def test_a_replicated_table_of_non_ascii_text_and_wkb_spatial_is_consistent(
    words: tuple[Config, Any, Any],
) -> None:
    config, _src, dst = words
    assert dst.run("SELECT g FROM dbo.words WHERE word = 'Äpfel'")[0][0][:5] == bytes.fromhex("0101000020")  # EWKB

    (report,) = reconcile(config, settings=Settings(settle_seconds=5))

    assert (report.status, report.error, report.differing) == ("consistent", None, 0), report
    assert report.source_rows == report.target_rows == len(WORDS)


def test_a_real_difference_in_text_or_geometry_is_found_with_its_key_and_repaired_as_streaming_writes(
    words: tuple[Config, Any, Any],
) -> None:
    config, _src, dst = words
    streamed = _rows(dst)
    dst.run("UPDATE dbo.words SET note = 'Привет – «5» €!' WHERE word = 'Привет'")  # one character more
    dst.run("UPDATE dbo.words SET g = :g WHERE word = 'café'", g=_as_read(4326, 9.0, 9.0))  # not EWKB
    dst.run("UPDATE dbo.words SET g = decode('0101000020e6100000', 'hex') || substring(g from 10) WHERE word = 'ёж'")
    dst.run("DELETE FROM dbo.words WHERE word = '日本語'")

    (found,) = reconcile(config, settings=Settings(settle_seconds=5))

    assert found.status == "inconsistent"
    assert found.missing == [{"word": "日本語"}]
    assert sorted(k["word"] for k in found.different) == sorted(["Привет", "café", "ёж"])  # ёж: SRID 3857 -> 4326

    (repaired,) = reconcile(config, settings=Settings(settle_seconds=5, repair=True))

    assert (repaired.status, repaired.repaired) == ("consistent", 4), repaired
    assert _rows(dst) == streamed  # the same EWKB and the same characters as streaming wrote


@pytest.mark.parametrize(
    "stored",
    [
        bytes.fromhex("0101000020E6100000000000000000F03F0000000000000040"),  # little-endian EWKB
        _ewkb_big_endian(4326, 1.0, 2.0),
    ],
)
def test_the_targets_ewkb_encodes_as_the_sources_srid_and_wkb(target_url: str, stored: bytes) -> None:
    """The canonical field of a ``spatial: wkb`` column is the hex of what the source expression returns (SRID
    big-endian, then the WKB); the target turns its EWKB back into that, in either byte order."""
    expected = (4326).to_bytes(4, "big") + stored[:1] + (1).to_bytes(4, "big" if stored[0] == 0 else "little")
    expected += stored[9:]
    value = sa.cast(sa.bindparam("v"), sa.LargeBinary)
    stmt = sa.select(pg_field(pg_wkb_as_read(value), FieldSpec("bytes")))
    text, params = compile_for_target(stmt, {"v": stored})
    dst = connect(target_url)
    try:
        assert dst.run(text, **params)[0][0] == expected.hex()
        short = compile_for_target(sa.select(pg_wkb_as_read(value)), {"v": b"\x01\x02"})
        assert bytes(dst.run(short[0], **short[1])[0][0]) == b"\x01\x02"  # not EWKB: compared as it is
    finally:
        dst.close()


@pytest.mark.parametrize(
    ("collation", "codec", "text"),
    [
        ("Latin1_General_CI_AS", "cp1252", "café – € œ"),
        ("Cyrillic_General_CI_AS", "cp1251", "Привет, ёжик"),
        ("Japanese_CI_AS", "cp932", "日本語テキスト ｶﾀｶﾅ"),
        ("Chinese_PRC_CI_AS", "cp936", "中文简体"),
        ("Latin1_General_100_CI_AS_SC_UTF8", "utf-8", "😀 e\u0301 中文"),
    ],
)
def test_code_page_text_stored_by_the_pipeline_encodes_as_the_source_encodes_the_column(
    target_url: str, collation: str, codec: str, text: str
) -> None:
    """The source's canonical field of a character column is the UTF-8 length and the characters of
    ``CAST(col AS NVARCHAR(MAX))`` (SQL Server converts from the column's code page; pinned in the T-SQL
    snapshots). The target stores what the reader decoded from the raw bytes; its canonical field must be
    exactly that text too, for each code page."""
    stored = column_decoder(SourceColumn("c", 1, "varchar", collation=collation))(text.encode(codec))
    stmt = sa.select(pg_field(sa.cast(sa.bindparam("v"), sa.Text), FieldSpec("text")))
    sql, params = compile_for_target(stmt, {"v": stored})
    dst = connect(target_url)
    try:
        assert dst.run(sql, **params)[0][0] == f"{len(text.encode('utf-8'))}:{text}"
    finally:
        dst.close()
