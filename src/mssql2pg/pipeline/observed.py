"""The reader and the applier as the runner sees them, wrapped so that every step reports to metrics and health
without the reader or the applier knowing about either; and the pipeline's retry policy, reporting the same way.

:class:`ObservedSource` reports source reachability and the source position; :class:`ObservedSink` publishes
what the applier committed (rows, transactions, lag, batch timings, dead letters, target conflicts) and target
reachability.
An error passing through either is tagged with its side (``source`` / ``target``) so that retry reporting
names the database that is failing.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from mssql2pg import control
from mssql2pg.classify import classify, is_disk_full, server_message
from mssql2pg.errors import OwnedElsewhereError, TransientError
from mssql2pg.model import Heartbeat, ReaderItem, TableId
from mssql2pg.observability import Observability
from mssql2pg.pgconn import PgConnector
from mssql2pg.pipeline.runner import ChangeSource
from mssql2pg.positions import Lsn
from mssql2pg.retry import BackoffSettings, Retry
from mssql2pg.sink.applier import Applier

log = structlog.get_logger(component="pipeline")


def retry_policy(settings: BackoffSettings, obs: Observability) -> Retry:
    """The pipeline's one retry policy (start-up and streaming), reporting to metrics and ``/readyz``: a failed
    attempt marks the side it came from degraded (``pipeline`` when it names none), progress clears that.

    A full target disk (SQLSTATE 53100) is retried like any transient fault (the transaction rolled back, nothing
    is half-applied, and the same write succeeds once there is room), but it is also said plainly, in the log and
    in ``/readyz``, because only the operator can end it."""

    def on_retry(attempt: int, delay: float, error: BaseException) -> None:
        if is_disk_full(error):
            log.error(
                "target disk full: free space on the target's disk or tablespace; replication pauses, retries with "
                "backoff and resumes by itself once there is room (nothing is lost or half-applied)",
                server_message=server_message(error),
                attempt=attempt,
                next_delay_s=round(delay, 3),
            )
            # until progress: the target answers every reconnect and refuses the write again; its failing time
            # must keep counting so that the alert fires after retry.alert_after
            obs.on_retry(attempt, delay, error, cause="target disk full, free space", until_progress=True)
            return
        obs.on_retry(attempt, delay, error)

    return Retry.from_settings(settings, classify, on_retry=on_retry, on_recovered=obs.on_recovered)


@contextlib.contextmanager
def reaching(obs: Observability, component: str) -> Iterator[None]:
    """Around a start-up step that talks to one database (``source`` | ``target``): an error is tagged with
    that side for the retry policy's report; success reports the side as answering."""
    try:
        yield
    except Exception as exc:
        _tag(exc, component)
        raise
    obs.component_ok(component)


def _tag(exc: BaseException, component: str) -> None:
    """Name the side an error came from, so retry reporting can say which database is failing."""
    if getattr(exc, "component", None) is None:
        with contextlib.suppress(AttributeError):
            exc.component = component  # type: ignore[attr-defined]


@dataclass
class ObservedSource:
    """Reports source reachability and the source's max-LSN time while passing items through."""

    inner: ChangeSource
    obs: Observability
    _reported_ok: bool = False  # report "source up" once per recovery, not once per item (hot path)

    def read(self, start_after: Lsn, stop: threading.Event, *, until_caught_up: bool) -> Iterator[ReaderItem]:
        try:
            for item in self.inner.read(start_after, stop, until_caught_up=until_caught_up):
                if not self._reported_ok:
                    self.obs.component_ok("source")
                    self._reported_ok = True
                if isinstance(item, Heartbeat):
                    self.obs.source_position(item.source_time)
                yield item
        except Exception as exc:
            self._reported_ok = False
            _tag(exc, "source")
            self.obs.component_failed("source", f"{type(exc).__name__}: {classify(exc)}")
            raise

    def close(self) -> None:
        self.inner.close()


@dataclass
class ObservedSink:
    """Publishes what the applier committed (rows, transactions, lag, batch timings) after every step."""

    inner: Applier
    obs: Observability
    tables: Sequence[TableId]
    _heartbeat: Heartbeat | None = None
    connect: PgConnector | None = None  # a target connector, for the dead-letter gauge
    group: str = ""  # pipeline.group ('' : none), for the writer gauge
    _commits_seen: int = -1
    _dead_letters: dict[TableId, int] = field(default_factory=dict)
    _stale: dict[TableId, int] = field(default_factory=dict)
    writing: threading.Event = field(default_factory=threading.Event)
    """Set while this process holds its tables' write locks (between a successful ``start`` and the next
    ``abandon`` or ``close``): what only the group's writer may do (managing capture instances) asks this."""
    _conflicts: dict[tuple[TableId, str], int] = field(default_factory=dict)

    def start(self) -> Lsn:
        self.writing.clear()
        try:
            checkpoint: Lsn = self._guard(self.inner.start)
        except OwnedElsewhereError:
            self.obs.metrics.set_group_writer(self.group, False)
            raise
        self.writing.set()
        self.obs.metrics.set_group_writer(self.group, True)
        self.obs.component_ok("target")
        for table in self.tables:
            self.obs.table_state(table, "active")
        self._publish_dead_letter_counts()
        return checkpoint

    def _publish_dead_letter_counts(self) -> None:
        """The dead-letter gauge by status: read at start and whenever rows were dead-lettered (rare)."""
        if self.connect is None:
            return
        connection = self.connect()
        try:
            self.obs.metrics.set_dead_letters(control.count_dead_letters_by_status(connection, self.inner.pipeline))
        finally:
            connection.close()

    def offer(self, item: ReaderItem) -> None:
        if isinstance(item, Heartbeat):
            self._heartbeat = item
        self._step(self.inner.offer, item)

    def tick(self) -> None:
        self._step(self.inner.tick)

    def flush(self) -> None:
        self._step(self.inner.flush)

    def abandon(self) -> None:
        self.writing.clear()
        self.inner.abandon()

    def mid_transaction(self) -> bool:
        return self.inner.mid_transaction()

    @property
    def checkpoint(self) -> Lsn:
        return self.inner.checkpoint

    def close(self) -> None:
        self.writing.clear()
        self.inner.close()

    @staticmethod
    def _publish_deltas(totals: Mapping[Any, int], seen: dict[Any, int], count: Any) -> bool:
        """Turn the applier's cumulative per-table counts into metric increments; True if any grew."""
        grew = False
        for table, total in list(totals.items()):
            delta = total - seen.get(table, 0)
            if delta > 0:
                count(table, delta)
                seen[table] = total
                grew = True
        return grew

    def _guard(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except OwnedElsewhereError as busy:
            self.obs.standby(str(busy).splitlines()[0])
            raise
        except Exception as exc:
            _tag(exc, "target")
            if isinstance(classify(exc), TransientError):
                self.obs.component_failed("target", f"{type(exc).__name__}: {classify(exc)}")
            raise

    def _step(self, fn: Any, *args: Any) -> None:
        self.obs.beat()
        self._guard(fn, *args)
        stats = self.inner.stats
        if stats.commits == self._commits_seen:
            return  # nothing committed since the last step: nothing new to publish (the common case per item)
        self._commits_seen = stats.commits
        self.obs.record_apply_stats(stats)
        if self._publish_deltas(stats.dead_letters, self._dead_letters, self.obs.metrics.dead_lettered):
            self._publish_dead_letter_counts()
        self._publish_deltas(stats.stale, self._stale, self.obs.metrics.stale_event)
        self._publish_deltas(
            stats.conflicts, self._conflicts, lambda pair, n: self.obs.metrics.target_conflict(pair[0], pair[1], n)
        )
        hb = self._heartbeat
        if hb is not None and stats.checkpoint >= hb.lsn:
            self.obs.heartbeat_applied(hb.source_time, self.tables)
            self._heartbeat = None
