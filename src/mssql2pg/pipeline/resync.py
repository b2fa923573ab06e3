"""``mssql2pg resync TABLE``: load one table again from a snapshot at a known LSN; streaming takes over from there.

The remedy for a table that cannot continue from the checkpoint (CDC cleanup removed changes it had not read:
state ``needs-resync``), for a missing target table, and for a target that drifted (hand edits, a restore).

How it stays exactly once (the details are in :mod:`mssql2pg.source.snapshot` and ``docs/operations.md``):

0. The table is paused first, and the resync waits until no pipeline writes it any more (every applier holds
   a session lock per table it writes; a running pipeline re-plans without a paused table within
   ``CONTROL_POLL_SECONDS``). So nothing is applied to the table between the snapshot and the resync's commit.
1. Snapshot at ``S`` = the source's max LSN read before the first row. The rows are loaded into the target table
   in ONE PostgreSQL transaction, each carrying commit LSN ``S``; rows of the target the snapshot did not
   contain (commit LSN below ``S``) are deleted, or flagged deleted in soft mode. Readers see the old content
   until the commit, then the new one.
2. In the same transaction the table's state becomes ``active`` with ``resume_after = S``; the pipeline
   checkpoint is not touched (the other tables are unaffected).
3. A running pipeline sees the table active again and re-plans; a pipeline that starts later does the same.
   The table's changes after ``S`` are applied; if the pipeline's checkpoint has meanwhile moved past ``S``
   (it kept replicating the other tables), the table first catches up from ``S`` to the checkpoint on its own
   (:func:`mssql2pg.pipeline.catchup.catch_up`), so no change between the two is skipped.

A change at or below ``S`` that arrives again is harmless: an upsert or delete never overwrites a row that
carries a later commit LSN.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from mssql2pg import control
from mssql2pg.config import Config, spatial_wkb_tables
from mssql2pg.errors import ConfigError, Mssql2pgError
from mssql2pg.model import TableId
from mssql2pg.pgconn import PgConnection
from mssql2pg.pipeline.connections import source_engine, target_connector
from mssql2pg.pipeline.evolution import evolve_before_load
from mssql2pg.pipeline.plan import discover_known, target_tables, usable_selections
from mssql2pg.positions import Lsn
from mssql2pg.sink import statements as sql
from mssql2pg.sink.applier import Applier, ApplySettings
from mssql2pg.sink.errors import UnmappableTableError
from mssql2pg.sink.schema import TargetTable
from mssql2pg.source.errors import TableGoneError
from mssql2pg.source.snapshot import read_snapshot
from mssql2pg.source.values import with_spatial_as_wkb

log = structlog.get_logger(component="resync")

PROGRESS_SECONDS = 5.0
DEFAULT_WAIT_SECONDS = 120.0  # a running pipeline looks at table states every CONTROL_POLL_SECONDS (10 s)


class TableStillReplicatedError(Mssql2pgError):
    """The pipeline did not leave the table in time; nothing was changed (the table's state is restored)."""


@dataclass(frozen=True)
class ResyncResult:
    table: TableId
    lsn: Lsn
    rows: int  # rows read from the source table
    removed: int  # target rows the snapshot did not contain (deleted, or flagged deleted in soft mode)
    dead_letters: int  # rows PostgreSQL refused, kept in mssql2pg.dead_letters
    seconds: float


@dataclass
class SnapshotPosition:
    """The applier's :class:`~mssql2pg.control.CheckpointStore` during a resync: instead of moving the
    pipeline checkpoint, the commit removes what the snapshot did not contain and marks the table resynced."""

    pipeline: str
    table: TargetTable
    wait: float = DEFAULT_WAIT_SECONDS
    rows: int = 0
    removed: int = field(default=0, init=False)
    group: str = ""  # a table never recorded is recorded in this group; a recorded one keeps its group

    def read(self, conn: PgConnection) -> Lsn:
        return Lsn.NULL  # nothing of the snapshot is applied yet

    def adopt(self, conn: PgConnection, tables: Sequence[str]) -> dict[str, Lsn]:
        return {}  # the snapshot gives the table a position of its own, whichever group replicates it next

    def claim(self, conn: PgConnection, tables: Sequence[str]) -> None:
        """Wait until no pipeline writes the table any more (it re-plans without it once it sees it paused).
        Only then is the snapshot LSN read: nothing can have been applied to the table above it."""
        (table,) = tables
        started = time.monotonic()
        reported = started
        pause = threading.Event()
        while not control.try_claim_table(conn, self.pipeline, table):
            now = time.monotonic()
            if now - started >= self.wait:
                raise TableStillReplicatedError(
                    f"a pipeline still writes {table} after {self.wait:.0f} s (it was paused for the resync)",
                    hint="a pipeline running with --until-caught-up, or one stuck retrying, does not re-plan: wait "
                    "for it or stop it, then run resync again (or give it longer with --wait)",
                )
            if now - reported >= PROGRESS_SECONDS:
                reported = now
                log.info(
                    "waiting for the running pipeline to leave the table", table=table, waited_s=round(now - started)
                )
            pause.wait(0.2)

    def begin(self, conn: PgConnection) -> None:
        conn.run(sql.lock_for_resync(self.table))

    def write(self, conn: PgConnection, lsn: Lsn, commit_time: datetime | None) -> None:
        naive = commit_time.replace(tzinfo=None) if commit_time is not None else None
        params: dict[str, Any] = {"lsn": lsn.raw}
        if self.table.delete_mode == "soft":
            params["commit_time"] = naive
        conn.run(sql.remove_outside_snapshot(self.table), **params)
        self.removed = max(conn.row_count, 0)
        control.mark_resynced(
            conn,
            self.pipeline,
            source_table=str(self.table.source),
            capture_instance=self.table.capture_instance.name,
            target_table=f"{self.table.schema}.{self.table.name}",
            lsn=lsn,
            reason=f"resynced from a snapshot at LSN {lsn} ({self.rows} rows, {self.removed} removed)",
            group=self.group,
        )


def resync_table(config: Config, table_name: str, *, wait: float = DEFAULT_WAIT_SECONDS) -> ResyncResult:
    """Snapshot ``table_name`` into the target (see the module docstring). Raises with a hint on any problem."""
    try:
        wanted = TableId.parse(table_name)
    except ValueError as exc:
        raise ConfigError(str(exc), hint="name the table as schema.table, e.g. dbo.orders") from exc
    started = time.monotonic()
    engine = source_engine(config)
    try:
        selections, instances, gone = discover_known(engine, config)
        if wanted in gone:
            fault = TableGoneError(wanted)
            raise ConfigError(f"cannot resync {fault.args[0]}", hint=fault.hint)
        selection = next((s for s in selections if s.source == wanted), None)
        if selection is None:
            known = ", ".join(str(s.source) for s in selections) or "none"
            raise ConfigError(
                f"{wanted} is not replicated by pipeline {config.pipeline.name!r} (it replicates: {known})",
                hint="check the spelling, or add the table under `tables:` in the configuration",
            )
        unmappable = next(
            (
                f
                for f in usable_selections(selections, instances)[1]
                if isinstance(f, UnmappableTableError) and f.table == wanted
            ),
            None,
        )
        if unmappable is not None:  # loading it would write where the pipeline cannot apply it
            raise ConfigError(str(unmappable).split("\n  hint:")[0], hint=unmappable.remediation.split("; then")[0])
        newest = instances[wanted][-1]  # after a capture-instance switch, the snapshot reads the new instance
        if wanted in spatial_wkb_tables(config, [wanted]):
            newest = with_spatial_as_wkb(newest)  # the same representation as streaming (spatial: wkb)
        target = target_tables([selection], instances)[0]  # the same target table the pipeline applies
        position = SnapshotPosition(config.pipeline.name, target, wait, group=config.pipeline.group_key)
        applier = Applier(
            target_connector(config),
            [target],
            config.pipeline.name,
            ApplySettings(stale_after=None),
            checkpoints=position,
        )
        progress = _Progress(wanted)
        previous = _pause_for_resync(config, wanted)
        try:
            evolve_before_load(config, target)
            applier.start()
            with read_snapshot(engine, newest, page_rows=config.reader.page_rows) as snapshot:
                log.info(
                    "resync started", table=str(wanted), snapshot_lsn=str(snapshot.lsn), target=target.qualified_name
                )
                for chunk in snapshot.chunks:
                    position.rows += len(chunk.rows)
                    applier.offer(chunk)
                    progress(position.rows)
                applier.flush()
        except BaseException:
            _restore_state(config, wanted, previous)
            raise
        finally:
            applier.close()
        dead = applier.stats.dead_letters.get(wanted, 0)
        result = ResyncResult(wanted, snapshot.lsn, position.rows, position.removed, dead, time.monotonic() - started)
        log.info(
            "resync committed",
            table=str(wanted),
            snapshot_lsn=str(result.lsn),
            rows=result.rows,
            removed=result.removed,
            dead_letters=result.dead_letters,
            seconds=round(result.seconds, 2),
        )
        return result
    finally:
        engine.dispose()


@dataclass(frozen=True)
class _Before:
    """A table's state before the resync paused it, and where it stood in the stream then."""

    state: tuple[str, str | None, str | None] | None
    position: Lsn = Lsn.NULL


def _pause_for_resync(config: Config, table: TableId) -> _Before:
    """Pause the table (a running pipeline re-plans without it) and return its state before, to restore if the
    resync fails, with its position: the checkpoint covering it (or its own, if later). A table already inactive
    keeps its state until the resync commits."""
    conn = target_connector(config)()
    try:
        conn.run("BEGIN")
        control.ensure_control_schema(conn)
        before = control.read_table_state(conn, config.pipeline.name, str(table))
        position = Lsn.NULL
        if before is None or before[0] == "active":
            position = control.table_checkpoint(conn, config.pipeline.name, str(table))
            control.set_table_state(
                conn,
                config.pipeline.name,
                str(table),
                "paused",
                reason="a resync is loading this table",
                remediation=f"wait for `mssql2pg resync {table}` to finish, or run it again if it was interrupted",
            )
        conn.run("COMMIT")
        return _Before(before, position)
    finally:
        conn.close()


def _restore_state(config: Config, table: TableId, before: _Before) -> None:
    """The resync failed (nothing of it was committed): put a table that was active back as it was, holding the
    position it had when it was paused. A running pipeline went on without it meanwhile, its checkpoint past
    the table's later changes: without the held position the table would resume from there and lose them; with
    it, it catches up from where it left (a change it had applied after that is replayed, which the LSN guard
    absorbs)."""
    if before.state is None or before.state[0] != "active":
        return
    reason, remediation = before.state[1] or "", before.state[2] or ""
    try:
        conn = target_connector(config)()
        try:
            conn.run("BEGIN")
            if not before.position.is_null:
                control.hold_table_position(conn, config.pipeline.name, str(table), before.position)
            control.set_table_state(
                conn, config.pipeline.name, str(table), "active", reason=reason, remediation=remediation
            )
            conn.run("COMMIT")
        finally:
            conn.close()
    except Exception as exc:
        log.error("could not restore the table's state after the failed resync", table=str(table), error=str(exc))


@dataclass
class _Progress:
    """Logs rows read and the rate every :data:`PROGRESS_SECONDS` (a large table takes a while)."""

    table: TableId
    _started: float = field(default_factory=time.monotonic)
    _last: float = field(default_factory=time.monotonic)

    def __call__(self, rows: int) -> None:
        now = time.monotonic()
        if now - self._last >= PROGRESS_SECONDS:
            self._last = now
            log.info(
                "resync progress", table=str(self.table), rows=rows, rows_per_s=round(rows / (now - self._started))
            )
