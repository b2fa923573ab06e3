"""SQL Server column types → PostgreSQL column types, and the encoders that write canonical values as COPY text.

The mapping is documented value by value in ``docs/types.md``; this module is the one place that implements it.
Two rules shape everything here:

* **Never lose data silently.** A type without a safe PostgreSQL equivalent gets a lossless fallback (bytea
  holding the serialized value, or text), and an unknown type is an error naming table, column and type
  instead of a quiet text fallback. A *value* PostgreSQL cannot store (NUL in text, NaN in numeric, more
  digits than the column holds) raises :class:`UnstorableValueError` for that row, so the caller can route
  exactly that row to the dead-letter table.
* **Encoding is the hot path.** A million-row transaction goes through :func:`ColumnCodec.encode` once per
  value, so encoders are small closures chosen once per column, and the COPY escaping is a single regex scan
  that usually finds nothing.

COPY text format: fields separated by tab, rows by newline, NULL as ``\\N``; backslash, newline, carriage
return and tab inside a value are backslash-escaped.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

from mssql2pg.errors import TerminalError
from mssql2pg.model import SourceColumn, TableId

COPY_NULL = "\\N"
PG_MAX_TIME_PRECISION = 6

Encoder = Callable[[Any], str]


class UnsupportedTypeError(TerminalError):
    """A captured column has a SQL Server type this version cannot map (named with table and column)."""


class UnstorableValueError(TerminalError):
    """One value of one row cannot be stored in PostgreSQL; retrying cannot help.

    ``table``/``column``/``reason`` say what; the applier fills ``row`` (the :class:`~mssql2pg.model.ChangeRow`)
    so the dead-letter layer can identify the change by capture instance, commit LSN, seqval and operation.
    """

    def __init__(self, table: TableId | None, column: str, reason: str) -> None:
        self.table = table
        self.column = column
        self.reason = reason
        self.row: Any = None
        super().__init__(
            f"{table}.{column}: {reason}",
            hint="this row cannot be written as-is; fix the value at the source or route the row to dead letters",
        )

    def for_row(self, table: TableId, row: Any) -> UnstorableValueError:
        """The same error, now naming the table and carrying the failed row."""
        error = UnstorableValueError(table, self.column, self.reason)
        error.row = row
        return error

    def __str__(self) -> str:
        text = super().__str__()
        if self.row is not None:
            row = self.row
            text += (
                f"\n  row: capture instance {row.capture_instance}, commit LSN {row.commit_lsn}, "
                f"seqval {row.seqval}, operation {int(row.operation)}"
            )
        return text


class _ValueProblem(Exception):  # noqa: N818 - internal signal, converted to UnstorableValueError with context
    """Raised by an encoder; the codec adds the column name."""


# --- COPY text escaping ---------------------------------------------------------------------------------------

_NEEDS_ESCAPE = re.compile(r"[\\\n\r\t\x00]").search
_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"})


def copy_text(value: str) -> str:
    """``value`` as one COPY text field. NUL cannot be stored in PostgreSQL text: refused, never dropped."""
    if _NEEDS_ESCAPE(value) is None:
        if not value.isascii():
            _check_utf8(value)
        return value
    if "\x00" in value:
        msg = "text contains a NUL character (U+0000), which PostgreSQL text cannot store"
        raise _ValueProblem(msg)
    if not value.isascii():
        _check_utf8(value)
    return value.translate(_ESCAPES)


def _check_utf8(value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        msg = f"text contains an unpaired UTF-16 surrogate at position {exc.start}, which UTF-8 cannot encode"
        raise _ValueProblem(msg) from exc


# --- encoders (value is never None here) ---------------------------------------------------------------------


def _enc_bool(v: Any) -> str:
    return "t" if v else "f"


def _enc_int(v: Any) -> str:
    return str(v) if type(v) is int else str(int(v))


def _enc_float(v: Any) -> str:
    return repr(float(v))  # shortest round-trip form; 'inf'/'nan' are accepted by float8in


def _decimal_encoder(precision: int, scale: int) -> Encoder:
    max_integer_digits = precision - scale

    def encode(v: Any) -> str:
        if type(v) is Decimal:
            # Fast path on the plain text form: no exponent, few enough places and integer digits.
            text = str(v)
            if "E" not in text and text[-1].isdigit():
                dot = text.find(".")
                places = len(text) - dot - 1 if dot >= 0 else 0
                integer = (text[:dot] if dot >= 0 else text).lstrip("-").lstrip("0")
                if places <= scale and len(integer) <= max_integer_digits:
                    return text
        return checked(v)

    def checked(v: Any) -> str:
        if not isinstance(v, Decimal):
            v = Decimal(v) if isinstance(v, int) else Decimal(str(v))
        if not v.is_finite():
            msg = f"{v} is not a number numeric({precision},{scale}) can hold"
            raise _ValueProblem(msg)
        _sign, digits, exponent = v.as_tuple()
        assert isinstance(exponent, int)  # noqa: S101 - finite values have an int exponent
        extra_places = -exponent - scale
        if extra_places > 0 and any(digits[len(digits) - extra_places :]):
            msg = f"{v} has more than {scale} decimal places; numeric({precision},{scale}) would round it"
            raise _ValueProblem(msg)
        if v and v.adjusted() + 1 > max_integer_digits:
            msg = f"{v} has more than {max_integer_digits} integer digits for numeric({precision},{scale})"
            raise _ValueProblem(msg)
        return format(v, "f")

    return encode


def _enc_date(v: Any) -> str:
    if not isinstance(v, date) or isinstance(v, datetime):
        msg = f"expected a date, got {type(v).__name__}"
        raise _ValueProblem(msg)
    return v.isoformat()


def _enc_time(v: Any) -> str:
    if not isinstance(v, time):
        msg = f"expected a time, got {type(v).__name__}"
        raise _ValueProblem(msg)
    return v.isoformat()


def _enc_timestamp(v: Any) -> str:
    if type(v) is datetime and v.tzinfo is None:
        return str(v)  # 'YYYY-MM-DD HH:MM:SS[.ffffff]', the fast path
    if not isinstance(v, datetime):
        msg = f"expected a datetime, got {type(v).__name__}"
        raise _ValueProblem(msg)
    if v.tzinfo is not None:
        msg = "a datetime/datetime2 value carries a time zone; SQL Server keeps wall-clock time (reader bug?)"
        raise _ValueProblem(msg)
    return v.isoformat(sep=" ")


def _enc_datetimeoffset(v: Any) -> str:
    """Two fields: the instant (timestamptz, offset included so PostgreSQL converts exactly) and the offset."""
    if not isinstance(v, datetime) or v.utcoffset() is None:
        msg = "a datetimeoffset value must be an aware datetime carrying its original offset"
        raise _ValueProblem(msg)
    offset = v.utcoffset()
    assert offset is not None  # noqa: S101 - checked above
    minutes, rest = divmod(int(offset.total_seconds()), 60)
    if rest:
        msg = f"offset {offset} is not a whole number of minutes"
        raise _ValueProblem(msg)
    return f"{v.isoformat(sep=' ')}\t{minutes}"


def _enc_bytes(v: Any) -> str:
    if not isinstance(v, bytes | bytearray | memoryview):
        msg = f"expected bytes, got {type(v).__name__}"
        raise _ValueProblem(msg)
    return "\\\\x" + bytes(v).hex()


def _enc_uuid(v: Any) -> str:
    return str(v)  # uuid.UUID in SQL Server's canonical text order; str() is that order


def _text_encoder(max_chars: int | None) -> Encoder:
    def encode(v: Any) -> str:
        if not isinstance(v, str):
            msg = f"expected text, got {type(v).__name__}"
            raise _ValueProblem(msg)
        if max_chars is not None and len(v) > max_chars:
            msg = f"text of {len(v)} characters is longer than the column's {max_chars}"
            raise _ValueProblem(msg)
        return copy_text(v)

    return encode


# --- the mapping ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PgColumnType:
    """The PostgreSQL columns one source column becomes: usually one, two for datetimeoffset (+ offset)."""

    pg_type: str
    offset_companion: bool = False
    keeps_previous_on_delete: bool = False  # text/ntext/image are NULL in SQL Server's delete rows


@dataclass(frozen=True, slots=True)
class ColumnCodec:
    """How one source column is typed and encoded. ``encode`` handles None and names the column on errors."""

    column: SourceColumn
    target: PgColumnType
    _encode: Encoder

    @property
    def field_count(self) -> int:
        return 2 if self.target.offset_companion else 1

    @property
    def null_text(self) -> str:
        return "\\N\t\\N" if self.target.offset_companion else COPY_NULL

    @property
    def raw_encoder(self) -> Encoder:
        """The encoder without None handling or error context: for the hot loop, which retries via encode()."""
        return self._encode

    def encode(self, value: Any) -> str:
        if value is None:
            return self.null_text
        try:
            return self._encode(value)
        except _ValueProblem as exc:
            raise UnstorableValueError(None, self.column.name, str(exc)) from exc
        except (TypeError, ValueError, ArithmeticError) as exc:
            reason = f"cannot encode {type(value).__name__} value for {self.column.sql_type}: {exc}"
            raise UnstorableValueError(None, self.column.name, reason) from exc


def _char_length(column: SourceColumn) -> int | None:
    """None for (max); otherwise the declared length in characters."""
    if column.max_length is None or column.max_length < 0:
        return None
    return column.max_length


def _time_precision(column: SourceColumn, default: int) -> int:
    # SQL Server's change-table metadata reports fractional-second digits as `scale` for time-ish types.
    p = column.scale if column.scale is not None else default
    return min(p, PG_MAX_TIME_PRECISION)


_TEXT = _text_encoder(None)

# Types whose PostgreSQL type does not depend on length/precision: SQL Server name → (PostgreSQL type, encoder,
# whether a soft delete keeps the previous value because SQL Server writes NULL for it in delete rows).
_FIXED: dict[str, tuple[str, Encoder, bool]] = {
    "bit": ("boolean", _enc_bool, False),
    "tinyint": ("smallint", _enc_int, False),
    "smallint": ("smallint", _enc_int, False),
    "int": ("integer", _enc_int, False),
    "bigint": ("bigint", _enc_int, False),
    "money": ("numeric(19,4)", _decimal_encoder(19, 4), False),
    "smallmoney": ("numeric(10,4)", _decimal_encoder(10, 4), False),
    # float(n) with n <= 24 is stored by SQL Server as real, and reported as real then.
    "float": ("double precision", _enc_float, False),
    "real": ("real", _enc_float, False),
    "date": ("date", _enc_date, False),
    "datetime": ("timestamp(3)", _enc_timestamp, False),
    "smalldatetime": ("timestamp(0)", _enc_timestamp, False),
    "text": ("text", _TEXT, True),
    "ntext": ("text", _TEXT, True),
    "xml": ("xml", _TEXT, False),
    "sql_variant": ("text", _TEXT, False),
    "image": ("bytea", _enc_bytes, True),
    "binary": ("bytea", _enc_bytes, False),
    "varbinary": ("bytea", _enc_bytes, False),
    "rowversion": ("bytea", _enc_bytes, False),
    "timestamp": ("bytea", _enc_bytes, False),
    "hierarchyid": ("bytea", _enc_bytes, False),
    "geography": ("bytea", _enc_bytes, False),
    "geometry": ("bytea", _enc_bytes, False),
    "uniqueidentifier": ("uuid", _enc_uuid, False),
}


def _decimal_codec(column: SourceColumn) -> ColumnCodec:
    if column.dropped and column.precision is None:
        # dropped at the source: its precision went with it, but change rows from before the drop still carry
        # values of it (a re-read after a re-plan); unconstrained, so that none is refused or rounded
        return ColumnCodec(column, PgColumnType("numeric"), _decimal_encoder(1000, 500))
    precision = column.precision if column.precision is not None else 18
    scale = column.scale if column.scale is not None else 0
    return ColumnCodec(column, PgColumnType(f"numeric({precision},{scale})"), _decimal_encoder(precision, scale))


def codec_for(column: SourceColumn, table: TableId | None = None) -> ColumnCodec:
    """The PostgreSQL type and encoder of ``column``; :class:`UnsupportedTypeError` for types we cannot map."""
    t = column.sql_type.lower().strip()
    if t in _FIXED:
        pg_type, encoder, keeps = _FIXED[t]
        return ColumnCodec(column, PgColumnType(pg_type, keeps_previous_on_delete=keeps), encoder)
    if t in ("decimal", "numeric"):
        return _decimal_codec(column)
    if t in ("time", "datetime2", "datetimeoffset"):
        digits = _time_precision(column, 7)
        if t == "time":
            return ColumnCodec(column, PgColumnType(f"time({digits})"), _enc_time)
        if t == "datetime2":
            return ColumnCodec(column, PgColumnType(f"timestamp({digits})"), _enc_timestamp)
        return ColumnCodec(column, PgColumnType(f"timestamptz({digits})", offset_companion=True), _enc_datetimeoffset)
    if t in ("char", "nchar", "varchar", "nvarchar"):
        length = _char_length(column)
        pg_type = "text" if length is None else f"varchar({length})"
        return ColumnCodec(column, PgColumnType(pg_type), _text_encoder(length))
    where = f"{table}." if table is not None else ""
    msg = f"column {where}{column.name} has SQL Server type {column.sql_type!r}, which mssql2pg cannot map"
    raise UnsupportedTypeError(
        msg,
        hint="exclude the column from the capture instance (captured_column_list) or report the type so a "
        "mapping can be added; mssql2pg never falls back to text silently",
    )
