"""Spatial columns read as WKB with SRID (issue 17 point 5): the value ``CAST(col.STSrid AS BINARY(4)) +
col.STAsBinary()`` the source computes becomes PostGIS EWKB; the default (native serialization) is unchanged."""

from __future__ import annotations

import struct

import pytest
import sqlalchemy as sa

from mssql2pg.config import Config, spatial_wkb_tables
from mssql2pg.model import CaptureInstance, SourceColumn, TableId
from mssql2pg.positions import Lsn
from mssql2pg.source.reader import Reader, ReaderSettings, SqlBackend
from mssql2pg.source.validation import decode_row
from mssql2pg.source.values import RowDecoder, column_decoder, with_spatial_as_wkb, wkb_columns

POINT_LE = bytes.fromhex("0101000000") + struct.pack("<dd", 1.0, 2.0)  # OGC WKB POINT(1 2), little-endian
POINT_BE = bytes.fromhex("0000000001") + struct.pack(">dd", 1.0, 2.0)
# PostGIS: SELECT ST_AsEWKB('SRID=4326;POINT(1 2)'::geometry)
EWKB_4326 = bytes.fromhex("0101000020E6100000000000000000F03F0000000000000040")


def srid_wkb(srid: int, wkb: bytes) -> bytes:
    return srid.to_bytes(4, "big", signed=True) + wkb  # what CAST(STSrid AS BINARY(4)) + STAsBinary() gives


def wkb_column(sql_type: str = "geography") -> SourceColumn:
    return SourceColumn("g", 2, sql_type, as_wkb=True)


@pytest.mark.parametrize("sql_type", ["geography", "geometry"])
def test_srid_and_wkb_become_ewkb(sql_type: str) -> None:
    assert column_decoder(wkb_column(sql_type))(srid_wkb(4326, POINT_LE)) == EWKB_4326


def test_big_endian_wkb_keeps_its_byte_order() -> None:
    ewkb = column_decoder(wkb_column())(srid_wkb(3857, POINT_BE))
    assert ewkb == bytes.fromhex("0020000001") + (3857).to_bytes(4, "big") + struct.pack(">dd", 1.0, 2.0)


def test_a_collection_gets_the_srid_once_at_the_top() -> None:
    collection = bytes.fromhex("010700000001000000") + POINT_LE  # GEOMETRYCOLLECTION(POINT(1 2))
    ewkb = column_decoder(wkb_column("geometry"))(srid_wkb(0, collection))
    assert ewkb == bytes.fromhex("0107000020") + (0).to_bytes(4, "little") + bytes.fromhex("01000000") + POINT_LE


def test_the_default_stays_the_native_serialization() -> None:
    native = bytes.fromhex("E6100000010C0000000000000040000000000000F03F")  # SQL Server's own POINT
    assert column_decoder(SourceColumn("g", 2, "geography"))(native) == native


def _instance() -> CaptureInstance:
    return CaptureInstance(
        name="dbo_places",
        source=TableId("dbo", "places"),
        start_lsn=Lsn.from_int(1),
        columns=(SourceColumn("id", 1, "int"), SourceColumn("g", 2, "geography"), SourceColumn("s", 3, "geometry")),
        key_columns=("id",),
    )


def test_only_spatial_columns_are_switched() -> None:
    ci = with_spatial_as_wkb(_instance())
    assert [c.as_wkb for c in ci.columns] == [False, True, True]
    assert wkb_columns(ci) == {"g", "s"}
    assert wkb_columns(_instance()) == frozenset()


def test_a_value_that_is_not_srid_and_wkb_is_a_fault_naming_the_column() -> None:
    ci = with_spatial_as_wkb(_instance())
    values, fault = decode_row(ci, RowDecoder(ci.columns), (1, b"\x00\x00", None))
    assert values == (1, b"\x00\x00", None)
    assert fault is not None
    assert "column g (geography)" in fault


def _config(**extra: object) -> Config:
    return Config.model_validate({"source": {"url": "mssql://u@h/d"}, "target": {"url": "postgresql://u@h/d"}, **extra})


def test_spatial_option_by_table_entry_and_default() -> None:
    places, roads, other = TableId("dbo", "places"), TableId("gis", "roads"), TableId("dbo", "orders")
    config = _config(tables=[{"name": "dbo.places", "spatial": "wkb"}, {"name": "gis.*", "spatial": "wkb"}, "dbo.*"])
    assert spatial_wkb_tables(config, [places, roads, other]) == {places, roads}
    assert spatial_wkb_tables(_config(tables=["*.*"]), [places]) == frozenset()  # default: native, lossless
    everything = _config(tables=["*.*", {"name": "dbo.places", "spatial": "native"}], defaults={"spatial": "wkb"})
    assert spatial_wkb_tables(everything, [places, roads]) == {roads}


def test_the_reader_reads_the_configured_tables_spatial_columns_as_wkb() -> None:
    ci = _instance()
    reader = Reader(lambda: iter(()), [ci], ReaderSettings(spatial_wkb=frozenset({ci.source})))  # type: ignore[arg-type,return-value]
    (read,) = reader._instances[ci.source]
    assert wkb_columns(read) == {"g", "s"}
    plain = Reader(lambda: iter(()), [ci], ReaderSettings())  # type: ignore[arg-type,return-value]
    assert wkb_columns(plain._instances[ci.source][0]) == frozenset()


class _Result:
    def all(self) -> list[object]:
        return []


class _Conn:
    """Captures the statement the backend runs."""

    def __init__(self) -> None:
        self.statements: list[object] = []

    def execute(self, stmt: object, params: object = None) -> _Result:
        self.statements.append(stmt)
        return _Result()


def test_the_change_table_query_reads_wkb_and_raw_text_as_configured() -> None:
    ci = with_spatial_as_wkb(
        CaptureInstance(
            name="dbo_places",
            source=TableId("dbo", "places"),
            start_lsn=Lsn.from_int(1),
            columns=(
                SourceColumn("id", 1, "int"),
                SourceColumn("name", 2, "varchar", collation="Cyrillic_General_CI_AS"),
                SourceColumn("g", 3, "geography"),
            ),
            key_columns=("id",),
        )
    )
    conn = _Conn()
    SqlBackend(conn).change_page(ci, Lsn.from_int(1), Lsn.from_int(2), 10)  # type: ignore[arg-type]
    tsql = str(conn.statements[0].compile(dialect=sa.create_engine("mssql+pytds://u@h/d").dialect))  # type: ignore[attr-defined]
    assert "CAST(cdc_data.[name] AS VARBINARY(MAX)) AS [name]" in tsql
    assert "CAST(cdc_data.[g].STSrid AS BINARY(4)) + cdc_data.[g].STAsBinary() AS [g]" in tsql
    assert "cdc_data.[id]," in tsql
