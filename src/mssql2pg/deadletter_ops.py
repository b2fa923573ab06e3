"""What ``mssql2pg dlq`` does to the dead letters of a configured pipeline: list, show, retry, ignore.

Each operation opens its own connection to the target and closes it. ``retry`` also reads the source's CDC
catalog, exactly as ``mssql2pg run`` does, to know the table's columns and types; a letter of a table that
is not replicated any more (or not usable) is reported as not retryable. The store (SQL, states) is
:mod:`mssql2pg.control.deadletters`; the retry's apply, in a savepoint, is :mod:`mssql2pg.sink.deadletters`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from mssql2pg import control
from mssql2pg.config import Config
from mssql2pg.control import StoredDeadLetter
from mssql2pg.pipeline.connections import source_engine, target_connector
from mssql2pg.pipeline.plan import discover, target_tables, usable_selections
from mssql2pg.sink import deadletters
from mssql2pg.sink.deadletters import RetryOutcome

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
    """Re-apply each letter; one applied is resolved, one refused again stays pending with the new error."""
    engine = source_engine(config)
    try:
        selections, instances = discover(engine, config)
    finally:
        engine.dispose()
    usable, _unusable = usable_selections(selections, instances)  # their letters are reported as not retryable
    tables = {ci.name: t for t in target_tables(usable, instances) for ci in t.instances}

    def work(conn: Any) -> list[tuple[int, RetryOutcome]]:
        _upgrade(conn)
        return [(i, deadletters.retry(conn, i, tables, stale_after=config.stale_after)) for i in letter_ids]

    return _with_target(config, work)


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
