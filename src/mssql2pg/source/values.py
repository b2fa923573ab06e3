"""Driver values → the canonical Python value per SQL Server type (see :mod:`mssql2pg.model`).

Two drivers feed the reader: python-tds talking to SQL Server, and pg8000 talking to the emulator, which stores
SQL Server types as PostgreSQL types. They disagree in small ways (``bytearray``/``memoryview`` vs ``bytes``,
pytds' own fixed-offset tzinfo, PostgreSQL's ``money`` as text, ``datetimeoffset`` possibly as text). Each
decoder accepts every representation either driver produces and returns exactly one canonical type, so that
nothing downstream ever needs to know which backend it reads. Decoders are chosen once per column
(:func:`decoder_for`), not per value, because they run for every value of every row.

An unknown type (e.g. a future SQL Server type) is passed through unchanged rather than guessed at.

Character data (issue 17 point 4). SQL Server stores ``char``/``varchar``/``text`` in the code page of the
column's collation (``Latin1_General`` cp1252, ``Cyrillic_General`` cp1251, ``Japanese`` cp932, ``Chinese_PRC``
cp936, ``*_UTF8`` UTF-8, ...) and ``nchar``/``nvarchar``/``ntext`` as UTF-16LE. python-tds decodes with the code
page of the collation's LCID/sort id only: it ignores the UTF-8 flag (a ``_UTF8`` column would arrive as
mojibake), and a byte sequence invalid in the code page (or a lone surrogate in UTF-16) raises inside the fetch,
failing the whole page. So the reader selects every character column whose encoding is known here as raw bytes
(``CAST(... AS VARBINARY(MAX))``, see :func:`raw_codec`) and these decoders turn the bytes into text strictly:
an invalid sequence is a decode error, so the row becomes a dead letter naming the column, never a crash and
never a replacement character. The emulator stores UTF-8 text and its driver delivers ``str``, which passes
through unchanged.
"""

from __future__ import annotations

import codecs
import dataclasses
import datetime as dt
import functools
import re
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Literal

from mssql2pg.model import CaptureInstance, SourceColumn

Decoder = Callable[[Any], Any]
"""Turns one non-NULL driver value into the canonical value (``None`` is handled by :func:`decode_row`)."""

INTEGER_TYPES = frozenset({"tinyint", "smallint", "int", "bigint"})
EXACT_NUMERIC_TYPES = frozenset({"decimal", "numeric", "money", "smallmoney"})
FLOAT_TYPES = frozenset({"float", "real"})
DATETIME_TYPES = frozenset({"datetime", "datetime2", "smalldatetime"})
TEXT_TYPES = frozenset({"char", "varchar", "nchar", "nvarchar", "text", "ntext", "xml", "sysname"})
SPATIAL_TYPES = frozenset({"geography", "geometry"})
NARROW_TEXT_TYPES = frozenset({"char", "varchar", "text"})
"""Stored in the code page of the column's collation."""
WIDE_TEXT_TYPES = frozenset({"nchar", "nvarchar", "ntext", "sysname"})
"""Stored as UTF-16LE (surrogate pairs for characters outside the BMP), whatever the collation."""
BINARY_TYPES = frozenset(
    {"binary", "varbinary", "image", "rowversion", "timestamp", "hierarchyid", "geography", "geometry"}
)


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        text = value.strip().lower()
        if text in {"1", "t", "true"}:
            return True
        if text in {"0", "f", "false"}:
            return False
        msg = f"not a bit value: {value!r}"
        raise ValueError(msg)
    return bool(value)


def _int(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return int(value)
    if isinstance(value, str):
        return int(value.strip())
    msg = f"not an integer value: {value!r}"
    raise ValueError(msg)


def _decimal(value: Any) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        # A float can only come from a lossy driver path; its shortest repr is the value that was meant.
        return Decimal(repr(value))
    if isinstance(value, str):
        # PostgreSQL's own money type arrives as text such as "-$1,234.50".
        text = value.strip().replace(",", "").replace("$", "")
        if text.startswith("(") and text.endswith(")"):
            text = "-" + text[1:-1]
        return Decimal(text)
    msg = f"not a decimal value: {value!r}"
    raise ValueError(msg)


def _float(value: Any) -> float:
    return float(value)


def _date(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        return dt.date.fromisoformat(value.strip())
    msg = f"not a date value: {value!r}"
    raise ValueError(msg)


def _time(value: Any) -> dt.time:
    if isinstance(value, dt.time):
        return value.replace(tzinfo=None)
    if isinstance(value, dt.timedelta):
        micros = value // dt.timedelta(microseconds=1)
        seconds, micro = divmod(micros, 1_000_000)
        minutes, second = divmod(seconds, 60)
        hour, minute = divmod(minutes, 60)
        return dt.time(hour, minute, second, micro)
    if isinstance(value, str):
        return dt.time.fromisoformat(_trim_fraction(value.strip()))
    msg = f"not a time value: {value!r}"
    raise ValueError(msg)


def _datetime(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        # SQL Server keeps wall-clock time; a driver that attached a zone must not shift it.
        return value.replace(tzinfo=None)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day)  # naive on purpose
    if isinstance(value, str):
        return dt.datetime.fromisoformat(_trim_fraction(value.strip()))
    msg = f"not a datetime value: {value!r}"
    raise ValueError(msg)


def _datetimeoffset(value: Any) -> dt.datetime:
    """Aware datetime whose tzinfo is the ORIGINAL offset as a plain :class:`datetime.timezone`.

    python-tds gives an aware datetime with its own fixed-offset tzinfo; the emulator may give text with the
    offset, or a ``(local wall-clock datetime, offset minutes)`` pair. A PostgreSQL ``timestamptz`` (already
    normalised to one zone by the server) is accepted too, though the original offset is then gone.
    """
    if isinstance(value, dt.datetime):
        offset = value.utcoffset()
        if offset is None:
            msg = f"datetimeoffset value without an offset: {value!r}"
            raise ValueError(msg)
        return value.replace(tzinfo=dt.timezone(offset))
    if isinstance(value, tuple | list) and len(value) == 2:
        local, minutes = value
        return _datetime(local).replace(tzinfo=dt.timezone(dt.timedelta(minutes=int(minutes))))
    if isinstance(value, str):
        return _datetimeoffset(dt.datetime.fromisoformat(_trim_fraction(value.strip())))
    msg = f"not a datetimeoffset value: {value!r}"
    raise ValueError(msg)


def _trim_fraction(text: str) -> str:
    """Cut a fraction of seconds to 6 digits: SQL Server has 7 (100 ns), Python has microseconds."""
    dot = text.find(".")
    if dot < 0:
        return text
    end = dot + 1
    while end < len(text) and text[end].isdigit():
        end += 1
    digits = text[dot + 1 : end]
    if len(digits) <= 6:
        return text
    return text[: dot + 1] + digits[:6] + text[end:]


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8")
    return str(value)


# The ANSI code page of each Windows collation family (the name up to its version / sensitivity suffixes), as
# ``SELECT COLLATIONPROPERTY(name, 'CodePage') FROM sys.fn_helpcollations()`` lists it. Families not listed
# (and Unicode-only ones such as Indic_General, code page 0) are left to the driver.
_CP1250 = (
    "Albanian Bosnian_Latin Croatian Czech Hungarian Hungarian_Technical Polish Romanian Serbian_Latin Slovak "
    "Slovenian Turkmen Upper_Sorbian Wolof"
)
_CP1251 = (
    "Bashkir Bosnian_Cyrillic Cyrillic_General Kazakh Macedonian_FYROM Mongolian Serbian_Cyrillic Tatar Ukrainian Yakut"
)
_CP1252 = (
    "Latin1_General Danish_Greenlandic Danish_Norwegian Finnish_Swedish French Frisian German_PhoneBook Icelandic "
    "Modern_Spanish Traditional_Spanish Mohawk Norwegian Sami_Norway Sami_Sweden_Finland Breton Corsican "
    "Maltese Romansh Alsatian Indonesian Kinyarwanda Lithuanian_Classic Welsh Yoruba Upper_Sorbian_Latin"
)
_FAMILY_CODE_PAGES: dict[str, str] = {
    **dict.fromkeys(_CP1250.split(), "cp1250"),
    **dict.fromkeys(_CP1251.split(), "cp1251"),
    **dict.fromkeys(_CP1252.split(), "cp1252"),
    **dict.fromkeys(["Greek"], "cp1253"),
    **dict.fromkeys(["Turkish", "Azeri_Latin", "Uzbek_Latin"], "cp1254"),
    **dict.fromkeys(["Hebrew"], "cp1255"),
    **dict.fromkeys(["Arabic", "Urdu", "Persian", "Dari", "Pashto", "Uighur"], "cp1256"),
    **dict.fromkeys(["Estonian", "Latvian", "Lithuanian"], "cp1257"),
    **dict.fromkeys(["Vietnamese"], "cp1258"),
    **dict.fromkeys(["Thai"], "cp874"),
    **dict.fromkeys(["Japanese", "Japanese_Bushu_Kakusu", "Japanese_XJIS", "Japanese_Unicode"], "cp932"),
    **dict.fromkeys(
        ["Chinese_PRC", "Chinese_PRC_Stroke", "Chinese_Simplified_Pinyin", "Chinese_Simplified_Stroke_Order"], "cp936"
    ),
    **dict.fromkeys(["Korean_Wansung", "Korean"], "cp949"),
    **dict.fromkeys(
        [
            "Chinese_Taiwan_Stroke",
            "Chinese_Taiwan_Bopomofo",
            "Chinese_Traditional_Stroke_Count",
            "Chinese_Traditional_Bopomofo",
            "Chinese_Traditional_Pinyin",
            "Chinese_Traditional_Stroke_Order",
            "Chinese_Hong_Kong_Stroke",
        ],
        "cp950",
    ),
}
_FOLDED_FAMILIES = {family.casefold(): codec for family, codec in _FAMILY_CODE_PAGES.items()}
_FAMILY_END = re.compile(r"_(?:\d{2,3}|BIN2?|CI|CS|AI|AS|KS|WS|VSS|SC|UTF8)(?:_|$)", re.IGNORECASE)
_SQL_CODE_PAGE = re.compile(r"_CP(\d+)(?:_|$)", re.IGNORECASE)


def code_page(collation: str | None) -> str | None:
    """The Python codec of a collation's 8-bit code page (``char``/``varchar``/``text``), ``None`` if unknown.

    ``*_UTF8`` collations (SQL Server 2019+) store UTF-8. ``SQL_*`` collations name their code page
    (``SQL_Latin1_General_CP1_CI_AS``: CP1 is 1252, ``SQL_Ukrainian_Cp1251_CS_AS``: 1251). Windows collations
    are named after a family whose code page the table above gives.
    """
    if not collation:
        return None
    name = collation.strip()
    if name.upper().endswith("_UTF8") or "_UTF8_" in name.upper():
        return "utf-8"
    if name.upper().startswith("SQL_"):
        found = _SQL_CODE_PAGE.search(name)
        if found is None:
            return None
        number = "1252" if found.group(1) == "1" else found.group(1)
        return _known_codec(f"cp{number}")
    end = _FAMILY_END.search(name)
    family = name[: end.start()] if end else name
    return _FOLDED_FAMILIES.get(family.casefold())


def _known_codec(name: str) -> str | None:
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def raw_codec(column: SourceColumn) -> str | None:
    """How the reader reads a character column: as raw bytes in this codec, or (``None``) as the driver's text.

    ``nchar``/``nvarchar``/``ntext``/``sysname`` are always UTF-16LE; ``char``/``varchar``/``text`` are in their
    collation's code page when :func:`code_page` knows it. Other columns (and unknown collations) are not read
    as bytes."""
    sql_type = column.sql_type.strip().lower()
    if sql_type in WIDE_TEXT_TYPES:
        return "utf-16-le"
    if sql_type in NARROW_TEXT_TYPES:
        return code_page(column.collation)
    return None


def raw_columns(instance: CaptureInstance) -> frozenset[str]:
    """The captured columns of an instance the reader selects as raw bytes (:func:`raw_codec`)."""
    return frozenset(c.name for c in instance.columns if raw_codec(c) is not None)


def key_collations(instance: CaptureInstance) -> dict[str, str]:
    """The ``char``/``varchar``/``text`` key columns read as bytes (:func:`raw_codec`), with their collation.

    A keyset page (the initial snapshot) continues after the last key DECODED (text); the source compares it
    with such a column only once turned back into the column's own code page and collation
    (``source/statements.py`` ``text_in_collation``). ``nchar``/``nvarchar`` keys compare with the text as
    bound."""
    keys = set(instance.key_columns)
    return {
        c.name: c.collation
        for c in instance.columns
        if c.name in keys and c.collation and c.sql_type.strip().lower() in NARROW_TEXT_TYPES and raw_codec(c)
    }


@functools.cache
def _text_in(codec: str) -> Decoder:
    """The decoder of a character column read as raw bytes in ``codec`` (text from another path passes)."""

    def decode(value: Any) -> str:
        if isinstance(value, str):
            return value
        if isinstance(value, bytes | bytearray | memoryview):
            data = bytes(value)
            try:
                return data.decode(codec)  # strict: an invalid sequence is refused, never replaced
            except UnicodeDecodeError as exc:
                bad = data[exc.start : exc.end]
                msg = f"invalid {codec} byte sequence 0x{bad.hex().upper()} at byte {exc.start} ({exc.reason})"
                raise ValueError(msg) from None
        return str(value)

    _CANONICAL[decode] = str
    return decode


def _bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str) and value.startswith(("\\x", "0x", "0X")):
        return bytes.fromhex(value[2:])
    msg = f"not a binary value: {value!r}"
    raise ValueError(msg)


def _uuid(value: Any) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, str):
        return uuid.UUID(value.strip())
    if isinstance(value, bytes | bytearray | memoryview) and len(value) == 16:
        # SQL Server's 16-byte storage order is little-endian in the first three groups.
        return uuid.UUID(bytes_le=bytes(value))
    msg = f"not a uniqueidentifier value: {value!r}"
    raise ValueError(msg)


def _sql_variant(value: Any) -> str:  # noqa: PLR0911 - one return per representation reads clearest
    """The variant's value as text, the way ``CONVERT(nvarchar(max), v)`` would spell it where that is stable."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, bytes | bytearray | memoryview):
        return "0x" + bytes(value).hex().upper()
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value).upper()
    return str(value)


def _identity(value: Any) -> Any:
    return value


_BY_TYPE: dict[str, Decoder] = {
    "bit": _bool,
    **dict.fromkeys(INTEGER_TYPES, _int),
    **dict.fromkeys(EXACT_NUMERIC_TYPES, _decimal),
    **dict.fromkeys(FLOAT_TYPES, _float),
    "date": _date,
    "time": _time,
    **dict.fromkeys(DATETIME_TYPES, _datetime),
    "datetimeoffset": _datetimeoffset,
    **dict.fromkeys(TEXT_TYPES, _text),
    **dict.fromkeys(BINARY_TYPES, _bytes),
    "uniqueidentifier": _uuid,
    "sql_variant": _sql_variant,
}

KNOWN_TYPES = frozenset(_BY_TYPE)
"""SQL Server type names this module decodes."""


def decoder_for(sql_type: str) -> Decoder:
    """The decoder for a SQL Server type name (any case); unknown types pass through unchanged."""
    return _BY_TYPE.get(sql_type.strip().lower(), _identity)


_EWKB_SRID_FLAG = 0x20000000  # PostGIS EWKB: the type word says an SRID follows it


def _ewkb(value: Any) -> bytes:
    """``CAST(col.STSrid AS BINARY(4)) + col.STAsBinary()`` (SRID big-endian, then OGC WKB) → PostGIS EWKB:
    the WKB with the SRID flag in its type word and the SRID after it, in the WKB's own byte order. One value,
    one ``bytea`` column, readable by ``ST_GeomFromEWKB`` (the SRID kept), no second column to keep in step."""
    data = _bytes(value)
    if len(data) < 9 or data[4] not in (0, 1):
        msg = f"not an SRID followed by WKB ({len(data)} bytes)"
        raise ValueError(msg)
    srid = int.from_bytes(data[:4], "big", signed=True)
    wkb = data[4:]
    order: Literal["little", "big"] = "little" if wkb[0] == 1 else "big"
    kind = int.from_bytes(wkb[1:5], order)
    if kind & _EWKB_SRID_FLAG:
        return wkb  # already carries an SRID
    return wkb[:1] + (kind | _EWKB_SRID_FLAG).to_bytes(4, order) + srid.to_bytes(4, order, signed=True) + wkb[5:]


def with_spatial_as_wkb(instance: CaptureInstance) -> CaptureInstance:
    """The instance with its ``geography``/``geometry`` columns read as EWKB (the table's ``spatial: wkb``)."""
    columns = tuple(
        dataclasses.replace(c, as_wkb=True) if c.sql_type.strip().lower() in SPATIAL_TYPES else c
        for c in instance.columns
    )
    return dataclasses.replace(instance, columns=columns)


def wkb_columns(instance: CaptureInstance) -> frozenset[str]:
    """The captured columns the reader selects as ``STSrid`` + ``STAsBinary()`` (:func:`with_spatial_as_wkb`)."""
    return frozenset(c.name for c in instance.columns if c.as_wkb)


def column_decoder(column: SourceColumn) -> Decoder:
    """The decoder of one captured column: by type, and for character columns by how :func:`raw_codec` says the
    reader reads them (raw bytes in the column's encoding); a spatial column read as WKB becomes EWKB."""
    if column.as_wkb:
        return _ewkb
    codec = raw_codec(column)
    if codec is not None:
        return _text_in(codec)
    return decoder_for(column.sql_type)


def decode_value(sql_type: str, value: Any) -> Any:
    """Decode one driver value of the given SQL Server type. ``None`` stays ``None``."""
    return None if value is None else decoder_for(sql_type)(value)


_CANONICAL: dict[Decoder, type] = {
    _bool: bool,
    _int: int,
    _decimal: Decimal,
    _float: float,
    _text: str,
    _bytes: bytes,
    _uuid: uuid.UUID,
}
"""The exact type each decoder returns unchanged: a value already of that type needs no call (most values the
drivers deliver). Decoders missing here always run (e.g. ``_datetime`` must drop a zone a driver attached)."""


class RowDecoder:
    """Decodes the captured-column values of one capture instance's rows, decoders chosen once."""

    __slots__ = ("_count", "_work")

    def __init__(self, columns: tuple[SourceColumn, ...]) -> None:
        decoders = [column_decoder(c) for c in columns]
        self._count = len(decoders)
        # Columns whose decoder has real work to do, with the type that needs none; the rest pass through
        # untouched (the hot path per row).
        self._work = tuple((i, d, _CANONICAL.get(d, _NoType)) for i, d in enumerate(decoders) if d is not _identity)

    def __call__(self, values: tuple[Any, ...] | list[Any]) -> tuple[Any, ...]:
        if len(values) != self._count:
            msg = f"expected {self._count} captured values, got {len(values)}"
            raise ValueError(msg)
        out = list(values)
        for i, d, canonical in self._work:
            v = out[i]
            if v is not None and type(v) is not canonical:
                out[i] = d(v)
        return tuple(out)


class _NoType:
    """Matches no value's exact type: the decoder always runs."""
