"""Builds a running pipeline from a configuration: source reader, target applier, runner, metrics, health.

This is the one place that knows how the parts fit together; each part stays testable on its own:
:mod:`.connections` (engine and connector), :mod:`.plan` (which tables, with which settings),
:mod:`.observed` (metrics and health around reader and applier), :mod:`.watcher` (table states changed while
running), :mod:`.catchup` (resynced tables behind the checkpoint), :mod:`.snapshot_load` (the initial snapshot
of tables met for the first time, loaded while the others stream) and :mod:`.runner` (the replication loop).
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import sqlalchemy as sa
import structlog

from mssql2pg import __version__, control
from mssql2pg.config import Config, load_config, spatial_wkb_tables
from mssql2pg.errors import ReplanError, SourceError, TableFaultError
from mssql2pg.instance import this_instance
from mssql2pg.model import CaptureInstance, TableId
from mssql2pg.observability import Observability
from mssql2pg.pipeline.capture_instances import InstanceManager
from mssql2pg.pipeline.catchup import catch_up
from mssql2pg.pipeline.clock import ClockWatch, measure_and_publish
from mssql2pg.pipeline.column_fill import ColumnFill
from mssql2pg.pipeline.connections import source_engine, target_connector
from mssql2pg.pipeline.evolution import follow_schema, tables_gone
from mssql2pg.pipeline.observed import ObservedSink, ObservedSource, reaching, retry_policy
from mssql2pg.pipeline.plan import (
    ControlState,
    apply_settings,
    build_reader,
    control_state,
    discover_following,
    discover_known,
    initial_snapshots,
    pause_table,
    pause_unusable,
    start_new_tables_at_their_instance,
    target_tables,
)
from mssql2pg.pipeline.reader_process import ChildLogging, ProcessSource
from mssql2pg.pipeline.retention import RetentionWatch
from mssql2pg.pipeline.runner import ChangeSource, Runner, RunStats
from mssql2pg.pipeline.snapshot_load import SnapshotLoader
from mssql2pg.pipeline.spreading import Presence, Spreader
from mssql2pg.pipeline.watcher import ControlWatcher
from mssql2pg.positions import Lsn
from mssql2pg.retry import Retry
from mssql2pg.sink.applier import Applier
from mssql2pg.sink.schema import TargetTable
from mssql2pg.source import statements
from mssql2pg.source.values import with_spatial_as_wkb

log = structlog.get_logger(component="pipeline")

# Rows that may wait between reader and applier: the queue holds chunks, so its length is this over the chunk
# size. Enough to keep the applier busy while the reader fetches the next page, small enough for memory.
QUEUE_ROW_BUDGET = 40_000

_T = TypeVar("_T")

NOTHING_TO_REPLICATE = "no table left to replicate: every selected table is paused or needs a resync"
NOTHING_TO_REPLICATE_HINT = "see `mssql2pg status` and `mssql2pg check`; a continuous `mssql2pg run` waits for them"


def run_pipeline(config: Config, stop: threading.Event, *, until_caught_up: bool = False) -> RunStats:
    """What ``mssql2pg run`` does: serve ``/metrics``, ``/healthz`` and ``/readyz`` first (so that a database
    that is down at start shows there), start inside the retry loop (:meth:`Pipeline.start`), and replicate
    until ``stop`` is set (or, with ``until_caught_up``, once caught up)."""
    obs = Observability(version=__version__, unhealthy_after=config.retry.alert_after)
    if config.http.enabled:
        obs.serve(config.http.host, config.http.port)
    try:
        if config.pipeline.spreads:
            return _spread(config, obs, stop, until_caught_up)
        pipeline = Pipeline.start(config, obs, stop)
        if pipeline is None:  # stopped while a database was still down
            return RunStats()
        return pipeline.run(stop, until_caught_up=until_caught_up)
    finally:
        obs.close()


def _spread(config: Config, obs: Observability, stop: threading.Event, until_caught_up: bool) -> RunStats:
    """``pipeline.group: auto``: this process's fair share of the groups (see :mod:`.spreading`)."""
    retry = retry_policy(config.retry, obs)
    instance = this_instance()
    presence = Presence(target_connector(config), config.pipeline.name, instance)

    def retried(side: str, read: Callable[[], _T], default: _T) -> Callable[[], _T]:
        """``read`` inside the retry loop, its database's health on ``/readyz``; ``default`` once stopped."""

        def once() -> _T:
            with reaching(obs, side):
                return read()

        return lambda: retry.call(once, stop) or default

    def group_names() -> list[str]:
        engine = source_engine(config)
        try:
            selections, _, _gone = discover_known(engine, config)  # a gone table is no reason to fail
        finally:
            engine.dispose()
        return sorted({s.group for s in selections})

    groups: Callable[[], list[str]] = retried("source", group_names, [])
    processes = retried("target", presence.processes, 1)
    written: Callable[[], set[str]] = retried("target", presence.written, set())

    spreader = Spreader(
        config,
        lambda group_config: Pipeline.start(group_config, obs, stop, spreading=True),
        groups,
        processes,
        instance,
        written,
        obs.standby,
    )
    try:
        return spreader.run(stop, until_caught_up=until_caught_up)
    finally:
        presence.close()


@dataclass
class Pipeline:
    """A configured pipeline: ``run()`` replicates; ``stats`` and ``obs`` (metrics, health, HTTP) observe it."""

    config: Config
    engine: sa.Engine
    reader: ChangeSource  # a Reader, or a ProcessSource running one in a process of its own
    applier: Applier
    runner: Runner
    obs: Observability
    retry: Retry  # the one retry policy: start-up, re-planning and streaming share its count of failures
    tables: list[TargetTable]
    resume_positions: dict[str, Lsn] = field(default_factory=dict)  # resynced tables (see pipeline.resync)
    inactive_at_start: frozenset[str] = frozenset()  # tables left out because the control schema said so
    spreading: bool = False  # pipeline.group: auto (a busy group goes back to the spreader instead of waiting)
    snapshots: list[TargetTable] = field(default_factory=list)  # tables loaded first (see pipeline.snapshot_load)
    snapshot_instances: dict[TableId, CaptureInstance] = field(default_factory=dict)

    @classmethod
    def from_config_file(cls, path: str | Path | None, env: Mapping[str, str] = os.environ) -> Pipeline:
        return cls.from_config(load_config(path, env))

    @classmethod
    def start(
        cls, config: Config, obs: Observability, stop: threading.Event, *, spreading: bool = False
    ) -> Pipeline | None:
        """:meth:`from_config` inside the pipeline's retry loop: a database that is down is retried like a fault
        while streaming (each attempt logged, the side ``degraded`` in ``/readyz``) until it answers, or until
        ``retry.max_attempts`` gives up. None when ``stop`` was set first."""
        retry = retry_policy(config.retry, obs)
        return retry.call(lambda: cls.from_config(config, obs, retry, spreading=spreading), stop)

    @classmethod
    def from_config(
        cls, config: Config, obs: Observability | None = None, retry: Retry | None = None, *, spreading: bool = False
    ) -> Pipeline:
        """Build the pipeline: read the control schema, discover the tables, pause the ones that cannot be
        replicated, and wire reader, applier and runner. One try: an unreachable database raises (:meth:`start`
        retries). ``spreading``: built for one group by :mod:`.spreading`, which tries another group when this
        one has a writer."""
        obs = obs or Observability(version=__version__, unhealthy_after=config.retry.alert_after)
        retry = retry or retry_policy(config.retry, obs)
        engine = source_engine(config)
        try:
            return cls._build(config, obs, retry, engine, spreading)
        except BaseException:
            engine.dispose()
            raise

    @classmethod
    def _build(cls, config: Config, obs: Observability, retry: Retry, engine: sa.Engine, spreading: bool) -> Pipeline:
        with reaching(obs, "target"):
            known = control_state(config)
        # A table whose initial snapshot is under way is paused for streaming, but this process loads it.
        inactive = {t: v for t, v in known.inactive.items() if t not in known.loading}
        for table, (state, reason) in inactive.items():
            obs.table_state(table, state.replace("-", "_"), reason)
            log.warning("table left out: it is not active", table=table, state=state, reason=reason)
        with reaching(obs, "source"):
            selections, instances, gone = discover_following(engine, config, inactive, known.registered)
        with reaching(obs, "target"):
            gone_faults = tables_gone(config, obs, gone)  # CDC disabled, table dropped or renamed: paused
            for fault in gone_faults:
                pause_table(config, obs, fault)
            selections = pause_unusable(config, obs, selections, instances)
            # the source's schema changes: evolve the target tables, record each change, pause what waits for review
            followed = follow_schema(
                config, obs, target_tables(selections, instances), known.positions, known.checkpoint
            )
            for fault in followed.paused:
                pause_table(config, obs, fault)
        kept = {t.source for t in followed.tables}
        selections = [s for s in selections if s.source in kept]
        if not selections:
            # Not a reason to exit: a resync loading the only table, or a review (`schema approve`) of every table,
            # needs a running pipeline to take the tables back. It idles (see _stream), degraded on /readyz.
            log.warning(
                "no table to replicate now: every selected table is paused or needs a resync; waiting for one to "
                "be active again (see `mssql2pg status`)",
                inactive=sorted(inactive_now(inactive, gone_faults, followed.paused)),
            )
        selections, loads = initial_snapshots(config, selections, known)
        with reaching(obs, "target"):
            start_new_tables_at_their_instance(config, selections, instances, known)
        streaming, loading = {s.source for s in selections}, {s.source for s in loads}
        tables = [t for t in followed.tables if t.source in streaming]
        snapshots = [t for t in followed.tables if t.source in loading]
        measure_and_publish(config, engine, target_connector(config), obs)  # before lag or staleness is judged
        source_ids = [s.source for s in selections]
        # every per-table series reads 0 from the first scrape
        obs.metrics.init_tables([*source_ids, *inactive, *(s.source for s in loads)])
        starts = {s: known.positions[str(s)] for s in source_ids if str(s) in known.positions}
        positions = {str(s): p for s, p in starts.items()}
        planned = {s: instances[s] for s in source_ids}
        reader: ChangeSource = (
            ProcessSource(
                functools.partial(build_reader, config, source_ids, starts=starts, planned=planned),
                ChildLogging(config.log.level, config.log.format, tuple(config.secrets())),
            )
            if config.reader.separate_process
            else build_reader(config, source_ids, engine, starts, planned=planned)
        )
        applier = Applier(
            target_connector(config),
            tables,
            config.pipeline.name,
            apply_settings(config),
            checkpoints=control.PipelineCheckpoint(config.pipeline.name, dict(positions), config.pipeline.group_key),
            wall_clock=obs.source_now,  # stale events judged on the source's clock (pipeline/clock.py)
            detect_conflicts=True,  # writes to the target by someone else (catch-up, snapshots, repairs: off)
            protect=config.target.protect,  # the guard follows the setting at every start (installed or removed)
            # changes a snapshot's pages may already hold are replayed, not written by someone else
            quiet_until={
                t.source: known.snapshot_ends[str(t.source)] for t in tables if str(t.source) in known.snapshot_ends
            },
        )
        runner = Runner(
            ObservedSource(reader, obs),
            ObservedSink(applier, obs, source_ids, connect=target_connector(config), group=config.pipeline.group_key),
            retry,
            queue_size=max(2, QUEUE_ROW_BUDGET // config.reader.chunk_rows),
            standby_poll=config.pipeline.standby_poll,
            wait_when_busy=not spreading,
            group=config.pipeline.group,
        )
        pipeline = cls(
            config,
            engine,
            reader,
            applier,
            runner,
            obs,
            retry,
            tables,
            positions,
            frozenset(inactive_now(inactive, gone_faults, followed.paused)),
            spreading,
            snapshots,
            _snapshot_instances(config, [s.source for s in loads], instances),
        )
        # A spreading standby builds a pipeline per group every standby_poll: its line is at debug, and the
        # runner's "starting from checkpoint" (with the group) says when it got one.
        (log.debug if spreading else log.info)(
            "pipeline configured",
            pipeline=config.pipeline.name,
            group=config.pipeline.group,
            source=config.source.redacted_url(),
            target=config.target.redacted_url(),
            tables=[str(s.source) for s in selections],
            initial_snapshots=[str(s.source) for s in loads],
        )
        return pipeline

    @property
    def stats(self) -> RunStats:
        return self.runner.stats

    def run(self, stop: threading.Event, *, until_caught_up: bool = False) -> RunStats:  # noqa: PLR0912 - one loop: each helper's start and close stay side by side
        """Replicate; a table fault (an LSN gap: ``needs-resync``; a change table that does not match its capture
        instance: ``paused``) pauses only its table, and the others go on in a pipeline rebuilt without it.

        Running continuously, the pipeline also notices when a table's state changes in the control schema (a
        ``mssql2pg resync`` paused a table, or made one active again) and re-plans: it commits what it has at the
        next source-transaction boundary and starts again with the new set of tables."""
        pipeline = self
        while True:
            replan = threading.Event()
            pipeline.runner.replan = replan
            watcher = (
                None
                if until_caught_up
                else ControlWatcher(
                    self.config,
                    frozenset(str(t.source) for t in pipeline.tables),
                    pipeline.inactive_at_start,
                    replan,
                    obs=self.obs,
                ).start()
            )
            loader = pipeline._start_snapshots(stop, replan)
            clocks = (
                None
                if until_caught_up
                else ClockWatch(self.config, pipeline.engine, target_connector(self.config), self.obs).start()
            )
            manager = pipeline._manage_instances(until_caught_up)
            filler = pipeline._fill_added_columns(until_caught_up)
            margins = (
                None
                if until_caught_up
                else RetentionWatch(self.config, pipeline.engine, [t.source for t in pipeline.tables], self.obs).start()
            )
            if until_caught_up and not pipeline.tables and not pipeline.snapshots:
                pipeline.close()
                raise SourceError(NOTHING_TO_REPLICATE, hint=NOTHING_TO_REPLICATE_HINT)
            try:
                if pipeline._catch_up(stop):
                    stats = pipeline._stream(stop, until_caught_up, replan)
                    if loader is not None and until_caught_up and not stop.is_set():
                        loader.wait(stop)  # caught up but for the tables still loading: re-plan once loaded
                    elif until_caught_up or stop.is_set():
                        if not stop.is_set():
                            pipeline._fill_once_caught_up()
                        return stats
            except ReplanError as change:
                log.info("re-planning the pipeline", reason=str(change))
            except TableFaultError as fault:
                self.retry.call(functools.partial(self._pause, fault), stop)
            finally:
                for helper in (loader, watcher, clocks, manager, filler, margins):
                    if helper is not None:
                        helper.close()
            if stop.is_set():
                return pipeline.runner.stats
            replacement = self.retry.call(functools.partial(self._replace, pipeline), stop)
            if replacement is None:  # stopped while a database was down
                return pipeline.runner.stats
            pipeline = replacement

    def _replace(self, old: Pipeline) -> Pipeline:
        """A pipeline for the tables as the control schema now has them; ``self`` keeps pointing at its parts."""
        replacement = Pipeline.from_config(self.config, obs=self.obs, retry=self.retry, spreading=self.spreading)
        replacement.runner.stats = old.runner.stats
        # What a spreader set on the runner it started (pipeline.group: auto) holds for its replacement too.
        replacement.runner.on_started = old.runner.on_started
        replacement.runner.wait_when_busy = old.runner.wait_when_busy
        replacement.runner.standby_since = old.runner.standby_since
        self.engine.dispose()  # the old parts are closed; the old engine's pooled connections go with them
        self.tables, self.runner, self.applier, self.reader, self.engine = (
            replacement.tables,
            replacement.runner,
            replacement.applier,
            replacement.reader,
            replacement.engine,
        )
        self.snapshots = replacement.snapshots
        return replacement

    def _manage_instances(self, until_caught_up: bool) -> InstanceManager | None:
        """With ``schema_evolution.manage_capture_instances``: create and retire the streamed tables' capture
        instances (:mod:`.capture_instances`), only while this process writes their group."""
        if until_caught_up or not self.config.schema_evolution.manage_capture_instances or not self.tables:
            return None
        return InstanceManager(
            self.config, self.engine, [t.source for t in self.tables], self.obs, is_writer=self._is_writer()
        ).start()

    def _fill_added_columns(self, until_caught_up: bool) -> ColumnFill | None:
        """With ``schema_evolution.fill_added_columns``: set added columns in the rows no change table carried
        them for (:mod:`.column_fill`), only while this process writes the tables' group. A run that stops once
        caught up fills at its end instead (:meth:`_fill_once_caught_up`)."""
        if until_caught_up or not self.config.schema_evolution.fill_added_columns or not self.tables:
            return None
        return ColumnFill(self.config, self.engine, self.tables, self.obs, is_writer=self._is_writer()).start()

    def _fill_once_caught_up(self) -> None:
        """``run --until-caught-up`` runs no filler alongside: what is due (the checkpoint is past every new
        instance's start now) is filled before it exits. A fault is logged, and the next run tries again."""
        if self.config.schema_evolution.fill_added_columns and self.tables:
            ColumnFill(self.config, self.engine, self.tables, self.obs, is_writer=lambda: True).tick()

    def _is_writer(self) -> Callable[[], bool]:
        """Whether this process holds its tables' write locks now (what only the group's writer may do asks)."""
        sink = self.runner.sink
        writing = sink.writing if isinstance(sink, ObservedSink) else None
        return lambda: writing is not None and writing.is_set()

    def _start_snapshots(self, stop: threading.Event, replan: threading.Event) -> SnapshotLoader | None:
        """Load the tables met for the first time in a thread of their own; once loaded, the pipeline re-plans and
        streams them from their snapshot LSN (see :mod:`.snapshot_load`)."""
        if not self.snapshots:
            return None
        return SnapshotLoader(
            self.config,
            self.engine,
            self.snapshots,
            self.snapshot_instances,
            self.obs,
            stop,
            on_done=replan.set,
        ).start()

    def _stream(self, stop: threading.Event, until_caught_up: bool, replan: threading.Event) -> RunStats:
        """Stream the planned tables; with none (every table is still loading, or inactive: paused, needs a
        resync, waits for review), wait for a re-plan instead (a load done, a table active again)."""
        if self.tables:
            return self._run_once(stop, until_caught_up)
        self.applier.close()
        self.reader.close()
        if self.runner.on_started is not None:
            self.runner.on_started()  # the group is being written: its tables load (a spreader waits for this)
        while not stop.is_set() and not replan.is_set():
            self.obs.beat()
            stop.wait(0.2)
        if replan.is_set() and not until_caught_up:
            raise ReplanError("a table is ready to stream (its initial snapshot loaded, or active again)")
        return self.runner.stats

    def _catch_up(self, stop: threading.Event) -> bool:
        """Resynced tables behind the checkpoint catch up first (see :func:`~mssql2pg.pipeline.catchup.catch_up`).
        False when a stop request ended it early."""
        if not self.resume_positions:
            return True
        known = self.retry.call(self._control_state, stop)
        if known is None:
            return False
        catch_up(self.config, self.engine, self.tables, self.resume_positions, known.checkpoint, stop, self.retry)
        return not stop.is_set()

    def _control_state(self) -> ControlState:
        with reaching(self.obs, "target"):
            return control_state(self.config)

    def _run_once(self, stop: threading.Event, until_caught_up: bool) -> RunStats:
        try:
            return self.runner.run(stop, until_caught_up=until_caught_up)
        finally:
            self.applier.close()
            self.reader.close()

    def _pause(self, fault: TableFaultError) -> None:
        with reaching(self.obs, "target"):
            pause_table(self.config, self.obs, fault)

    def close(self) -> None:
        """Let go of the source engine's pooled connections (reader and applier close when a run ends)."""
        self.engine.dispose()

    def source_max_lsn(self) -> Lsn:
        with self.engine.connect() as conn:
            return Lsn.from_bytes(conn.execute(statements.MAX_LSN).scalar())

    def wait_caught_up(self, timeout: float) -> bool:
        """Wait until the committed checkpoint reaches the source's max LSN (as it is now) and no table is still
        loading its initial snapshot."""
        target = self.source_max_lsn()
        deadline = time.monotonic() + timeout
        pause = threading.Event()
        while time.monotonic() < deadline:
            if not self.snapshots and self.applier.stats.checkpoint >= target:
                return True
            pause.wait(0.05)
        return False


def _snapshot_instances(
    config: Config, tables: list[TableId], instances: Mapping[TableId, tuple[CaptureInstance, ...]]
) -> dict[TableId, CaptureInstance]:
    """The capture instance each initial snapshot reads through: the newest (as a resync reads), with spatial
    columns as EWKB where the table's entry says ``spatial: wkb`` (the representation streaming writes)."""
    wkb = spatial_wkb_tables(config, tables)
    newest = {t: instances[t][-1] for t in tables}
    return {t: with_spatial_as_wkb(ci) if t in wkb else ci for t, ci in newest.items()}


def inactive_now(
    inactive: Mapping[str, object], gone: list[TableFaultError], paused: list[TableFaultError]
) -> set[str]:
    """The tables a pipeline leaves out after building: inactive in the control schema, gone, or paused now."""
    return set(inactive) | {str(fault.table) for fault in [*gone, *paused]}
