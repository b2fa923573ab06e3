"""``spatial: wkb`` end to end on the emulator (issue 17 point 5): streaming and a resync both store EWKB for the
configured table, and the other table keeps the native bytes.

The emulator has no spatial types (geography/geometry are bytea there) and no STAsBinary()/STSrid, so its
column holds here what SQL Server's ``CAST(col.STSrid AS BINARY(4)) + col.STAsBinary()`` returns; the T-SQL
itself is pinned by the snapshots (tests/unit/snapshots/*_wkb.sql) and only a real SQL Server runs it."""

from __future__ import annotations

import struct
import threading
from pathlib import Path

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


def test_wkb_tables_get_ewkb_from_streaming_and_resync_others_keep_native_bytes(
    emulated_source_url: str, target_url: str, tmp_path: Path
) -> None:
    src = connect(emulated_source_url)
    src.run("CREATE SCHEMA dbo")
    for table in ("places", "shapes"):
        src.run(f"CREATE TABLE dbo.{table} (id int PRIMARY KEY, g sys.geography)")
        enable_table(src, "dbo", table)
    src.run("INSERT INTO dbo.places VALUES (1, :g), (2, NULL)", g=AS_READ)
    src.run("INSERT INTO dbo.shapes VALUES (1, :g)", g=AS_READ)
    config = load_config(
        write_config(
            tmp_path / "p.yaml",
            emulated_source_url,
            target_url,
            [{"name": "dbo.places", "spatial": "wkb"}, "dbo.shapes"],
        )
    )

    Pipeline.from_config(config).run(threading.Event(), until_caught_up=True)

    dst = connect(target_url)
    assert dst.run("SELECT id, g FROM dbo.places ORDER BY id") == [[1, EWKB], [2, None]]
    assert dst.run("SELECT g FROM dbo.shapes") == [[AS_READ]]  # default: the bytes as stored, untouched

    dst.run("UPDATE dbo.places SET g = NULL")  # drift, so the resync has something to restore
    resync_table(config, "dbo.places")
    assert dst.run("SELECT id, g FROM dbo.places ORDER BY id") == [[1, EWKB], [2, None]]
    src.close()
    dst.close()
