"""Follow the source's schema changes when the pipeline is (re)built (issue 12).

The reader notices a change of capture instances within one polling cycle and the pipeline rebuilds itself
(:class:`~mssql2pg.source.errors.CaptureInstancesChangedError`); a start after a crash sees the same. Either way,
before the applier starts, :func:`follow_schema` brings each existing target table up to the capture instances
as they are now (:mod:`mssql2pg.sink.evolution`), and records every change in ``mssql2pg.schema_changes`` in
the same transaction as its DDL, so a change is either applied and recorded or neither. Each newly recorded
change is one JSON log line; ``mssql2pg_schema_changes{table, status}`` is read from the record. A change that
waits for review pauses its table only, with its position held so that approving it resumes the table where it
stopped.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

import structlog

from mssql2pg import control
from mssql2pg.classify import classify
from mssql2pg.config import Config
from mssql2pg.errors import ConfigError, TableFaultError, TransientError
from mssql2pg.model import TableId
from mssql2pg.observability import Observability
from mssql2pg.pgconn import PgConnection
from mssql2pg.pipeline.connections import target_connector
from mssql2pg.positions import Lsn
from mssql2pg.sink.errors import SchemaChangeReviewError
from mssql2pg.sink.evolution import EvolutionDdlError, evolve_target_table
from mssql2pg.sink.schema import TargetTable
from mssql2pg.source.errors import TableGoneError

log = structlog.get_logger(component="schema")


@dataclass
class Followed:
    """What :func:`follow_schema` did: the tables that replicate on, and the faults of those that pause."""

    tables: list[TargetTable] = field(default_factory=list)
    paused: list[TableFaultError] = field(default_factory=list)


def follow_schema(
    config: Config, obs: Observability, tables: Sequence[TargetTable], positions: dict[str, Lsn], checkpoint: Lsn
) -> Followed:
    """Evolve each table's target and record what changed. ``positions``/``checkpoint``: where each table
    stands (a table with no position of its own is at the group's checkpoint); a paused table keeps it."""
    followed = Followed()
    conn = target_connector(config)()
    try:
        conn.run("BEGIN")
        control.ensure_control_schema(conn)
        conn.run("COMMIT")
        for table in tables:
            conn.run("BEGIN")
            try:
                recorded, review = _follow_one(conn, config.pipeline.name, table)
            except EvolutionDdlError as failure:
                conn.run("ROLLBACK")
                cause = failure.__cause__ or failure
                if isinstance(classify(cause), TransientError):
                    raise cause from failure  # the target went away: retried like any fault
                held = positions.get(str(table.source), checkpoint)
                followed.paused.append(_failed(conn, config.pipeline.name, obs, table, failure, held))
                continue
            if review:
                control.hold_table_position(
                    conn, config.pipeline.name, str(table.source), positions.get(str(table.source), checkpoint)
                )
            conn.run("COMMIT")
            for change_id, change in recorded:
                tell(obs, change_id, change)
            if review:
                followed.paused.append(
                    SchemaChangeReviewError(
                        table.source,
                        [i for i, _ in review],
                        [f"{c.column_name}: {c.old_type} -> {c.new_type}" for _, c in review],
                    )
                )
            else:
                followed.tables.append(table)
        publish_schema_changes(conn, config.pipeline.name, obs)
    finally:
        conn.close()  # a transaction left open by a failure is rolled back with it
    return followed


def evolve_before_load(config: Config, table: TargetTable) -> None:
    """Bring ``table``'s target up to its capture instances before ``mssql2pg resync`` loads it: its source may
    have changed while the table was paused or needed a resync (a column added, a type widened). The same
    evolution and records as :func:`follow_schema`, in one transaction; the load then fills every column. A
    change that waits for review, or DDL the target refuses, ends the resync before anything is loaded, with
    what to do (the review is recorded, so ``schema list`` shows its recommended migration)."""
    conn = target_connector(config)()
    try:
        conn.run("BEGIN")
        control.ensure_control_schema(conn)
        try:
            recorded, review = _follow_one(conn, config.pipeline.name, table)
        except EvolutionDdlError as failure:
            conn.run("ROLLBACK")
            cause = failure.__cause__ or failure
            if isinstance(classify(cause), TransientError):
                raise cause from failure
            error = str(cause).split("\n")[0]
            raise ConfigError(
                f"cannot resync {table.source}: the target refused {failure.statement!r}: {error}",
                hint="run that DDL yourself (or fix what refused it), then run the resync again",
            ) from failure
        conn.run("COMMIT")
    finally:
        conn.close()
    for change_id, change in recorded:
        tell(None, change_id, change)
    if review:
        ids = ", ".join(str(i) for i, _ in review)
        what = "; ".join(f"{c.column_name}: {c.old_type} -> {c.new_type}" for _, c in review)
        raise ConfigError(
            f"cannot resync {table.source}: its target table cannot hold the source's new column types ({what})",
            hint=f"migrate the target column as `mssql2pg schema list` recommends, approve it (mssql2pg schema "
            f"approve {review[0][0]}), then run the resync again (schema changes {ids})",
        )


def tables_gone(config: Config, obs: Observability, gone: Sequence[TableId]) -> list[TableFaultError]:
    """Record each replicated table that has no capture instance any more (``table-gone``, for review) and
    return the faults that pause them."""
    if not gone:
        return []
    faults: list[TableFaultError] = []
    conn = target_connector(config)()
    try:
        conn.run("BEGIN")
        control.ensure_control_schema(conn)
        recorded: list[tuple[int, control.SchemaChange]] = []
        for table in gone:
            fault = TableGoneError(table)
            faults.append(fault)
            change = control.SchemaChange(
                str(table), "table-gone", "pending-review", detail=f"{fault!s}; {fault.remediation}"
            )
            change_id, new = control.record_schema_change(conn, config.pipeline.name, change)
            if new:
                recorded.append((change_id, change))
        conn.run("COMMIT")
        publish_schema_changes(conn, config.pipeline.name, obs)
    finally:
        conn.close()
    for change_id, change in recorded:
        tell(obs, change_id, change)
    return faults


def _failed(  # noqa: PLR0917 - one call site, the facts of one failure
    conn: PgConnection,
    pipeline: str,
    obs: Observability,
    table: TargetTable,
    failure: EvolutionDdlError,
    held: Lsn,
) -> TableFaultError:
    """Record the change whose DDL the target refused as ``failed`` and hold the table's position (in a
    transaction of their own, the evolution's was rolled back); return the fault that pauses the table."""
    error = str(failure.__cause__ or failure).split("\n")[0]
    change = failure.failed_change() or control.SchemaChange(
        str(table.source), "add-column", "failed", ddl=failure.statement
    )
    failed = dataclasses.replace(
        change,
        status="failed",
        detail=f"the target refused {failure.statement!r}: {error}. Run the DDL yourself (or fix what refused it), "
        f"then `mssql2pg schema approve ID`",
    )
    conn.run("BEGIN")
    change_id, new = control.record_schema_change(conn, pipeline, failed)
    control.hold_table_position(conn, pipeline, str(table.source), held)
    conn.run("COMMIT")
    if new:
        tell(obs, change_id, failed)
    return SchemaChangeReviewError(table.source, [change_id], [f"the target refused {failure.statement!r}: {error}"])


def _follow_one(
    conn: PgConnection, pipeline: str, table: TargetTable
) -> tuple[list[tuple[int, control.SchemaChange]], list[tuple[int, control.SchemaChange]]]:
    """Evolve one target table; (newly recorded changes, changes waiting for review) with their ids."""
    changes: list[control.SchemaChange] = []
    was = control.recorded_capture_instance(conn, pipeline, str(table.source))
    newest = table.capture_instance
    if was is not None and was != newest.name:
        older = [ci.name for ci in table.instances[:-1]]
        start = "its start LSN (not established yet)" if newest.start_lsn.is_null else str(newest.start_lsn)
        detail = (
            f"reading {', '.join(older)} up to {start}, then {newest.name}; disable {older[-1]} once "
            "`mssql2pg check` says it can be"
            if older
            else f"{was} is gone; reading {newest.name}"
        )
        changes.append(
            control.SchemaChange(
                str(table.source), "instance-switch", "auto-applied", capture_instance=newest.name, detail=detail
            )
        )
    changes += evolve_target_table(conn, table).changes
    recorded: list[tuple[int, control.SchemaChange]] = []
    review: list[tuple[int, control.SchemaChange]] = []
    for change in changes:
        change_id, new = control.record_schema_change(conn, pipeline, change)
        if new:
            recorded.append((change_id, change))
        if change.change == "type-change" and change.status == "pending-review":
            stored = control.get_schema_change(conn, pipeline, change_id)
            if stored is None or stored.status != "approved":
                review.append((change_id, change))
    return recorded, review


def publish_schema_changes(conn: PgConnection, pipeline: str, obs: Observability) -> None:
    """``mssql2pg_schema_changes{table, status}`` from the control table (see
    :meth:`~mssql2pg.observability.metrics.Metrics.set_schema_changes`)."""
    obs.metrics.set_schema_changes(control.count_schema_changes(conn, pipeline))


def tell(obs: Observability | None, change_id: int, change: control.SchemaChange) -> None:
    """One log line per newly recorded change (the caller publishes the counts from the control table)."""
    (log.warning if change.status == "pending-review" else log.info)(
        "schema change",
        id=change_id,
        table=change.source_table,
        change=change.change,
        status=change.status,
        capture_instance=change.capture_instance,
        column=change.column_name,
        old_type=change.old_type,
        new_type=change.new_type,
        ddl=change.ddl,
        detail=change.detail,
    )
