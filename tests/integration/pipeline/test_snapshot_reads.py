"""Table snapshots give the same rows as streaming (issue 17 points 4-5, the snapshot side): a table keyed by
non-ASCII ``varchar`` text, with a ``spatial: wkb`` geography column, loaded by the initial snapshot (in keyset
pages of 3, so pages continue after non-ASCII keys) and by a resync, equals the same rows streamed.

The emulator stores UTF-8 text and its geography column holds what SQL Server's ``CAST(g.STSrid AS BINARY(4)) +
g.STAsBinary()`` returns, so this proves the snapshot paths select and decode like the streaming reader; the
T-SQL each path sends (bytes in the collation's code page, SRID + WKB, the key compared in its collation) is
pinned by the snapshots of ``tests/unit/source`` and only a real SQL Server runs it."""

from __future__ import annotations

import struct
import threading
from pathlib import Path
from typing import Any

import pg8000.native
import pytest

from mssql2pg.config import load_config
from mssql2pg.emulator import connect
from mssql2pg.pipeline.assembly import Pipeline
from mssql2pg.pipeline.resync import resync_table
from tests.e2e.pipeline_process import write_config
from tests.fixtures.emulator import enable_table

pytestmark = pytest.mark.integration

POINT = bytes.fromhex("0101000000") + struct.pack("<dd", 1.0, 2.0)
AS_READ = (4326).to_bytes(4, "big") + POINT  # SRID + WKB, as the source expression returns it
EWKB = bytes.fromhex("0101000020E6100000000000000000F03F0000000000000040")  # SRID=4326;POINT(1 2)

WORDS = ["apple", "Äpfel", "café", "cafe\u0301", "naïve", "zebra", "ß", "Привет", "ёж", "日本語", "中文", "😀 emoji"]
ROWS = [(w, f"{w} – «{i}» €", AS_READ if i % 3 else None) for i, w in enumerate(WORDS)]
TABLE = "(word varchar(40) PRIMARY KEY, note text, g sys.geography)"


def _insert(src: pg8000.native.Connection, table: str) -> None:
    for word, note, g in ROWS:
        src.run(f"INSERT INTO dbo.{table} VALUES (:w, :n, :g)", w=word, n=note, g=g)


def _rows(dst: pg8000.native.Connection, table: str) -> list[list[Any]]:
    return sorted(dst.run(f"SELECT word, note, g FROM dbo.{table}"), key=lambda r: r[0])


def test_initial_snapshot_and_resync_store_the_same_rows_as_streaming(
    emulated_source_url: str, target_url: str, tmp_path: Path
) -> None:
    src = connect(emulated_source_url)
    dst = connect(target_url)
    src.run("CREATE SCHEMA dbo")
    src.run(f"CREATE TABLE dbo.streamed {TABLE}")
    enable_table(src, "dbo", "streamed")
    src.run(f"CREATE TABLE dbo.loaded {TABLE}")
    _insert(src, "loaded")  # before CDC: only a snapshot can bring these rows
    enable_table(src, "dbo", "loaded")
    entries: list[object] = [{"name": "dbo.streamed", "spatial": "wkb"}]
    first = write_config(tmp_path / "a.yaml", emulated_source_url, target_url, entries, snapshot={"chunk_rows": 3})
    Pipeline.from_config(load_config(first)).run(threading.Event(), until_caught_up=True)  # empty: nothing to load
    _insert(src, "streamed")  # after the pipeline's start: these rows stream
    Pipeline.from_config(load_config(first)).run(threading.Event(), until_caught_up=True)
    streamed = _rows(dst, "streamed")
    assert streamed == sorted([[w, n, EWKB if g else None] for w, n, g in ROWS], key=lambda r: str(r[0]))
    assert dst.run("SELECT count(*) FROM mssql2pg.snapshots WHERE rows_loaded > 0")[0][0] == 0

    entries.append({"name": "dbo.loaded", "spatial": "wkb"})
    both = load_config(
        write_config(tmp_path / "b.yaml", emulated_source_url, target_url, entries, snapshot={"chunk_rows": 3})
    )
    Pipeline.from_config(both).run(threading.Event(), until_caught_up=True)

    assert dst.run("SELECT state, rows_loaded FROM mssql2pg.snapshots WHERE source_table = 'dbo.loaded'") == [
        ["done", len(ROWS)]
    ]
    assert _rows(dst, "loaded") == streamed
    assert dst.run("SELECT count(*) FROM mssql2pg.dead_letters")[0][0] == 0

    dst.run("UPDATE dbo.loaded SET note = 'drift', g = NULL")  # so the resync has something to restore
    resync_table(both, "dbo.loaded")
    assert _rows(dst, "loaded") == streamed
    resync_table(both, "dbo.streamed")
    assert _rows(dst, "streamed") == streamed
    src.close()
    dst.close()
