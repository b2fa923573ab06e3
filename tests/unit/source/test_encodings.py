"""Character data at the decoder boundary (issue 17 point 4): raw bytes in each collation's code page, UTF-16
for the N-types, and a byte sequence invalid in its encoding as a fault naming the column (never mojibake,
never a replacement character, never an exception out of the reader)."""

from __future__ import annotations

import pytest

from mssql2pg.model import CaptureInstance, SourceColumn, TableId
from mssql2pg.positions import Lsn
from mssql2pg.source.catalog import source_column
from mssql2pg.source.validation import decode_row
from mssql2pg.source.values import RowDecoder, code_page, column_decoder, raw_codec, raw_columns

# collation, its code page, text that needs that code page (stored by SQL Server as these bytes)
CODE_PAGES = [
    ("SQL_Latin1_General_CP1_CI_AS", "cp1252", "café – € œ ÿ"),
    ("Latin1_General_CI_AS", "cp1252", "Müller naïve £5"),
    ("Cyrillic_General_CI_AS", "cp1251", "Привет, ёжик Ґ"),
    ("Japanese_CI_AS", "cp932", "日本語テキスト ｶﾀｶﾅ ①"),
    ("Japanese_XJIS_140_CI_AS", "cp932", "東京"),
    ("Chinese_PRC_CI_AS", "cp936", "中文简体 汉字"),
    ("Latin1_General_100_CI_AS_SC_UTF8", "utf-8", "😀 café 中文 Привет e\u0301"),
]


@pytest.mark.parametrize(("collation", "codec", "text"), CODE_PAGES)
def test_varchar_bytes_in_the_collations_code_page_decode_to_the_same_characters(
    collation: str, codec: str, text: str
) -> None:
    stored = text.encode(codec)
    for sql_type in ("varchar", "char", "text"):
        column = SourceColumn("c", 1, sql_type, collation=collation)
        assert code_page(collation) == codec
        assert raw_codec(column) == codec
        assert column_decoder(column)(stored) == text
        assert column_decoder(column)(bytearray(stored)) == text


def test_the_code_page_is_the_collations_not_the_first_one_that_would_decode() -> None:
    # The same two bytes are different characters in cp1252 and cp1251: only the collation can tell.
    stored = b"\xc0\xe9"
    assert column_decoder(SourceColumn("c", 1, "varchar", collation="Latin1_General_CI_AS"))(stored) == "Àé"
    assert column_decoder(SourceColumn("c", 1, "varchar", collation="Cyrillic_General_CI_AS"))(stored) == "Ай"


@pytest.mark.parametrize(
    ("collation", "expected"),
    [
        ("SQL_Latin1_General_CP1250_CI_AS", "cp1250"),
        ("SQL_Ukrainian_Cp1251_CS_AS", "cp1251"),
        ("SQL_Latin1_General_CP437_BIN", "cp437"),
        ("Korean_Wansung_CI_AS", "cp949"),
        ("Chinese_Taiwan_Stroke_CI_AS", "cp950"),
        ("Polish_100_CS_AS", "cp1250"),
        ("Greek_CI_AI_KS_WS", "cp1253"),
        ("Latin1_General_BIN2", "cp1252"),
        ("Latin1_General_100_BIN2_UTF8", "utf-8"),
        ("Indic_General_100_CI_AS", None),  # Unicode-only: no code page, left to the driver
        ("Klingon_CI_AS", None),
        (None, None),
    ],
)
def test_code_page_of_collation_names(collation: str | None, expected: str | None) -> None:
    assert code_page(collation) == expected


@pytest.mark.parametrize("sql_type", ["nvarchar", "nchar", "ntext", "sysname"])
def test_nvarchar_is_utf16_with_surrogate_pairs(sql_type: str) -> None:
    text = "😀 𝄞 𠜎 e\u0301 שלום"  # three characters outside the BMP: surrogate pairs in UTF-16
    stored = text.encode("utf-16-le")
    assert b"\x3d\xd8\x00\xde" in stored  # U+1F600 as the pair D83D DE00
    column = SourceColumn("c", 1, sql_type, collation="Latin1_General_CI_AS")  # the collation does not matter
    assert raw_codec(column) == "utf-16-le"
    assert column_decoder(column)(stored) == text


def test_text_the_driver_already_decoded_passes_unchanged() -> None:
    # The emulator (pg8000) delivers str; it must not be re-encoded or checked against a code page.
    for collation in ("Cyrillic_General_CI_AS", None):
        assert column_decoder(SourceColumn("c", 1, "varchar", collation=collation))("Привет 😀") == "Привет 😀"
    assert column_decoder(SourceColumn("c", 1, "nvarchar"))("😀") == "😀"


def test_an_unknown_collation_is_not_read_as_bytes() -> None:
    column = SourceColumn("c", 1, "varchar", collation="Indic_General_100_CI_AS")
    assert raw_codec(column) is None
    assert raw_codec(SourceColumn("n", 1, "int")) is None
    ci = _instance(column, SourceColumn("w", 2, "nvarchar"), SourceColumn("k", 3, "int"))
    assert raw_columns(ci) == {"w"}


INVALID = [
    ("Latin1_General_CI_AS", b"ok \x81", "cp1252", "0x81"),  # undefined in cp1252
    ("Cyrillic_General_CI_AS", b"\x98", "cp1251", "0x98"),  # undefined in cp1251
    ("Japanese_CI_AS", b"\x82\xa0\x81", "cp932", "0x81"),  # a lead byte without its trail byte
    ("Chinese_PRC_CI_AS", b"\xd6\xd0\xff", "cp936", "0xFF"),
    ("Latin1_General_100_CI_AS_SC_UTF8", b"caf\xc3\x28", "utf-8", "0xC3"),
]


@pytest.mark.parametrize(("collation", "stored", "codec", "bad"), INVALID)
def test_bytes_invalid_in_the_code_page_are_refused_not_replaced(
    collation: str, stored: bytes, codec: str, bad: str
) -> None:
    decode = column_decoder(SourceColumn("c", 1, "varchar", collation=collation))
    with pytest.raises(ValueError, match=f"invalid {codec} byte sequence {bad}"):
        decode(stored)


def test_a_lone_surrogate_in_nvarchar_is_refused() -> None:
    decode = column_decoder(SourceColumn("c", 1, "nvarchar"))
    with pytest.raises(ValueError, match="invalid utf-16-le byte sequence"):
        decode("a".encode("utf-16-le") + b"\x3d\xd8")  # high surrogate D83D with nothing after it


def _instance(*columns: SourceColumn) -> CaptureInstance:
    return CaptureInstance(
        name="dbo_names",
        source=TableId("dbo", "names"),
        start_lsn=Lsn.from_int(1),
        columns=tuple(columns),
        key_columns=(columns[0].name,),
    )


def test_an_invalid_value_makes_the_row_a_fault_naming_the_column_and_keeps_the_rest() -> None:
    ci = _instance(
        SourceColumn("id", 1, "int"),
        SourceColumn("ru", 2, "varchar", collation="Cyrillic_General_CI_AS"),
        SourceColumn("jp", 3, "varchar", collation="Japanese_CI_AS"),
        SourceColumn("wide", 4, "nvarchar"),
    )
    good = (7, "ёж".encode("cp1251"), "日本".encode("cp932"), "😀".encode("utf-16-le"))
    assert decode_row(ci, RowDecoder(ci.columns), good) == ((7, "ёж", "日本", "😀"), None)

    bad = (7, "ёж".encode("cp1251"), b"\x82", "😀".encode("utf-16-le"))
    values, fault = decode_row(ci, RowDecoder(ci.columns), bad)
    assert values == (7, "ёж", b"\x82", "😀")  # the refused value is kept as its raw bytes for the dead letter
    assert fault is not None
    assert "dbo.names" in fault
    assert "column jp (varchar)" in fault
    assert "invalid cp932 byte sequence 0x82" in fault
    assert "column ru" not in fault
    assert "column wide" not in fault


def test_the_catalog_reads_the_collation_of_a_column() -> None:
    row = {
        "object_id": 7,
        "column_name": "name",
        "column_id": 2,
        "column_ordinal": 2,
        "column_type": "varchar",
        "type_name": "varchar",
        "max_length": 40,
        "precision": 0,
        "scale": 0,
        "is_nullable": True,
        "collation_name": "Cyrillic_General_CI_AS",
    }
    assert source_column(row).collation == "Cyrillic_General_CI_AS"
    assert source_column({**row, "collation_name": None}).collation is None
    del row["collation_name"]  # a catalog without the column (older emulator) still loads
    assert source_column(row).collation is None
