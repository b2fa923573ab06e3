"""Dead letters, the sink's side: what a refused change is, its payload as JSON, and re-applying it.

The rows are kept by the dead-letter store (:mod:`mssql2pg.control.deadletters`). A dead letter is written in
the same PostgreSQL transaction as the good rows of its group and the checkpoint, so a change is either applied,
or dead-lettered, exactly once (a crash before that commit re-delivers the group and the isolation runs again).

The ``change`` column holds the row as JSON that round-trips to the canonical Python values of
:mod:`mssql2pg.model`: ``{"values": {source column: value}, "types": {source column: SQL Server type}, ...}``.
JSON has no bytes, decimals or dates, so those are tagged: ``{"$hex": "..."}`` for bytes, ``{"$decimal": "1.50"}``,
``{"$datetime": ISO}``, ``{"$date": ...}``, ``{"$time": ...}``, ``{"$uuid": ...}``, ``{"$float": "nan"}`` for
non-finite floats, and ``{"$text_utf16le": hex}`` for text PostgreSQL's jsonb cannot hold (NUL, unpaired
surrogates) - which is typically exactly the value that made the row fail, so it must be kept losslessly.

Messages go through :func:`mssql2pg.classify.scrub`: a dead letter never contains credentials.
"""

from __future__ import annotations

import math
import traceback
import uuid
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

from mssql2pg import control
from mssql2pg.classify import classify, postgres_error, scrub, server_fields, sqlstate
from mssql2pg.errors import TerminalError
from mssql2pg.model import ChangeRow, Operation, SourceColumn
from mssql2pg.pgconn import PgConnection, fetch
from mssql2pg.positions import Lsn
from mssql2pg.sink import statements as sql
from mssql2pg.sink.schema import TargetTable
from mssql2pg.sink.validation import check_copied, check_written

PAYLOAD_VERSION = 1
SOURCE_VALUE_ERROR = "SourceValueError"  # error class of a change the reader could not decode (read-side)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One refused change, ready to be inserted into ``mssql2pg.dead_letters``."""

    table: TargetTable
    row: ChangeRow
    tran_id: bytes | None
    error_class: str
    message: str
    stack: str
    commit_time: datetime | None = None

    def to_record(self) -> control.DeadLetterRecord:
        """The row the dead-letter store keeps, with the change as JSON-ready payload."""
        row = self.row
        return control.DeadLetterRecord(
            source_table=str(row.table),
            capture_instance=row.capture_instance,
            commit_lsn=row.commit_lsn,
            seqval=row.seqval,
            operation=int(row.operation),
            source_tran_id=self.tran_id,
            change=change_payload(self.table, row, self.tran_id, self.commit_time),
            error_class=self.error_class,
            message=self.message,
            stack=self.stack,
        )


def dead_letter(
    table: TargetTable,
    row: ChangeRow,
    error: BaseException,
    tran_id: bytes | None,
    commit_time: datetime | None = None,
) -> DeadLetter:
    """Describe why ``row`` was refused: error class with SQLSTATE when PostgreSQL refused it, scrubbed message."""
    return DeadLetter(
        table=table,
        row=row,
        tran_id=tran_id,
        commit_time=commit_time,
        error_class=error_class(error),
        message=scrub(error_message(error)),
        stack=scrub("".join(traceback.format_exception(error))),
    )


def error_class(error: BaseException) -> str:
    """``UnstorableValueError``, or the driver's class with the SQLSTATE: ``DatabaseError [23505]``."""
    server = postgres_error(error)
    if server is not None:
        return f"{type(server).__name__} [{sqlstate(server) or '?'}]"
    return type(error).__name__


def error_message(error: BaseException) -> str:
    """A readable one-paragraph reason: PostgreSQL's message, detail and context when it has them."""
    fields = server_fields(error)
    if fields is None:
        return str(error).split("\n  hint:")[0]
    parts = [str(fields.get("M", "")).strip()]
    parts += [f"{label}: {fields[k]}" for k, label in (("D", "detail"), ("W", "where")) if fields.get(k)]
    return "; ".join(p for p in parts if p)


# --- the change as JSON ---------------------------------------------------------------------------------------


def encode_value(value: Any) -> Any:  # noqa: PLR0911 - one return per canonical type reads best
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"$float": repr(value)}
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return {"$text_utf16le": value.encode("utf-16-le", "surrogatepass").hex()}
        return value if "\x00" not in value else {"$text_utf16le": value.encode("utf-16-le").hex()}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$hex": bytes(value).hex()}
    if isinstance(value, Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, date):
        return {"$date": value.isoformat()}
    if isinstance(value, time):
        return {"$time": value.isoformat()}
    if isinstance(value, uuid.UUID):
        return {"$uuid": str(value)}
    return {"$repr": repr(value)}


_DECODERS: dict[str, Any] = {
    "$float": float,
    "$text_utf16le": lambda v: bytes.fromhex(v).decode("utf-16-le", "surrogatepass"),
    "$hex": bytes.fromhex,
    "$decimal": Decimal,
    "$datetime": datetime.fromisoformat,
    "$date": date.fromisoformat,
    "$time": time.fromisoformat,
    "$uuid": uuid.UUID,
}


def decode_value(value: Any) -> Any:
    if isinstance(value, dict) and len(value) == 1:
        ((tag, text),) = value.items()
        decoder = _DECODERS.get(tag)
        if decoder is None:
            msg = f"dead letter value {value!r} cannot be turned back into a source value"
            raise ValueError(msg)
        return decoder(text)
    return value


def change_payload(
    table: TargetTable, row: ChangeRow, tran_id: bytes | None, commit_time: datetime | None = None
) -> dict[str, Any]:
    columns = table.encoder(row.capture_instance).instance.columns
    payload: dict[str, Any] = {
        "commit_time": None if commit_time is None else commit_time.isoformat(),
        "version": PAYLOAD_VERSION,
        "source_table": str(row.table),
        "target_table": f"{table.schema}.{table.name}",
        "capture_instance": row.capture_instance,
        "commit_lsn": str(row.commit_lsn),
        "seqval": str(row.seqval),
        "operation": int(row.operation),
        "command_id": row.command_id,
        "source_tran_id": tran_id.hex() if tran_id is not None else None,
        "values": {c.name: encode_value(v) for c, v in zip(columns, row.values, strict=True)},
        "types": {c.name: c.sql_type for c in columns},
    }
    if row.fault is not None:  # read-side validation: the values are partly raw (see ChangeRow.fault)
        payload["source_fault"] = row.fault
    return payload


def row_from_payload(payload: dict[str, Any], table: TargetTable) -> ChangeRow:
    """The :class:`ChangeRow` a dead letter holds, in its capture instance's column order (for ``dlq retry``)."""
    values = payload["values"]
    columns: tuple[SourceColumn, ...] = table.encoder(payload["capture_instance"]).instance.columns
    missing = [c.name for c in columns if c.name not in values]
    if missing:
        msg = f"dead letter has no value for column(s) {missing} of {table.source}; the capture instance changed"
        raise ValueError(msg)
    return ChangeRow(
        table=table.source,
        capture_instance=payload["capture_instance"],
        commit_lsn=Lsn.parse(payload["commit_lsn"]),
        seqval=Lsn.parse(payload["seqval"]),
        operation=Operation(int(payload["operation"])),
        values=tuple(decode_value(values[c.name]) for c in columns),
        command_id=payload.get("command_id"),
    )


# --- re-applying a stored dead letter (``mssql2pg dlq retry``) ------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetryOutcome:
    id: int
    resolved: bool
    message: str


def retry(
    conn: PgConnection,
    letter_id: int,
    tables: dict[str, TargetTable],
    *,
    stale_after: float | None = None,
    now: datetime | None = None,
) -> RetryOutcome:
    """Re-apply one pending dead letter to its target table, with the applier's rules (last commit LSN wins,
    delete mode, stale flag, write validation), and mark it ``resolved``; if it fails again, keep it pending
    with the new error, the attempt time and one more retry. One PostgreSQL transaction per dead letter.

    ``tables`` maps capture instance names to the target tables they feed (built from the configuration).
    """
    conn.run("BEGIN")
    try:
        outcome = _retry_in_transaction(conn, letter_id, tables, stale_after, now)
    except BaseException:
        conn.run("ROLLBACK")
        raise
    conn.run("COMMIT")
    return outcome


def _retry_in_transaction(
    conn: PgConnection,
    letter_id: int,
    tables: dict[str, TargetTable],
    stale_after: float | None,
    now: datetime | None,
) -> RetryOutcome:
    letter = control.get_dead_letter(conn, letter_id)
    if letter is None:
        return RetryOutcome(letter_id, False, "no such dead letter")
    if letter.status != "pending":
        return RetryOutcome(letter_id, False, f"not retried: status is {letter.status}")
    if letter.error_class == SOURCE_VALUE_ERROR:
        return RetryOutcome(
            letter_id,
            False,
            f"not retried, still pending: the change was refused when it was READ from the source ({letter.message}); "
            "a retry would only read the same stored value again. Fix the row at the source (an update there is "
            f"replicated as a new change) or run `mssql2pg resync {letter.source_table}`, then "
            f"`mssql2pg dlq ignore {letter_id}`",
        )
    table = tables.get(letter.capture_instance or "")
    if table is None:
        return RetryOutcome(
            letter_id,
            False,
            f"capture instance {letter.capture_instance!r} of {letter.source_table} is not replicated by this "
            "configuration; retry with the configuration of the pipeline that wrote it",
        )
    conn.run("SAVEPOINT mssql2pg_dlq_retry")
    try:
        changed = _apply_one(conn, table, letter.change, stale_after, now)
    except Exception as exc:
        if not isinstance(classify(exc), TerminalError):
            raise  # connection trouble: nothing was recorded, the dead letter stays as it was
        conn.run("ROLLBACK TO SAVEPOINT mssql2pg_dlq_retry")
        message = scrub(error_message(exc))
        control.fail_dead_letter_retry(conn, letter_id, last_error=f"{error_class(exc)}: {message}")
        return RetryOutcome(letter_id, False, f"failed again: {message}")
    control.resolve_dead_letter(conn, letter_id)
    return RetryOutcome(letter_id, True, "applied; resolved" if changed else NOTHING_TO_APPLY)


NOTHING_TO_APPLY = (
    "resolved, nothing to apply: the target already holds a later change of this key (or, for a delete, no row)"
)

_RETRY_STAGE = 9_999  # staging index of a retry session (the applier's are 0..tables-1)


def _apply_one(
    conn: PgConnection, table: TargetTable, change: dict[str, Any], stale_after: float | None, now: Any
) -> bool:
    """Apply the stored change; False when the target had nothing to do for it (it already holds a later change
    of the key: the LSN guard kept that row; or a delete found no row)."""
    row = row_from_payload(change, table)
    fields = table.encoder(row.capture_instance).encode(row.values)
    commit_time = datetime.fromisoformat(change["commit_time"]) if change.get("commit_time") else None
    time_text = "\\N" if commit_time is None else commit_time.replace(tzinfo=None).isoformat(sep=" ")
    stale = False
    if stale_after is not None and commit_time is not None:
        reference = now or (datetime.now(commit_time.tzinfo) if commit_time.tzinfo else datetime.now())
        stale = (reference - commit_time).total_seconds() > stale_after
    op = 1 if row.operation == Operation.UPDATE_BEFORE else int(row.operation)  # a key change's old key: delete
    line = f"1{sql.staging_middle(op, row.commit_lsn.raw, time_text)[stale]}{fields}\n"
    conn.run(f"DROP TABLE IF EXISTS {sql.staging_name(_RETRY_STAGE)}")
    conn.run(sql.create_staging(table, _RETRY_STAGE))
    conn.run(sql.copy_into_staging(table, _RETRY_STAGE), stream=[line.encode("utf-8")])
    check_copied(conn, table, 1)
    ((upserted, upserts, deleted, deletes),) = fetch(conn, sql.apply_staged(table, _RETRY_STAGE))
    restore = sql.restore_kept_columns(table, _RETRY_STAGE)
    if restore is not None:
        conn.run(restore)
    check_written(conn, table, _RETRY_STAGE)
    conn.run(f"DROP TABLE {sql.staging_name(_RETRY_STAGE)}")
    return int(upserted) + int(deleted) > 0 or int(upserts) + int(deletes) == 0
