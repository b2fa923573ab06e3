"""What a pipeline replicates, worked out before it starts: the selected tables and their capture instances
(:func:`discover`), which of them can be applied (:func:`usable_selections`), what the control schema says
about them (:func:`control_state`), the target tables they land in (:func:`target_tables`), and the settings
the reader and the applier are built with.

A table that cannot be replicated is paused here (:func:`pause_table`) rather than stopping every table.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa
import structlog

from mssql2pg import control
from mssql2pg.config import Config, TableSelection, resolve_tables, spatial_wkb_tables
from mssql2pg.errors import ConfigError, TableFaultError
from mssql2pg.model import CaptureInstance, TableId
from mssql2pg.observability import Observability
from mssql2pg.pipeline.connections import source_engine, target_connector
from mssql2pg.positions import Lsn
from mssql2pg.sink.applier import ApplySettings
from mssql2pg.sink.errors import UnmappableTableError
from mssql2pg.sink.schema import TableOptions, TargetTable, build_target_table
from mssql2pg.source.catalog import load_capture_instances, select_instances
from mssql2pg.source.errors import TableShapeError
from mssql2pg.source.reader import Reader, ReaderSettings
from mssql2pg.source.validation import check_instance

log = structlog.get_logger(component="pipeline")


def discover(
    engine: sa.Engine, config: Config, skip: Collection[str] = ()
) -> tuple[list[TableSelection], dict[TableId, tuple[CaptureInstance, ...]]]:
    """The selected tables and their capture instances, checked against what CDC has enabled.

    ``skip`` names source tables to leave out (paused or needing resync)."""
    selections, by_table, _gone = discover_following(engine, config, skip)
    return selections, by_table


def discover_following(
    engine: sa.Engine, config: Config, skip: Collection[str] = (), registered: Collection[str] = ()
) -> tuple[list[TableSelection], dict[TableId, tuple[CaptureInstance, ...]], list[TableId]]:
    """:func:`discover` for a pipeline that replicated before: ``registered`` names the tables it replicated
    (``mssql2pg.table_state``). One of them without a capture instance any more (CDC disabled, table dropped or
    renamed) is not a configuration error that stops every table: it is returned apart, as gone, for the
    caller to pause."""
    with engine.connect() as conn:
        instances = load_capture_instances(conn)
    return _following(config, instances, skip, registered)


def _following(
    config: Config, instances: Sequence[CaptureInstance], skip: Collection[str], registered: Collection[str]
) -> tuple[list[TableSelection], dict[TableId, tuple[CaptureInstance, ...]], list[TableId]]:
    available = sorted({ci.source for ci in instances})
    folded = {str(t).casefold() for t in available}
    vanished = {registered_table(name) for name in registered if name.casefold() not in folded}
    selections = resolve_tables(config, [*available, *sorted(vanished)])
    if config.pipeline.group is not None and not config.pipeline.spreads:
        selections = [s for s in selections if s.group == config.pipeline.group]
    selections = [s for s in selections if str(s.source) not in skip]
    gone = [s.source for s in selections if s.source in vanished]
    selections = [s for s in selections if s.source not in vanished]
    by_table = select_instances(instances, [s.source for s in selections])
    return selections, by_table, gone


def discover_known(
    engine: sa.Engine, config: Config
) -> tuple[list[TableSelection], dict[TableId, tuple[CaptureInstance, ...]], list[TableId]]:
    """:func:`discover_following` with the tables the pipeline recorded on the target: what the commands other
    than ``run`` use, so that a table gone from the source (still under ``tables:``) is named as gone, as ``run``
    pauses it, instead of failing the command for every other table."""
    with engine.connect() as source:  # the source first, as every command reaches it first
        instances = load_capture_instances(source)
    conn = target_connector(config)()
    try:
        registered = control.registered_tables(conn, config.pipeline.name)
    finally:
        conn.close()
    return _following(config, instances, (), registered)


def registered_table(name: str) -> TableId:
    """The source table of a ``table_state`` row: its ``schema.table`` as written (``str(TableId)``, unquoted, so
    a name with quotes, brackets or dots may not parse as the configuration's syntax does: then the schema is
    what comes before the first dot, as SQL Server schemas of replicated tables are written)."""
    try:
        return TableId.parse(name)
    except ValueError:
        schema, _, table = name.partition(".")
        return TableId(schema, table)


def usable_selections(
    selections: list[TableSelection], instances: Mapping[TableId, tuple[CaptureInstance, ...]]
) -> tuple[list[TableSelection], list[TableFaultError]]:
    """Read-side validation of the capture instances and of the names' mapping: the selections that can be
    applied by key into a target table, and the fault of each one that cannot (:class:`TableShapeError`, or
    :class:`UnmappableTableError` for names that do not map, e.g. ``Code`` and ``code`` under lower-case naming)."""
    usable: list[TableSelection] = []
    faults: list[TableFaultError] = []
    for selection in selections:
        try:
            for ci in instances[selection.source]:
                check_instance(ci)
            target_tables([selection], instances)
        except TableShapeError as fault:
            faults.append(fault)
            continue
        except ConfigError as exc:
            problem = str(exc.args[0]).removeprefix(f"table {selection.source}: ")
            faults.append(UnmappableTableError(selection.source, problem, exc.hint or "change its configuration"))
            continue
        usable.append(selection)
    by_target: dict[TableId, list[TableSelection]] = {}
    for selection in usable:
        by_target.setdefault(selection.target, []).append(selection)
    colliding: set[TableId] = set()
    for target, meeting in by_target.items():
        if len(meeting) > 1:  # names that differ only in case, lower-cased into one target
            names = ", ".join(str(s.source) for s in meeting)
            change = f"set naming: preserve for these tables, or give each a 'target' ({names})"
            problem = f"{names} would all be replicated into {target}"
            faults += [UnmappableTableError(s.source, problem, change) for s in meeting]
            colliding |= {s.source for s in meeting}
    return [s for s in usable if s.source not in colliding], faults


def target_tables(
    selections: Sequence[TableSelection], instances: Mapping[TableId, tuple[CaptureInstance, ...]]
) -> list[TargetTable]:
    """One target table per selected source table, fed by all its capture instances (oldest first)."""
    return [
        build_target_table(
            instances[sel.source],
            TableOptions(
                target_schema=sel.target.schema,
                target_name=sel.target.name,
                naming=sel.naming,
                delete_mode=sel.delete_mode,
                on_target_conflict=sel.on_target_conflict,
            ),
        )
        for sel in selections
    ]


@dataclass(frozen=True)
class ControlState:
    """What the target's control schema says about the tables before a start."""

    inactive: dict[str, tuple[str, str]]  # paused or needing resync: source table -> (state, reason)
    positions: dict[str, Lsn]  # tables of the group with a position of their own (resynced, or moved here)
    checkpoint: Lsn  # of this process's group (pipeline.group)
    registered: frozenset[str] = frozenset()  # tables the pipeline has met before (no initial snapshot for them)
    loading: frozenset[str] = frozenset()  # tables whose initial snapshot is under way (paused for streaming)
    snapshot_ends: dict[str, Lsn] = field(default_factory=dict)
    """Loaded tables: the source's max LSN after their snapshot's last page (``consistent_lsn``). Their changes up
    to it may already be in the rows read, so the applier does not judge them as conflicts (``quiet_until``)."""


def control_state(config: Config) -> ControlState:
    """Read :class:`ControlState` from the target (an empty state on a target the pipeline never ran against)."""
    conn = target_connector(config)()
    try:
        name, group = config.pipeline.name, config.pipeline.group_key
        checkpoint = (
            control.read_checkpoint(conn, name, group)
            if control.control_table_exists(conn, "checkpoints")
            else Lsn.NULL
        )
        loads = control.snapshots(conn, name)
        return ControlState(
            control.inactive_tables(conn, name),
            control.resume_positions(conn, name, group),
            checkpoint,
            control.registered_tables(conn, name),
            frozenset(t for t, p in loads.items() if p.loading),
            {t: p.consistent_lsn for t, p in loads.items() if not p.loading and not p.consistent_lsn.is_null},
        )
    finally:
        conn.close()


def initial_snapshots(
    config: Config, selections: Sequence[TableSelection], known: ControlState
) -> tuple[list[TableSelection], list[TableSelection]]:
    """Split the selections into (to stream, to load first): a table whose initial snapshot is under way is
    loaded to the end whatever ``snapshot.mode`` says; with ``initial``, so is a table the pipeline never met."""
    initial = config.snapshot.mode == "initial"
    stream: list[TableSelection] = []
    load: list[TableSelection] = []
    for selection in selections:
        name = str(selection.source)
        if name in known.loading or (initial and name not in known.registered):
            load.append(selection)
        else:
            stream.append(selection)
    return stream, load


def start_new_tables_at_their_instance(
    config: Config,
    selections: Sequence[TableSelection],
    instances: Mapping[TableId, tuple[CaptureInstance, ...]],
    known: ControlState,
) -> dict[str, Lsn]:
    """Tables met for the first time that stream without a snapshot (``snapshot.mode: never``) and whose
    capture instance starts above the checkpoint: each starts just below its instance's first LSN, recorded
    (``table_state.resume_after``, with the table) before it streams, so a restart starts it there too.

    Such an instance was enabled after the checkpoint: it holds nothing older, and on SQL Server its first LSN
    lies well above the checkpoint (the log moves on between captured commits), so streaming from the
    checkpoint would look like an LSN gap and put the table in ``needs-resync``. The positions are added to
    ``known.positions`` and returned."""
    if known.checkpoint.is_null:
        return {}  # a first run reads every table from the start of its CDC history
    due: dict[str, tuple[TableSelection, Lsn]] = {}
    for selection in selections:
        name = str(selection.source)
        if name in known.registered or name in known.positions:
            continue
        start = instances[selection.source][0].start_lsn
        if not start.is_null and start.decrement() > known.checkpoint:
            due[name] = (selection, start.decrement())
    if not due:
        return {}
    conn = target_connector(config)()
    try:
        conn.run("BEGIN")
        control.ensure_control_schema(conn)
        for name, (selection, position) in due.items():
            control.register_table(
                conn,
                config.pipeline.name,
                source_table=name,
                capture_instance=instances[selection.source][-1].name,
                target_table=str(selection.target),
                group=config.pipeline.group_key,
            )
            control.hold_table_position(conn, config.pipeline.name, name, position)
        conn.run("COMMIT")
    finally:
        conn.close()
    positions = {name: position for name, (_, position) in due.items()}
    known.positions.update(positions)
    for name, position in positions.items():
        log.info("new table starts where its capture instance starts", table=name, resume_after=str(position))
    return positions


def pause_table(config: Config, obs: Observability, fault: TableFaultError) -> None:
    """Record a table fault: the table's state (``paused`` / ``needs-resync``) with reason and remediation in
    ``mssql2pg.table_state``, the ``mssql2pg_table_state`` metric and ``/readyz``, and an error log line."""
    reason = str(fault).split("\n  hint:")[0]
    conn = target_connector(config)()
    try:
        conn.run("BEGIN")
        control.ensure_control_schema(conn)  # a table can be paused at the very first start
        control.set_table_state(
            conn, config.pipeline.name, str(fault.table), fault.state, reason=reason, remediation=fault.remediation
        )
        conn.run("COMMIT")
    finally:
        conn.close()
    obs.table_state(str(fault.table), fault.state.replace("-", "_"), reason)
    log.error(
        "table paused; the other tables go on",
        table=str(fault.table),
        state=fault.state,
        error_class=type(fault).__name__,
        reason=reason,
        remediation=fault.remediation,
    )


def pause_unusable(
    config: Config,
    obs: Observability,
    selections: list[TableSelection],
    instances: Mapping[TableId, tuple[CaptureInstance, ...]],
) -> list[TableSelection]:
    """At start-up, a table whose capture instance cannot be applied by key is paused instead of stopping
    every table; the usable selections are returned."""
    usable, faults = usable_selections(selections, instances)
    for fault in faults:
        pause_table(config, obs, fault)
    return usable


def build_reader(
    config: Config,
    tables: Sequence[TableId],
    engine: sa.Engine | None = None,
    starts: Mapping[TableId, Lsn] | None = None,
    *,
    until: Lsn | None = None,
    planned: Mapping[TableId, tuple[CaptureInstance, ...]] | None = None,
) -> Reader:
    """The source reader for ``tables``. Module-level so that a spawned reader process can call it
    (:class:`~mssql2pg.pipeline.reader_process.ProcessSource` pickles it with its arguments). ``starts`` and
    ``until``: see :meth:`Reader.for_tables` (resynced tables); ``planned``: the capture instances the applier
    was built with (a change re-plans the pipeline)."""
    return Reader.for_tables(
        engine if engine is not None else source_engine(config),
        list(tables),
        ReaderSettings(
            chunk_rows=config.reader.chunk_rows,
            page_rows=config.reader.page_rows,
            poll_interval=config.reader.poll_interval,
            spatial_wkb=spatial_wkb_tables(config, tables),
        ),
        starts=starts,
        until=until,
        planned=planned,
    )


def apply_settings(config: Config) -> ApplySettings:
    """The applier's settings from ``apply:`` and ``stale_after`` (the pipeline's applier and a catch-up's)."""
    return ApplySettings(
        group_max_rows=config.apply.max_batch_rows,
        group_max_delay=config.apply.max_batch_seconds,
        heartbeat_interval=config.apply.heartbeat_interval,
        stale_after=config.stale_after,
    )
