"""Validation at the read boundary (FR-014): change rows are checked against the captured column metadata.

Two kinds of fault, two outcomes (neither is ever a silent write):

* **a value** that the column's decoder refuses (text in an ``int`` column, a malformed date ...): the row is
  marked faulty (:attr:`mssql2pg.model.ChangeRow.fault`) and travels on to the applier, which writes it to
  ``mssql2pg.dead_letters`` with error class ``SourceValueError``; the rest of its transaction, its table and
  the other tables apply normally. :func:`faulty_values` is only called after the whole-row decode failed, so
  the normal path pays for one ``try`` per row and nothing else.
* **the shape** of a change table (rows of another width than ``5 + len(columns)``, a captured column the change
  table does not have, a capture instance without a usable key): :class:`~mssql2pg.source.errors.TableShapeError`,
  a table fault that pauses only that table (state ``paused``).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from mssql2pg.classify import is_undefined_column, server_message
from mssql2pg.model import CaptureInstance
from mssql2pg.source.errors import TableShapeError
from mssql2pg.source.values import RowDecoder, column_decoder

METADATA_WIDTH = 5  # __$start_lsn, __$seqval, __$operation, __$update_mask, __$command_id
RAW_TEXT_LIMIT = 200  # characters of a refused value quoted in a fault message

_PLAIN = (bool, bytes, str, int, float, Decimal, dt.date, dt.time, dt.timedelta, uuid.UUID)


def check_instance(ci: CaptureInstance) -> None:
    """Raise :class:`TableShapeError` if ``ci`` cannot be applied by key: no columns, no key, key not captured."""
    if not ci.columns:
        raise TableShapeError(ci.source, ci.name, "cdc.captured_columns lists no captured column")
    if not ci.key_columns:
        raise TableShapeError(
            ci.source,
            ci.name,
            "it has no primary key or unique index columns (cdc.index_columns is empty), so changes cannot be "
            "applied by key",
        )
    captured = set(ci.column_names)
    missing = [k for k in ci.key_columns if k not in captured]
    if missing:
        raise TableShapeError(ci.source, ci.name, f"key column(s) {missing} are not captured")


def check_width(ci: CaptureInstance, raw: Sequence[Any]) -> None:
    """Raise :class:`TableShapeError` unless a change-table row has the five ``__$`` columns plus one value per
    captured column (checked once per page: every row of a page comes from the same query)."""
    if len(raw) != METADATA_WIDTH + len(ci.columns):
        raise TableShapeError(
            ci.source,
            ci.name,
            f"a change row has {len(raw) - METADATA_WIDTH} captured values, cdc.captured_columns lists "
            f"{len(ci.columns)} columns",
        )


def missing_column_fault(ci: CaptureInstance, exc: BaseException) -> TableShapeError | None:
    """The shape fault behind a change-table query that failed because a captured column is not in the change
    table (PostgreSQL SQLSTATE 42703, SQL Server error 207), or ``None`` for any other failure."""
    if not is_undefined_column(exc):
        return None
    return TableShapeError(
        ci.source,
        ci.name,
        f"the change table does not deliver every captured column ({(server_message(exc) or '').strip()})",
    )


def raw_form(value: Any) -> Any:
    """A driver value as kept in a faulty row: picklable (it may cross to the applier's process) and encodable
    as dead-letter JSON. Bytes-likes become ``bytes``, plain values stay, anything else becomes its ``repr``."""
    if value is None or isinstance(value, _PLAIN):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    return repr(value)


def decode_row(ci: CaptureInstance, decode: RowDecoder, raw: Sequence[Any]) -> tuple[tuple[Any, ...], str | None]:
    """The row's values and None; or, when a value cannot be decoded, :func:`faulty_values` (the row is then a
    dead letter downstream). One ``try`` around the whole row: the per-column search runs only after a failure."""
    try:
        return decode(tuple(raw)), None
    except Exception:
        return faulty_values(ci, raw)


def faulty_values(ci: CaptureInstance, raw: Sequence[Any]) -> tuple[tuple[Any, ...], str]:
    """Decode column by column after the whole-row decode failed: the values (canonical where a column decoded,
    :func:`raw_form` where it did not) and a message naming the table, each refused column and its value."""
    values: list[Any] = []
    problems: list[str] = []
    for column, value in zip(ci.columns, raw, strict=True):
        if value is None:
            values.append(None)
            continue
        try:
            values.append(column_decoder(column)(value))
        except Exception as exc:
            values.append(raw_form(value))
            text = repr(value)
            if len(text) > RAW_TEXT_LIMIT:
                text = text[:RAW_TEXT_LIMIT] + "..."
            problems.append(f"column {column.name} ({column.sql_type}): cannot decode {text}: {exc}")
    if not problems:  # the row decoder refused the row as a whole (cannot happen after check_width)
        problems.append("the row could not be decoded")
    return tuple(values), f"{ci.source}: value read from capture instance {ci.name} refused: " + "; ".join(problems)
