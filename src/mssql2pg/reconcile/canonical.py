"""The canonical text of a row, computed inside each database so that only checksums cross the network.

Both engines must produce the same text for the same value, whatever the column's type on each side (the
source's SQL Server type, the emulator's PostgreSQL stand-in, the target's mapped type from
:mod:`mssql2pg.sink.types`). The rules, per source type (:class:`FieldSpec`):

* integers and bit: decimal digits (bit as ``1``/``0``);
* decimal, numeric, money: the value at the declared scale (``1.50`` for numeric(5,2));
* float and real: the IEEE 754 bits as lower-case hex (both engines give them big-endian), so no engine's
  float-to-text rounding gets involved;
* date, time, datetime*: ISO text at the coarser precision of the two sides (the target keeps at most
  microseconds; datetime keeps SQL Server's milliseconds, smalldatetime seconds); the reader cuts a 7th
  digit, so the text is cut, not rounded;
* datetimeoffset: the UTC instant, ``@``, and the kept offset in minutes;
* uniqueidentifier: lower-case text; binary types: lower-case hex;
* text types: the exact characters, preceded by their UTF-8 length (so a separator inside text cannot make two
  different rows encode alike). SQL Server's ``=`` ignores trailing spaces and, under a CI collation, case;
  the text here is hashed as bytes, so both count.
* NULL: ``~``, which no non-NULL field can be (text fields start with their length).

Fields are joined by ``|``. The per-row hash is the first 56 bits of the MD5 of that text as a non-negative
bigint; a table's or segment's checksum is the sum of its rows' hashes, which does not depend on order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql.elements import ColumnElement

from mssql2pg.model import SourceColumn
from mssql2pg.sink.types import PG_MAX_TIME_PRECISION

Kind = Literal[
    "bool", "int", "numeric", "float8", "float4", "date", "time", "timestamp", "dto", "text", "bytes", "uuid"
]
Dialect = Literal["mssql", "postgresql"]

HASH_BITS = 56
NULL_FIELD = "~"
SEPARATOR = "|"
UTF8_COLLATION = "Latin1_General_100_BIN2_UTF8"
"""SQL Server 2019+: converting to varchar under this collation gives UTF-8 bytes, as PostgreSQL hashes."""

_TEXT_TYPES = {"char", "varchar", "nchar", "nvarchar", "text", "ntext", "xml", "sql_variant"}
_BYTES_TYPES = {"binary", "varbinary", "image", "rowversion", "timestamp", "hierarchyid", "geography", "geometry"}
_INT_TYPES = {"tinyint", "smallint", "int", "bigint"}


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """How one source column is encoded: its kind and, for numerics the scale, for times the fraction digits."""

    kind: Kind
    digits: int = 0
    precision: int = 38


_FIXED: dict[str, FieldSpec] = {
    "bit": FieldSpec("bool"),
    **dict.fromkeys(_INT_TYPES, FieldSpec("int")),
    "money": FieldSpec("numeric", 4, 19),
    "smallmoney": FieldSpec("numeric", 4, 10),
    "float": FieldSpec("float8"),
    "real": FieldSpec("float4"),
    "date": FieldSpec("date"),
    "datetime": FieldSpec("timestamp", 3),
    "smalldatetime": FieldSpec("timestamp", 0),
    **dict.fromkeys(_TEXT_TYPES, FieldSpec("text")),
    **dict.fromkeys(_BYTES_TYPES, FieldSpec("bytes")),
    "uniqueidentifier": FieldSpec("uuid"),
}
_FRACTIONAL: dict[str, Kind] = {"time": "time", "datetime2": "timestamp", "datetimeoffset": "dto"}


def spec_for(column: SourceColumn) -> FieldSpec:
    """The encoding of ``column``, from its SQL Server type (the one both sides' types derive from)."""
    t = column.sql_type.lower().strip()
    if t in _FIXED:
        return _FIXED[t]
    if t in ("decimal", "numeric"):
        return FieldSpec("numeric", column.scale if column.scale is not None else 0, column.precision or 18)
    if t in _FRACTIONAL:
        digits = min(column.scale if column.scale is not None else 7, PG_MAX_TIME_PRECISION)
        return FieldSpec(_FRACTIONAL[t], digits)
    msg = f"no canonical encoding for SQL Server type {column.sql_type!r}"
    raise ValueError(msg)


def _lit(text: str) -> ColumnElement[str]:
    """A constant written into the statement (not a parameter): the same expression can then be grouped on."""
    return sa.literal_column(text, sa.String)


def _int(text: str) -> ColumnElement[int]:
    return sa.literal_column(text, sa.Integer)


def _str(text: str) -> ColumnElement[str]:
    return _lit("'" + text.replace("'", "''") + "'")


def _concat(parts: list[ColumnElement[str]]) -> ColumnElement[str]:
    out = parts[0]
    for part in parts[1:]:
        out = out + part  # String + String: `||` in PostgreSQL, `+` in T-SQL
    return out


def _time_width(kind: Kind, digits: int) -> int:
    base = 8 if kind == "time" else 19
    return base + (digits + 1 if digits else 0)


# --- PostgreSQL (the target, and the emulator standing in for SQL Server) ------------------------------------


def pg_field(
    value: ColumnElement[object], spec: FieldSpec, *, offset: ColumnElement[object] | None = None
) -> ColumnElement[str]:
    """The canonical text of one value in PostgreSQL (NULL for NULL).

    ``offset``: for a datetimeoffset kept as ``timestamptz`` plus an offset column (the target). Without it a
    datetimeoffset value is the emulator's text form (``2026-01-02 03:04:05.1234567 +02:00``)."""
    text: ColumnElement[str]
    kind = spec.kind
    if kind == "bool":
        text = sa.case((value.is_(sa.true()), _lit("'1'")), (value.is_(sa.false()), _lit("'0'")))
    elif kind in ("int", "uuid"):
        text = sa.cast(value, sa.Text)
    elif kind == "numeric":
        text = sa.cast(sa.cast(value, sa.Numeric(spec.precision, spec.digits)), sa.Text)
    elif kind in ("float8", "float4"):
        send = sa.func.float8send if kind == "float8" else sa.func.float4send
        cast_to = sa.Float(53) if kind == "float8" else sa.REAL()
        text = sa.func.encode(send(sa.cast(value, cast_to)), _lit("'hex'"))
    elif kind in ("date", "time", "timestamp", "dto"):
        text = _pg_temporal(value, spec, offset)
    elif kind == "text":
        text = _concat([sa.cast(sa.func.octet_length(value), sa.Text), _lit("':'"), sa.cast(value, sa.Text)])
    elif kind == "bytes":
        text = sa.func.encode(value, _lit("'hex'"))
    else:  # pragma: no cover - Kind is closed
        raise AssertionError(kind)
    return text


def pg_wkb_as_read(value: ColumnElement[Any]) -> ColumnElement[Any]:
    """A ``spatial: wkb`` column's EWKB (as the reader stores it) turned back into what the source returns for
    it: the SRID big-endian, then the OGC WKB (``CAST(g.STSrid AS BINARY(4)) + g.STAsBinary()``). The source
    side of such a column encodes that expression (:func:`mssql2pg.source.statements.read_column`), so the two
    sides compare the same bytes without SQL Server having to build EWKB. EWKB carries the SRID after the type
    word, in the WKB's byte order, and flags it in the type word (``0x20000000``): the SRID is moved to the
    front (reversed for little-endian) and the flag cleared. A value without the flag (or too short to hold
    it) is compared as it is. ``CASE`` evaluates its branches in order, so no byte is read past the end."""

    def byte(n: int) -> ColumnElement[bytes]:  # the (1-based) n-th byte
        return sa.func.substring(value, _int(str(n)), _int("1"), type_=sa.LargeBinary)

    def cat(*parts: ColumnElement[bytes]) -> ColumnElement[bytes]:
        out = parts[0]
        for part in parts[1:]:
            out = out.op("||", return_type=sa.LargeBinary)(part)
        return out

    def unflagged(n: int) -> ColumnElement[bytes]:  # the n-th byte without the SRID flag's bit
        cleared = sa.func.get_byte(value, _int(str(n - 1))).op("&")(_int("223"))
        return sa.func.set_byte(byte(n), _int("0"), cleared, type_=sa.LargeBinary)

    def flagged(n: int) -> ColumnElement[bool]:
        return sa.func.get_byte(value, _int(str(n - 1))).op("&")(_int("32")) != _int("0")

    rest = sa.func.substring(value, _int("10"), type_=sa.LargeBinary)
    little = cat(byte(9), byte(8), byte(7), byte(6), byte(1), byte(2), byte(3), byte(4), unflagged(5), rest)
    big = cat(sa.func.substring(value, _int("6"), _int("4"), type_=sa.LargeBinary), byte(1), unflagged(2))
    big = cat(big, sa.func.substring(value, _int("3"), _int("3"), type_=sa.LargeBinary), rest)
    first = sa.func.get_byte(value, _int("0"))
    return sa.case(
        (sa.func.octet_length(value) < _int("9"), value),
        (sa.and_(first == _int("1"), flagged(5)), little),
        (sa.and_(first == _int("0"), flagged(2)), big),
        else_=value,
    )


def _pg_temporal(
    value: ColumnElement[object], spec: FieldSpec, offset: ColumnElement[object] | None
) -> ColumnElement[str]:
    width = _lit(str(_time_width(spec.kind, spec.digits)))
    if spec.kind == "date":
        return sa.func.to_char(value, _lit("'YYYY-MM-DD'"))
    if spec.kind == "time":
        return sa.func.left(sa.func.to_char(sa.cast(value, sa.Interval), _lit("'HH24:MI:SS.US'")), width)
    if spec.kind == "timestamp":
        return sa.func.left(sa.func.to_char(value, _lit("'YYYY-MM-DD HH24:MI:SS.US'")), width)
    return _pg_dto(value, spec, offset)


def _pg_dto(value: ColumnElement[object], spec: FieldSpec, offset: ColumnElement[object] | None) -> ColumnElement[str]:
    if offset is None:  # the emulator's text: cut a 7th digit (as the reader does), then read it
        instant = sa.cast(
            sa.func.regexp_replace(value, _lit(r"'(\.\d{6})\d+'"), _lit(r"'\1'")), postgresql.TIMESTAMP(timezone=True)
        )
        tail = sa.func.right(value, _lit("6"))  # '+02:00'
        sign = sa.case((sa.func.left(tail, _lit("1")) == _lit("'-'"), _int("-1")), else_=_int("1"))
        hours = sa.cast(sa.func.substr(tail, _lit("2"), _lit("2")), sa.Integer)
        minutes = sign * (hours * _int("60") + sa.cast(sa.func.right(tail, _lit("2")), sa.Integer))
    else:
        instant = sa.cast(value, postgresql.TIMESTAMP(timezone=True))
        minutes = offset
    utc = sa.func.timezone(_lit("'UTC'"), instant)
    when = sa.func.left(
        sa.func.to_char(utc, _lit("'YYYY-MM-DD HH24:MI:SS.US'")), _lit(str(_time_width("dto", spec.digits)))
    )
    return _concat([when, _lit("'@'"), sa.cast(minutes, sa.Text)])


# --- SQL Server ------------------------------------------------------------------------------------------------


def tsql_field(value: ColumnElement[object], spec: FieldSpec) -> ColumnElement[str]:
    """The canonical text of one value in T-SQL (NULL for NULL): the same text :func:`pg_field` gives."""
    kind = spec.kind
    convert = sa.func.convert
    text: ColumnElement[str]
    if kind in ("bool", "int"):
        text = sa.cast(value, sa.String(20))
    elif kind == "numeric":
        text = sa.cast(sa.cast(value, sa.Numeric(spec.precision, spec.digits)), sa.String(50))
    elif kind in ("float8", "float4"):
        width = 8 if kind == "float8" else 4
        text = sa.func.lower(convert(_lit(f"varchar({width * 2})"), sa.cast(value, sa.BINARY(width)), _lit("2")))
    elif kind in ("date", "time", "timestamp", "dto"):
        text = _tsql_temporal(value, spec)
    elif kind == "text":
        unicode = sa.cast(value, sa.Unicode())
        size = sa.func.datalength(sa.cast(sa.collate(unicode.self_group(), UTF8_COLLATION), sa.String()))
        text = _concat([sa.cast(size, sa.String(20)), _lit("':'"), unicode])
    elif kind == "bytes":
        text = sa.func.lower(convert(_lit("varchar(max)"), convert(_lit("varbinary(max)"), value), _lit("2")))
    elif kind == "uuid":
        text = sa.func.lower(sa.cast(value, sa.String(36)))
    else:  # pragma: no cover - Kind is closed
        raise AssertionError(kind)
    return text


def _tsql_temporal(value: ColumnElement[object], spec: FieldSpec) -> ColumnElement[str]:
    convert = sa.func.convert
    width = _lit(str(_time_width(spec.kind, spec.digits)))
    if spec.kind == "date":
        return convert(_lit("varchar(10)"), value, _lit("23"))
    if spec.kind == "time":  # time(7) as text is 'hh:mi:ss.nnnnnnn'; cut to the digits the target keeps
        return sa.func.left(convert(_lit("varchar(16)"), convert(_lit("time(7)"), value)), width)
    if spec.kind == "timestamp" and spec.digits == 3:
        # datetime: SQL Server's own rounding to .xx0/.xx3/.xx7, as the target's timestamp(3) holds it
        return convert(_lit("varchar(23)"), value, _lit("121"))
    if spec.kind == "timestamp":
        return sa.func.left(convert(_lit("varchar(27)"), convert(_lit("datetime2(7)"), value), _lit("121")), width)
    utc = convert(_lit("datetime2(7)"), sa.func.switchoffset(value, _lit("0")))
    when = sa.func.left(convert(_lit("varchar(27)"), utc, _lit("121")), width)
    minutes = sa.cast(sa.func.datepart(_lit("tzoffset"), value), sa.String(6))
    return _concat([when, _lit("'@'"), minutes])


# --- rows and hashes ---------------------------------------------------------------------------------------------


def row_text(fields: list[ColumnElement[str]], dialect: Dialect) -> ColumnElement[str]:
    """The fields joined by ``|``, NULL as ``~`` (T-SQL: as nvarchar(max), so nothing is cut at 4000)."""
    parts: list[ColumnElement[str]] = []
    for i, f in enumerate(fields):
        if i:
            parts.append(_str(SEPARATOR))
        parts.append(sa.func.coalesce(f, _str(NULL_FIELD)))
    if dialect == "mssql":
        parts[0] = sa.cast(parts[0], sa.Unicode())
    return _concat(parts)


def hash56(text: ColumnElement[str], dialect: Dialect) -> ColumnElement[int]:
    """The first 56 bits of MD5(UTF-8 of ``text``) as a non-negative bigint, equal on both engines."""
    if dialect == "postgresql":
        hexits = _concat([_lit("'x'"), sa.func.substr(sa.func.md5(text), _lit("1"), _lit(str(HASH_BITS // 4)))])
        return sa.cast(sa.cast(hexits, postgresql.BIT(HASH_BITS)), sa.BigInteger)
    utf8 = sa.cast(sa.collate(text.self_group(), UTF8_COLLATION), sa.String())
    digest = sa.func.hashbytes(_lit("'MD5'"), utf8)
    return sa.cast(sa.func.substring(digest, _lit("1"), _lit(str(HASH_BITS // 8))), sa.BigInteger)
