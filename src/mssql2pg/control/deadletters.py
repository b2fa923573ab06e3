"""The dead-letter store ``mssql2pg.dead_letters``: changes the target refused, kept with everything needed to
understand and re-apply them.

This module only stores and reads rows. What a refused change is, how its values become JSON and how a retry
re-applies it belong to the sink (:mod:`mssql2pg.sink.deadletters`), which hands over the ``change`` payload
ready-made and messages already scrubbed of credentials. A letter is recorded in the caller's transaction: the
applier writes it together with the good rows of its group and the checkpoint, so a change is either applied or
dead-lettered, exactly once.

Readers run before a pipeline's first start too: with no control schema yet there is nothing dead-lettered.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mssql2pg.control import statements as sql
from mssql2pg.control.migrations import control_columns, control_table_exists
from mssql2pg.pgconn import PgConnection, fetch
from mssql2pg.positions import Lsn


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    """A refused change to insert: where it came from, the change as JSON-ready payload, and why it failed."""

    source_table: str
    capture_instance: str | None
    commit_lsn: Lsn
    seqval: Lsn
    operation: int
    source_tran_id: bytes | None
    change: dict[str, Any]
    error_class: str
    message: str
    stack: str


@dataclass(frozen=True, slots=True)
class StoredDeadLetter:
    """A row of ``mssql2pg.dead_letters``."""

    id: int
    pipeline: str
    source_table: str
    capture_instance: str | None
    commit_lsn: str
    seqval: bytes | None
    operation: int | None
    source_tran_id: bytes | None
    change: dict[str, Any]
    error_class: str
    message: str
    stack: str | None
    first_attempt_at: datetime
    last_attempt_at: datetime
    retry_count: int
    status: str
    last_error: str | None = None
    """The latest retry's refusal (``DatabaseError [23514]: ...``); ``error_class`` and ``message`` keep why the
    change was dead-lettered."""

    @classmethod
    def from_row(cls, row: list[Any]) -> StoredDeadLetter:
        values = list(row)
        if isinstance(values[8], str):
            values[8] = json.loads(values[8])
        return cls(*values)


def record_dead_letters(conn: PgConnection, pipeline: str, letters: Sequence[DeadLetterRecord]) -> list[int]:
    """Insert ``letters`` in the caller's transaction; return their ids."""
    ids: list[int] = []
    for letter in letters:
        result = fetch(
            conn,
            sql.INSERT_DEAD_LETTER,
            pipeline=pipeline,
            source_table=letter.source_table,
            capture_instance=letter.capture_instance,
            commit_lsn=letter.commit_lsn.raw,
            commit_lsn_text=str(letter.commit_lsn),
            seqval=letter.seqval.raw,
            operation=letter.operation,
            source_tran_id=letter.source_tran_id,
            change=json.dumps(letter.change, ensure_ascii=False),
            error_class=letter.error_class,
            message=letter.message,
            stack=letter.stack,
        )
        ids.append(int(result[0][0]))
    return ids


def list_dead_letters(
    conn: PgConnection, *, status: str | None = None, pipeline: str | None = None, limit: int | None = None
) -> list[StoredDeadLetter]:
    """Dead letters, oldest first, optionally of one status and one pipeline, at most ``limit``."""
    if not control_table_exists(conn, "dead_letters"):
        return []
    statement = sql.select_dead_letters(
        by_status=status is not None,
        by_pipeline=pipeline is not None,
        limit=bool(limit),
        last_error=_has_last_error(conn),
    )
    params: dict[str, Any] = {}
    if status is not None:
        params["status"] = status
    if pipeline is not None:
        params["pipeline"] = pipeline
    if limit:
        params["limit"] = limit
    return [StoredDeadLetter.from_row(r) for r in fetch(conn, statement, **params)]


def get_dead_letter(conn: PgConnection, letter_id: int) -> StoredDeadLetter | None:
    """One dead letter, locked for the rest of the caller's transaction (a retry updates it)."""
    if not control_table_exists(conn, "dead_letters"):
        return None
    rows = conn.run(sql.select_dead_letter(last_error=_has_last_error(conn)), id=letter_id)
    return StoredDeadLetter.from_row(rows[0]) if rows else None


def ignore_dead_letter(conn: PgConnection, letter_id: int) -> bool:
    """Mark a pending dead letter ``ignored``; False if there is no such pending dead letter."""
    if not control_table_exists(conn, "dead_letters"):
        return False
    return bool(conn.run(sql.IGNORE_DEAD_LETTER, id=letter_id))


def resolve_dead_letter(conn: PgConnection, letter_id: int) -> None:
    """A retry applied the change: ``resolved``, with the attempt counted."""
    conn.run(sql.RESOLVE_DEAD_LETTER, id=letter_id)


def fail_dead_letter_retry(conn: PgConnection, letter_id: int, *, last_error: str) -> None:
    """A retry failed again: the dead letter stays pending, its own error as it was, the retry's in
    ``last_error``, the attempt counted. (The caller upgraded the control schema: ``dlq retry`` writes.)"""
    conn.run(sql.FAIL_DEAD_LETTER_RETRY, id=letter_id, last_error=last_error)


def _has_last_error(conn: PgConnection) -> bool:
    return "last_error" in control_columns(conn, "dead_letters")


def count_dead_letters_by_status(conn: PgConnection, pipeline: str) -> dict[str, int]:
    """Dead letters of ``pipeline`` per status: the ``mssql2pg_dead_letters{status}`` gauge and ``status``."""
    if not control_table_exists(conn, "dead_letters"):
        return {}
    return {str(s): int(n) for s, n in fetch(conn, sql.COUNT_DEAD_LETTERS_BY_STATUS, pipeline=pipeline)}
