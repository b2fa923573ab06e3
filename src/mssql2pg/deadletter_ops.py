"""What ``mssql2pg dlq`` does to the dead letters of a configured pipeline: list, show, retry, ignore.

Each operation opens its own connection to the target and closes it. ``retry`` also reads the source's CDC
catalog, exactly as ``mssql2pg run`` does, to know the table's columns and types; a letter of a table that
is not replicated any more (or not usable) is reported as not retryable. A letter of a conflict with writes to
the target by someone else (``on_target_conflict: dead-letter``) is retried as "the source wins now": its key is
rewritten from the source's current row, as ``reconcile --repair`` does. The store (SQL, states) is
:mod:`mssql2pg.control.deadletters`; the retry's apply, in a savepoint, is :mod:`mssql2pg.sink.deadletters`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import sqlalchemy as sa

from mssql2pg import control
from mssql2pg.config import Config
from mssql2pg.control import StoredDeadLetter
from mssql2pg.pipeline.connections import source_engine, target_connector
from mssql2pg.pipeline.plan import discover_known, target_tables, usable_selections
from mssql2pg.positions import Lsn
from mssql2pg.reconcile.live import wait_for_checkpoint
from mssql2pg.reconcile.repair import repair_keys
from mssql2pg.sink import deadletters
from mssql2pg.sink.conflicts import ERROR_CLASS as CONFLICT_ERROR_CLASS
from mssql2pg.sink.deadletters import RetryOutcome
from mssql2pg.sink.schema import TargetTable
from mssql2pg.source import statements as src_statements

T = TypeVar("T")


def list_letters(config: Config, status: str | None, limit: int) -> list[StoredDeadLetter]:
    """This pipeline's dead letters in ``status`` (every status when None), oldest first, at most ``limit``."""
    return _with_target(
        config,
        lambda conn: control.list_dead_letters(conn, status=status, pipeline=config.pipeline.name, limit=limit),
    )


def get_letter(config: Config, letter_id: int) -> StoredDeadLetter | None:
    return _with_target(config, lambda conn: control.get_dead_letter(conn, letter_id))


def retry_letters(config: Config, letter_ids: Iterable[int]) -> list[tuple[int, RetryOutcome]]:
    """Re-apply each letter; one applied is resolved, one refused again stays pending with the new error. A
    change dead-lettered by ``on_target_conflict: dead-letter`` is not re-applied: its key is rewritten from the
    source's current row (:func:`_retry_conflict`)."""
    engine = source_engine(config)
    try:
        selections, instances, _gone = discover_known(engine, config)  # letters of a gone table: not retryable
        usable, _unusable = usable_selections(selections, instances)  # their letters are reported as not retryable
        tables = {ci.name: t for t in target_tables(usable, instances) for ci in t.instances}
        _with_target(config, _upgrade)
        outcomes: list[tuple[int, RetryOutcome]] = []
        for letter_id in letter_ids:
            letter = get_letter(config, letter_id)
            table = None if letter is None else tables.get(letter.capture_instance or "")
            if letter is not None and letter.status == "pending" and _is_conflict(letter) and table is not None:
                outcomes.append((letter_id, _retry_conflict(config, engine, table, letter)))
                continue
            outcome = _with_target(config, functools.partial(_retry_stored, letter_id, tables, config.stale_after))
            outcomes.append((letter_id, outcome))
        return outcomes
    finally:
        engine.dispose()


CONFLICT_SETTLE_SECONDS = 30.0
"""How long a retry of a conflict waits for the pipeline to apply the source up to where it stands now."""


def _is_conflict(letter: StoredDeadLetter) -> bool:
    return letter.error_class.startswith(CONFLICT_ERROR_CLASS)


def _retry_conflict(config: Config, engine: sa.Engine, table: TargetTable, letter: StoredDeadLetter) -> RetryOutcome:
    """The source wins, as of now: the letter's key is rewritten from the source's current row (removed if the
    source no longer has it) by :func:`~mssql2pg.reconcile.repair.repair_keys`, then the letter is resolved.

    Re-applying the stored change would undo whatever the source did to the key after it: a later change in the
    same source transaction (its LSN is the one the target row carries, so the LSN guard lets it through), or a
    later delete (hard delete mode leaves no row to compare against). The rewrite waits until the pipeline has
    applied the table up to the source's current max LSN: a change still on its way would be older than the
    rewritten row and count as a conflict of its own."""
    row = deadletters.row_from_payload(letter.change, table)
    ci = table.encoder(row.capture_instance).instance
    key = tuple(row.values[ci.column_names.index(k)] for k in ci.key_columns)
    shown = dict(zip(ci.key_columns, key, strict=True))
    with engine.connect() as conn:
        now = Lsn.from_bytes(conn.execute(src_statements.MAX_LSN).scalar())
        conn.rollback()
    connect = target_connector(config)
    target = connect()
    try:
        caught_up = wait_for_checkpoint(
            lambda: control.table_checkpoint(target, config.pipeline.name, letter.source_table),
            now,
            CONFLICT_SETTLE_SECONDS,
        )
    finally:
        target.close()
    if not caught_up:
        return RetryOutcome(
            letter.id,
            False,
            f"not retried, still pending: the pipeline is behind the source for {letter.source_table} (it has not "
            f"applied it up to {now} within {CONFLICT_SETTLE_SECONDS:g} s), and a rewrite now would race the "
            "changes still on their way. Start the pipeline or let it catch up (`mssql2pg status`), then retry",
        )
    written = repair_keys(engine, connect, config.pipeline.name, table, [key])
    _with_target(config, lambda conn: _resolve(conn, letter.id))
    if written:
        return RetryOutcome(letter.id, True, f"resolved: key {shown} rewritten from the source's current row")
    return RetryOutcome(letter.id, True, f"resolved: the source no longer has key {shown}; it is not in the target")


def _retry_stored(letter_id: int, tables: dict[str, TargetTable], stale_after: float | None, conn: Any) -> RetryOutcome:
    return deadletters.retry(conn, letter_id, tables, stale_after=stale_after)


def _resolve(conn: Any, letter_id: int) -> None:
    conn.run("BEGIN")
    control.resolve_dead_letter(conn, letter_id)
    conn.run("COMMIT")


def _upgrade(conn: Any) -> None:
    """``dlq retry`` writes the dead letters (``last_error``, version 8): bring an existing control schema up to
    this version first, as a start of the pipeline would (nothing to do before a first start: no letters)."""
    if control.control_table_exists(conn, "schema_version"):
        conn.run("BEGIN")
        try:
            control.ensure_control_schema(conn)
        except BaseException:
            conn.run("ROLLBACK")
            raise
        conn.run("COMMIT")


def ignore_letters(config: Config, letter_ids: Iterable[int]) -> list[tuple[int, bool]]:
    """Mark each pending letter ignored; False for an id that is not a pending dead letter."""
    return _with_target(config, lambda conn: [(i, control.ignore_dead_letter(conn, i)) for i in letter_ids])


def _with_target(config: Config, work: Callable[[Any], T]) -> T:
    conn = target_connector(config)()
    try:
        return work(conn)
    finally:
        conn.close()
