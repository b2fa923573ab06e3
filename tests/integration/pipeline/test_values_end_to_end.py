"""Boundary values survive the whole path: emulated SQL Server → reader → applier → PostgreSQL (issue 3,
"every mapped type round-trips a boundary value"; TESTING.md "Values at their edges").

The sink's own tests cover each type mapping in depth with synthetic rows; this one proves the pieces agree
with each other, including the emulator's representation of SQL Server types.
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from mssql2pg.config import load_config
from mssql2pg.emulator import connect
from mssql2pg.pipeline.assembly import Pipeline
from tests.e2e.pipeline_process import write_config
from tests.fixtures.emulator import enable_table

pytestmark = pytest.mark.integration

COLUMNS = """
    id int PRIMARY KEY,
    c_tiny sys.tinyint, c_small smallint, c_int int, c_big bigint, c_bit boolean,
    c_dec numeric(38,10), c_money sys.money, c_smallmoney sys.smallmoney, c_real real, c_float double precision,
    c_date date, c_time time(6), c_dt2 timestamp(6), c_datetime sys.datetime, c_dto sys.datetimeoffset,
    c_nvarchar varchar(50), c_nvarmax text, c_bin bytea, c_uuid uuid, c_xml xml
"""

ROWS: list[dict[str, Any]] = [
    {
        "id": 1,
        "c_tiny": 255,
        "c_small": 32767,
        "c_int": 2147483647,
        "c_big": 9223372036854775807,
        "c_bit": True,
        "c_dec": Decimal("9999999999999999999999999999.9999999999"),
        "c_money": Decimal("922337203685477.5807"),
        "c_smallmoney": Decimal("214748.3647"),
        "c_real": 3.5,
        "c_float": 1.7976931348623157e308,
        "c_date": dt.date(9999, 12, 31),
        "c_time": dt.time(23, 59, 59, 999999),
        "c_dt2": dt.datetime(9999, 12, 31, 23, 59, 59, 999999),
        "c_datetime": dt.datetime(2026, 3, 29, 2, 30, 0, 3000),
        "c_dto": "2026-03-29 01:30:00.1234567 +11:00",
        "c_nvarchar": "𝄞 e\u0301 שלום ☃",
        "c_nvarmax": "x" * 100_000,
        "c_bin": b"\x00\xff\x00",
        "c_uuid": uuid.UUID("6f9619ff-8b86-d011-b42d-00c04fc964ff"),
        "c_xml": "<a b='1'>é</a>",
    },
    {
        "id": 2,
        "c_tiny": 0,
        "c_small": -32768,
        "c_int": -2147483648,
        "c_big": -9223372036854775808,
        "c_bit": False,
        "c_dec": Decimal("-0.0000000001"),
        "c_money": Decimal("-922337203685477.5808"),
        "c_smallmoney": Decimal("-214748.3648"),
        "c_real": -0.0,
        "c_float": 5e-324,
        "c_date": dt.date(1, 1, 1),
        "c_time": dt.time(0, 0),
        "c_dt2": dt.datetime(1, 1, 1),
        "c_datetime": dt.datetime(1753, 1, 1),
        "c_dto": "0001-01-01 00:00:00 -14:00",
        "c_nvarchar": "",
        "c_nvarmax": "",
        "c_bin": b"",
        "c_uuid": uuid.UUID(int=0),
        "c_xml": "<empty/>",
    },
    {"id": 3, **dict.fromkeys(ROWS_KEYS)}
    if (
        ROWS_KEYS := [
            "c_tiny",
            "c_small",
            "c_int",
            "c_big",
            "c_bit",
            "c_dec",
            "c_money",
            "c_smallmoney",
            "c_real",
            "c_float",
            "c_date",
            "c_time",
            "c_dt2",
            "c_datetime",
            "c_dto",
            "c_nvarchar",
            "c_nvarmax",
            "c_bin",
            "c_uuid",
            "c_xml",
        ]
    )
    else {},
]


@pytest.mark.libxml
def test_boundary_values_of_every_mapped_type_arrive_exactly(
    emulated_source_url: str, target_url: str, tmp_path: Path
) -> None:
    src = connect(emulated_source_url)
    src.run("CREATE SCHEMA dbo")
    src.run(f"CREATE TABLE dbo.edge ({COLUMNS})")
    enable_table(src, "dbo", "edge")
    names = list(ROWS[0])
    insert = f"INSERT INTO dbo.edge ({', '.join(names)}) VALUES ({', '.join(':' + n for n in names)})"
    src.run("BEGIN")
    for row in ROWS:
        src.run(insert, **row)
    src.run("COMMIT")
    src.run("UPDATE dbo.edge SET c_nvarchar = 'changed 𝄞' WHERE id = 2")  # an update pair, not only inserts
    config = load_config(write_config(tmp_path / "p.yaml", emulated_source_url, target_url, ["dbo.edge"]))

    Pipeline.from_config(config).run(threading.Event(), until_caught_up=True)

    dst = connect(target_url)
    cols = [n for n in names if n not in ("c_dto", "c_xml")]
    expected = src.run(f"SELECT {', '.join(cols)} FROM dbo.edge ORDER BY id")
    actual = dst.run(f"SELECT {', '.join(cols)} FROM dbo.edge ORDER BY id")

    assert actual == expected
    assert actual[1][cols.index("c_nvarchar")] == "changed 𝄞"
    assert actual[2][1:] == [None] * (len(cols) - 1)  # NULL stays NULL
    assert actual[1][cols.index("c_nvarmax")] == ""  # and '' stays ''
    # datetimeoffset: the instant in a timestamptz column, the original offset kept beside it
    instant, offset = dst.run("SELECT c_dto, c_dto_offset FROM dbo.edge WHERE id = 1")[0]
    assert instant == dt.datetime(2026, 3, 28, 14, 30, 0, 123456, tzinfo=dt.UTC)
    assert offset == 11 * 60
    assert dst.run("SELECT c_xml::text FROM dbo.edge WHERE id = 1") == [["<a b='1'>é</a>"]]
    src.close()
    dst.close()
