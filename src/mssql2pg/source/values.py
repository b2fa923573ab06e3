"""Driver values → the canonical Python value per SQL Server type (see :mod:`mssql2pg.model`).

Two drivers feed the reader: python-tds talking to SQL Server, and pg8000 talking to the emulator, which stores
SQL Server types as PostgreSQL types. They disagree in small ways (``bytearray``/``memoryview`` vs ``bytes``,
pytds' own fixed-offset tzinfo, PostgreSQL's ``money`` as text, ``datetimeoffset`` possibly as text). Each
decoder accepts every representation either driver produces and returns exactly one canonical type, so that
nothing downstream ever needs to know which backend it reads. Decoders are chosen once per column
(:func:`decoder_for`), not per value, because they run for every value of every row.

An unknown type (e.g. a future SQL Server type) is passed through unchanged rather than guessed at.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from mssql2pg.model import SourceColumn

Decoder = Callable[[Any], Any]
"""Turns one non-NULL driver value into the canonical value (``None`` is handled by :func:`decode_row`)."""

INTEGER_TYPES = frozenset({"tinyint", "smallint", "int", "bigint"})
EXACT_NUMERIC_TYPES = frozenset({"decimal", "numeric", "money", "smallmoney"})
FLOAT_TYPES = frozenset({"float", "real"})
DATETIME_TYPES = frozenset({"datetime", "datetime2", "smalldatetime"})
TEXT_TYPES = frozenset({"char", "varchar", "nchar", "nvarchar", "text", "ntext", "xml", "sysname"})
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
        decoders = [decoder_for(c.sql_type) for c in columns]
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
