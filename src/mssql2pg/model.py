"""The values that flow from the source reader to the applier.

This module is the contract between ``mssql2pg.source`` and ``mssql2pg.sink``. The reader turns change-table
rows into :class:`ChangeRow` values and hands them over in :class:`TxChunk` pieces, so that a source
transaction of any size can be streamed with bounded memory:

* every chunk belongs to exactly one source transaction (one commit LSN);
* the chunks of one transaction arrive consecutively, ``first`` set on the first and ``last`` on the last
  (a small transaction is one chunk with both set);
* transactions arrive in commit-LSN order, and rows inside one in (command_id, seqval, operation) order
  (``__$command_id`` first, as current SQL Server documentation says; KB 3030352);
* a :class:`Heartbeat` says "everything up to ``lsn`` has been delivered" and only ever comes between
  transactions. It lets the checkpoint advance while the source is idle.

The applier may only commit a PostgreSQL transaction after a chunk with ``last`` set (or a heartbeat), which
is what keeps source transactions whole.

Canonical values: whatever the driver returned, ``ChangeRow.values`` hold these Python types, chosen by the
column's SQL Server type (``SourceColumn.sql_type``), so the sink never needs to know which driver or
backend (SQL Server or the emulator) produced them. NULL is ``None``; ``''`` stays ``''``.

=============================================  ==============================================================
SQL Server type                                Python value
=============================================  ==============================================================
bit                                            ``bool``
tinyint, smallint, int, bigint                 ``int``
decimal, numeric, money, smallmoney            ``decimal.Decimal`` (exact, as stored)
float, real                                    ``float``
date                                           ``datetime.date``
time                                           ``datetime.time`` (naive)
datetime, datetime2, smalldatetime             ``datetime.datetime`` (naive: SQL Server keeps wall-clock time)
datetimeoffset                                 ``datetime.datetime`` aware, tzinfo = the ORIGINAL offset
char, varchar, nchar, nvarchar, text, ntext    ``str``
xml                                            ``str``
binary, varbinary, image, rowversion/timestamp ``bytes``
uniqueidentifier                               ``uuid.UUID`` (in SQL Server's canonical text order)
hierarchyid, geography, geometry               ``bytes`` (the serialized CLR value; lossless), or EWKB with
                                               ``SourceColumn.as_wkb`` (option ``spatial: wkb``)
sql_variant                                    ``str`` (its value converted to text; see docs/types.md)
=============================================  ==============================================================
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mssql2pg.positions import Lsn


class Operation(enum.IntEnum):
    """``__$operation`` codes of a SQL Server change table."""

    DELETE = 1
    INSERT = 2
    UPDATE_BEFORE = 3
    UPDATE_AFTER = 4


TARGET_CONFLICT_KINDS: tuple[str, ...] = ("update_missing", "delete_missing", "insert_exists", "foreign_lsn")
"""What a write to the target by someone other than the pipeline looks like when the pipeline next applies a
change to the same key (the one list of kinds: metric labels, logs, dead-letter error classes, the control
table; the applier's SQL uses each kind's position + 1 as its code):

* ``update_missing``: an update whose key is not in the target (deleted there, or soft-deleted);
* ``delete_missing``: a delete whose key is not in the target;
* ``insert_exists``: an insert whose key the target already holds, live, with an older commit LSN (a row
  inserted there; a soft-deleted row or a re-delivery with the same LSN is not a conflict);
* ``foreign_lsn``: the target row's ``_cdc_lsn`` is one the pipeline cannot have written before this change
  (NULL, or later than the change's commit LSN).

See docs/operations.md (runbook "target written by others")."""


@dataclass(frozen=True, slots=True, order=True)
class TableId:
    """A two-part table name, kept exactly as SQL Server spells it."""

    schema: str
    name: str

    @classmethod
    def parse(cls, text: str, default_schema: str = "dbo") -> TableId:
        """Parse ``schema.table``, ``[schema].[table]`` or ``table`` (schema defaults to ``dbo``)."""
        parts = _split_two_part_name(text)
        if len(parts) == 1:
            return cls(default_schema, parts[0])
        return cls(parts[0], parts[1])

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}"


def _split_two_part_name(text: str) -> list[str]:
    parts: list[str] = []
    buf: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in '["':
            close = "]" if ch == "[" else '"'
            i += 1
            while i < n:
                if text[i] == close:
                    if i + 1 < n and text[i + 1] == close:
                        buf.append(close)
                        i += 2
                        continue
                    break
                buf.append(text[i])
                i += 1
            else:
                msg = f"unterminated quoted name in {text!r}"
                raise ValueError(msg)
            i += 1
        elif ch == ".":
            parts.append("".join(buf))
            buf = []
            i += 1
        else:
            buf.append(ch)
            i += 1
    parts.append("".join(buf))
    if len(parts) > 2 or any(p == "" for p in parts):
        msg = f"not a table name (want schema.table): {text!r}"
        raise ValueError(msg)
    return parts


@dataclass(frozen=True, slots=True)
class SourceColumn:
    """One captured column of a capture instance, as ``cdc.captured_columns`` and the source describe it."""

    name: str
    ordinal: int  # column_ordinal: 1-based position among captured columns; the update-mask bit
    sql_type: str  # SQL Server type name, lower case: "int", "nvarchar", "decimal", ...
    max_length: int | None = None  # characters for (n)char/(n)varchar, bytes for binary; -1 = (max)
    precision: int | None = None
    scale: int | None = None
    nullable: bool = True
    column_id: int | None = None
    dropped: bool = False  # captured, but no longer in the source table: NULL in every later change row
    default: str | None = None  # the source column's default as sys.default_constraints spells it: '((0))'
    collation: str | None = None  # sys.columns.collation_name of a character column: its code page (values.py)
    as_wkb: bool = False  # geography/geometry read as EWKB (STAsBinary + STSrid; per-table option ``spatial``)


@dataclass(frozen=True, slots=True)
class CaptureInstance:
    """A capture instance: one change table over one source table, frozen at its captured columns."""

    name: str
    source: TableId
    start_lsn: Lsn
    columns: tuple[SourceColumn, ...]
    key_columns: tuple[str, ...]
    object_id: int | None = None
    supports_net_changes: bool = False
    create_date: datetime | None = None

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)


@dataclass(frozen=True, slots=True)
class ChangeRow:
    """One row of a change table. ``values`` follow ``CaptureInstance.columns`` order.

    ``fault`` is set when the reader could not decode some value (read-side validation): it names the table,
    the column(s) and the problem, ``values`` then hold the canonical value where a column decoded and the
    driver's value (bytes-likes as ``bytes``, unknown objects as their ``repr``) where it did not. Such a row
    is never applied; the applier makes it a dead letter (``SourceValueError``)."""

    table: TableId
    capture_instance: str
    commit_lsn: Lsn
    seqval: Lsn
    operation: Operation
    values: tuple[Any, ...]
    command_id: int | None = None
    update_mask: bytes | None = None
    fault: str | None = None


@dataclass(frozen=True, slots=True)
class TxChunk:
    """A consecutive piece of one source transaction (see the module docstring for the rules)."""

    commit_lsn: Lsn
    rows: Sequence[ChangeRow]
    first: bool = True
    last: bool = True
    commit_time: datetime | None = None
    tran_id: bytes | None = None


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Everything with a commit LSN at or below ``lsn`` has been delivered; nothing is pending."""

    lsn: Lsn
    source_time: datetime | None = None
    tables: tuple[TableId, ...] = field(default=())


ReaderItem = TxChunk | Heartbeat
