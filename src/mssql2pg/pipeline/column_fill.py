"""Fill an added column in the rows the new capture instance never carried (issue 12 point 3).

After ``ALTER TABLE ... ADD COLUMN`` at the source, the new column's values reach the target through the new
capture instance, from its start LSN on. Two kinds of rows never get them that way:

* rows changed between the ``ALTER TABLE`` and the new instance's start: the old instance carried those changes,
  without the column (SQL Server never adds a column to an existing change table), and no change table holds the
  value;
* rows untouched since before the ``ALTER TABLE`` whose value SQL Server filled with a function of its own
  (``getdate()``, ``newid()``): the target column's default cannot know those values.

Once the table's committed checkpoint has passed where the new instance starts (so every change the old
instance carried is applied), :class:`ColumnFill` reads the source table in key order, in pages, and sets the
added columns of the target rows whose ``_cdc_lsn`` is still below that start, where their value differs. Each
page is one target transaction that first takes the table's write lock (as a resync or ``reconcile --repair``
does), so the applier waits for it instead of interleaving.

Why this is exact while the pipeline runs: a row the stream wrote since the new instance started carries the
column from the change itself and is not touched (``_cdc_lsn`` is at or above the start; a change applied between
the read and the page's update moves it there too, and the update's condition is re-checked under the lock). A
row still below the start gets the source's value as of the read; any later change of that row is in the new
instance and arrives with the whole row, after it. The metadata columns are not touched: the fill is no change
of the row, and conflict detection does not see one.

Done once per added column and capture instance, recorded ``column-filled`` in ``mssql2pg.schema_changes`` (with
how many rows were set); a crash before the record repeats the fill, which changes nothing the second time. Only
the process that writes the table's group fills (as it manages capture instances); with
``schema_evolution.fill_added_columns: false`` nothing is filled and ``mssql2pg reconcile --repair`` is the way.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
import structlog

from mssql2pg import control
from mssql2pg.config import Config
from mssql2pg.model import CaptureInstance
from mssql2pg.observability import Observability
from mssql2pg.pgconn import PgConnection
from mssql2pg.pipeline.connections import target_connector
from mssql2pg.pipeline.evolution import publish_schema_changes, tell
from mssql2pg.pipeline.periodic import Periodic
from mssql2pg.pipeline.plan import control_state
from mssql2pg.positions import Lsn
from mssql2pg.sink import statements as sql
from mssql2pg.sink.schema import TargetColumn, TargetTable
from mssql2pg.sink.types import UnstorableValueError
from mssql2pg.sink.validation import check_copied
from mssql2pg.source.snapshot import read_page

log = structlog.get_logger(component="schema")

PAGE_ROWS = 5_000
"""Source rows read and filled per target transaction: the applier waits for one page at most."""

PROGRESS_SECONDS = 10.0
"""A long fill logs its progress this often."""

FILLED_STATUSES = ("auto-applied", "approved")
"""The ``add-column`` records whose column exists in the target (a ``failed`` one's DDL did not run)."""


@dataclass(frozen=True)
class Filled:
    """What one table's fill did: rows read from the source, target rows set, rows left as they were because a
    value could not be read or stored."""

    read: int = 0
    updated: int = 0
    skipped: int = 0
    complete: bool = True
    """False when the pipeline closed the filler between two pages: nothing is recorded, the next one starts
    again (the pages done stay done: they are not set a second time)."""


@dataclass
class ColumnFill(Periodic):
    """Looks every ``interval`` seconds, while ``is_writer()`` says this process writes the tables' group, for
    added columns to fill (module docstring); ends when none of ``tables`` has any left."""

    config: Config
    engine: sa.Engine
    tables: Sequence[TargetTable]
    obs: Observability
    is_writer: Callable[[], bool]
    interval: float = 2.0
    thread_name = "mssql2pg-column-fill"
    tick_at_start = True

    def period(self) -> float:
        return self.interval

    def tick(self) -> bool:
        try:
            return self.check_once() == []
        except Exception as exc:  # a database away, a lock wait cut short: tried again at the next look
            log.warning("filling added columns failed; trying again", error=str(exc).splitlines()[0])
            return False

    def check_once(self) -> list[str]:
        """One look: fill the tables whose turn it is. Returns the tables still waiting (their checkpoint has
        not passed the new instance's start yet, or this process is not the writer); empty when none is left."""
        pending = self._pending()
        if not pending:
            return []
        if not self.is_writer():
            return [str(t.source) for t in pending]
        known = control_state(self.config)
        waiting: list[str] = []
        for table, columns in pending.items():
            ci = table.capture_instance
            position = known.positions.get(str(table.source), known.checkpoint)
            if ci.start_lsn.is_null or position.is_null or position < ci.start_lsn.decrement():
                waiting.append(str(table.source))  # the old instance still holds changes the target lacks
                continue
            self._fill_table(table, ci, columns)
        return waiting

    def _pending(self) -> dict[TargetTable, list[control.StoredSchemaChange]]:
        """Per table: its added columns without a ``column-filled`` record."""
        conn = target_connector(self.config)()
        try:
            if not control.control_table_exists(conn, "schema_changes"):
                return {}
            recorded = control.list_schema_changes(conn, self.config.pipeline.name)
        finally:
            conn.close()
        done = {(c.source_table, c.capture_instance, c.column_name) for c in recorded if c.change == "column-filled"}
        by_name = {str(t.source): t for t in self.tables}
        pending: dict[TargetTable, list[control.StoredSchemaChange]] = {}
        for change in recorded:
            table = by_name.get(change.source_table)
            if (
                table is not None
                and change.change == "add-column"
                and change.status in FILLED_STATUSES
                and (change.source_table, change.capture_instance, change.column_name) not in done
            ):
                pending.setdefault(table, []).append(change)
        return pending

    def _fill_table(self, table: TargetTable, ci: CaptureInstance, changes: list[control.StoredSchemaChange]) -> None:
        captured = set(ci.column_names)
        columns = [c for c in table.columns if c.source_name in captured and not c.dropped]
        added = {ch.column_name for ch in changes}
        sources = {c.source_name for c in table.columns if c.name in added}  # a datetimeoffset: both its columns
        fill = [c for c in columns if c.source_name in sources]
        started = time.monotonic()
        log.info(
            "filling added columns", table=str(table.source), columns=[c.name for c in fill], since=str(ci.start_lsn)
        )
        connect = target_connector(self.config)
        filled = fill_rows(self.engine, connect, table, ci, fill, stop=self.closing) if fill else Filled()
        seconds = round(time.monotonic() - started, 3)
        if not filled.complete:
            log.info("filling added columns stopped with the pipeline", table=str(table.source), rows_read=filled.read)
            return
        log.info(
            "added columns filled",
            table=str(table.source),
            rows_read=filled.read,
            rows_set=filled.updated,
            rows_skipped=filled.skipped,
            seconds=seconds,
        )
        self._record(table, ci, changes, filled, {c.name for c in fill})

    def _record(
        self,
        table: TargetTable,
        ci: CaptureInstance,
        changes: list[control.StoredSchemaChange],
        filled: Filled,
        fill: set[str],
    ) -> None:
        conn = target_connector(self.config)()
        recorded: list[tuple[int, control.SchemaChange]] = []
        try:
            conn.run("BEGIN")
            for change in changes:
                detail = (
                    f"{filled.updated} rows set from the source table ({filled.read} read; counted for "
                    f"{', '.join(sorted(fill))} together, a row is set where any of them differs): the rows whose "
                    f"last change the target holds is older than {ci.name}'s start ({ci.start_lsn}) now hold the "
                    f"source's value of {change.column_name}"
                    if change.column_name in fill
                    else f"{change.column_name} is not captured by {ci.name}: nothing to fill"
                )
                if filled.skipped:
                    detail += (
                        f"; {filled.skipped} rows left as they were (a value that cannot be read or stored): "
                        f"`mssql2pg reconcile --repair {table.source}` lists them"
                    )
                done = control.SchemaChange(
                    change.source_table,
                    "column-filled",
                    "auto-applied",
                    capture_instance=change.capture_instance,
                    column_name=change.column_name,
                    detail=detail,
                )
                change_id, new = control.record_schema_change(conn, self.config.pipeline.name, done)
                if new:
                    recorded.append((change_id, done))
            conn.run("COMMIT")
            publish_schema_changes(conn, self.config.pipeline.name, self.obs)
        finally:
            conn.close()
        for change_id, done in recorded:
            tell(self.obs, change_id, done)


def fill_rows(
    engine: sa.Engine,
    connect: Callable[[], PgConnection],
    table: TargetTable,
    ci: CaptureInstance,
    columns: list[TargetColumn],
    *,
    page_rows: int | None = None,
    stop: Callable[[], bool] = lambda: False,
) -> Filled:
    """Set ``columns`` of ``table``'s rows whose ``_cdc_lsn`` is below ``ci``'s start to the source's values,
    reading the source through ``ci`` in key order, one page per target transaction (module docstring).
    ``stop()`` true between two pages ends it early (``complete`` False): a pipeline closing does not wait for
    a long table."""
    encoder = table.encoder(ci.name)
    conn = connect()
    read = updated = skipped = 0
    after: tuple[Any, ...] | None = None
    told = time.monotonic()
    try:
        conn.run(sql.create_fill_table(table))
        while True:
            page = read_page(engine, ci, ci.start_lsn, after, page_rows or PAGE_ROWS)
            lines: list[str] = []
            for row in page.rows:
                if row.fault is not None:
                    skipped += 1
                    continue
                try:
                    lines.append(encoder.encode(row.values) + "\n")
                except UnstorableValueError:
                    skipped += 1
            read += len(page.rows)
            if lines:
                updated += _fill_page(conn, table, columns, lines, ci.start_lsn)
            if page.final or page.last_key is None:
                return Filled(read, updated, skipped)
            if stop():
                return Filled(read, updated, skipped, complete=False)
            after = page.last_key
            if time.monotonic() - told >= PROGRESS_SECONDS:
                told = time.monotonic()
                log.info("filling added columns", table=str(table.source), rows_read=read, rows_set=updated)
    finally:
        conn.close()


def _fill_page(
    conn: PgConnection, table: TargetTable, columns: list[TargetColumn], lines: list[str], start: Lsn
) -> int:
    conn.run("BEGIN")
    try:
        conn.run(sql.lock_for_resync(table))
        conn.run(sql.copy_into_fill(table), stream=["".join(lines).encode("utf-8")])
        check_copied(conn, table, len(lines))
        conn.run(sql.fill_columns(table, columns), start=start.raw)
        updated = max(conn.row_count, 0)
        conn.run("COMMIT")
    except BaseException:
        with contextlib.suppress(Exception):  # a connection already lost has nothing to roll back
            conn.run("ROLLBACK")
        raise
    return updated
