"""Encoders and the type mapping, without a database: COPY escaping, refusals, property-based round trips."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mssql2pg.model import SourceColumn, TableId
from mssql2pg.sink.types import UnstorableValueError, UnsupportedTypeError, codec_for, copy_text


def decode_copy_field(text: str) -> str | None:
    """A reference decoder of one COPY text field (what PostgreSQL does on input)."""
    if text == "\\N":
        return None
    out: list[str] = []
    i = 0
    escapes = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\"}
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            out.append(escapes[text[i + 1]])
            i += 2
        else:
            assert ch not in "\t\n\r"
            out.append(ch)
            i += 1
    return "".join(out)


no_nul_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))


@given(no_nul_text)
def test_copy_text_round_trips_any_text_without_nul(value: str) -> None:
    encoded = copy_text(value)
    assert "\t" not in encoded
    assert "\n" not in encoded
    assert decode_copy_field(encoded) == value


@given(no_nul_text, st.integers(min_value=0, max_value=50))
def test_copy_text_refuses_nul_anywhere(value: str, at: int) -> None:
    at = min(at, len(value))
    codec = codec_for(SourceColumn("c", 1, "nvarchar", max_length=-1))
    with pytest.raises(UnstorableValueError, match="NUL"):
        codec.encode(value[:at] + "\x00" + value[at:])


def test_unpaired_surrogate_is_refused_not_mangled() -> None:
    codec = codec_for(SourceColumn("c", 1, "nvarchar", max_length=-1))
    with pytest.raises(UnstorableValueError, match="surrogate"):
        codec.encode("a\ud800b")


@given(st.integers(min_value=1, max_value=38).flatmap(lambda p: st.tuples(st.just(p), st.integers(0, p))), st.data())
def test_decimal_encoder_accepts_every_value_of_its_type_exactly(ps: tuple[int, int], data: st.DataObject) -> None:
    precision, scale = ps
    limit = 10**precision - 1
    unscaled = data.draw(st.integers(-limit, limit))
    # built exactly (scaleb would round to the 28-digit default context)
    value = Decimal((int(unscaled < 0), tuple(int(d) for d in str(abs(unscaled))), -scale))
    codec = codec_for(SourceColumn("d", 1, "decimal", precision=precision, scale=scale))
    text = codec.encode(value)
    assert "E" not in text
    assert Decimal(text) == value


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (Decimal("NaN"), "not a number"),
        (Decimal("Infinity"), "not a number"),
        (Decimal("1000.00"), "integer digits"),
        (Decimal("1.001"), "decimal places"),
        (Decimal("1E+3"), "integer digits"),
    ],
)
def test_decimal_encoder_refuses_what_numeric_would_reject_or_round(value: Decimal, reason: str) -> None:
    codec = codec_for(SourceColumn("d", 1, "decimal", precision=5, scale=2))
    with pytest.raises(UnstorableValueError, match=reason):
        codec.encode(value)


def test_decimal_trailing_zeros_beyond_scale_are_fine() -> None:
    codec = codec_for(SourceColumn("d", 1, "decimal", precision=5, scale=2))
    assert Decimal(codec.encode(Decimal("1.5000"))) == Decimal("1.5")
    assert codec.encode(Decimal("-0.00")) in ("-0.00", "0.00")


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_bigint_encoder(value: int) -> None:
    assert int(codec_for(SourceColumn("i", 1, "bigint")).encode(value)) == value


@given(st.floats(allow_nan=False))
def test_float_encoder_round_trips(value: float) -> None:
    assert float(codec_for(SourceColumn("f", 1, "float")).encode(value)) == value


@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)), st.integers(-840, 840))
def test_datetimeoffset_encoder_keeps_instant_and_offset(local: datetime, minutes: int) -> None:
    value = local.replace(tzinfo=timezone(timedelta(minutes=minutes)))
    instant, offset = codec_for(SourceColumn("t", 1, "datetimeoffset", scale=7)).encode(value).split("\t")
    assert datetime.fromisoformat(instant) == value
    assert int(offset) == minutes


def test_datetimeoffset_without_offset_is_refused() -> None:
    with pytest.raises(UnstorableValueError, match="aware"):
        codec_for(SourceColumn("t", 1, "datetimeoffset")).encode(datetime(2024, 1, 1))


def test_aware_datetime2_is_refused() -> None:
    with pytest.raises(UnstorableValueError, match="time zone"):
        codec_for(SourceColumn("t", 1, "datetime2")).encode(datetime(2024, 1, 1, tzinfo=UTC))


@given(st.binary())
def test_bytes_encoder_is_copy_escaped_hex(value: bytes) -> None:
    text = codec_for(SourceColumn("b", 1, "varbinary", max_length=-1)).encode(value)
    assert decode_copy_field(text) == "\\x" + value.hex()


@given(st.uuids())
def test_uuid_keeps_sql_server_text_order(value: uuid.UUID) -> None:
    assert codec_for(SourceColumn("u", 1, "uniqueidentifier")).encode(value) == str(value)


def test_text_longer_than_the_column_is_refused() -> None:
    with pytest.raises(UnstorableValueError, match="longer than"):
        codec_for(SourceColumn("s", 1, "nvarchar", max_length=3)).encode("abcd")


def test_null_encodes_as_copy_null_and_datetimeoffset_null_fills_both_columns() -> None:
    assert codec_for(SourceColumn("s", 1, "int")).encode(None) == "\\N"
    assert codec_for(SourceColumn("s", 1, "datetimeoffset")).encode(None) == "\\N\t\\N"


def test_unknown_type_names_table_column_and_type() -> None:
    with pytest.raises(UnsupportedTypeError) as info:
        codec_for(SourceColumn("Shape", 3, "udt_point"), TableId("dbo", "Maps"))
    assert "dbo.Maps.Shape" in str(info.value)
    assert "'udt_point'" in str(info.value)
    assert "hint:" in str(info.value)


@pytest.mark.parametrize(
    ("source", "pg"),
    [
        (SourceColumn("c", 1, "decimal", precision=38, scale=10), "numeric(38,10)"),
        (SourceColumn("c", 1, "nvarchar", max_length=-1), "text"),
        (SourceColumn("c", 1, "char", max_length=10), "varchar(10)"),
        (SourceColumn("c", 1, "time", scale=7), "time(6)"),
        (SourceColumn("c", 1, "datetime2", scale=2), "timestamp(2)"),
        (SourceColumn("c", 1, "datetimeoffset", scale=7), "timestamptz(6)"),
        (SourceColumn("c", 1, "money"), "numeric(19,4)"),
        (SourceColumn("c", 1, "tinyint"), "smallint"),
    ],
)
def test_mapping_table(source: SourceColumn, pg: str) -> None:
    assert codec_for(source).target.pg_type == pg
