"""``pipeline.group: auto``: processes that share one configuration spread the table groups among themselves.

Each group has one writer at a time, enforced by the write locks its applier holds in the target
(:func:`mssql2pg.control.claim_tables`): whoever holds them writes; anyone else gets
:class:`~mssql2pg.errors.OwnedElsewhereError` before it has read or written anything. So a spreading process
never needs to agree with the others on who writes what - it tries, and the locks decide.

What it tries: its **fair share**, ``ceil(groups / live processes)``, counting the processes of the pipeline that
spread (each holds a presence lock in the target while it lives, :mod:`mssql2pg.control.instances`). Every
``pipeline.standby_poll`` it looks again: below its share, it tries the groups nobody writes (starting at one
that depends on the process, so processes started together mostly try different groups first); above it
(another process joined), it lets go of the group it took last, which finishes its current PostgreSQL
transaction and closes its connections, so the other process can take it. A process that died holds no lock: the
survivors' shares grow and they take its groups. Each group it writes runs as its own pipeline in a thread of its
own (its own reader, applier and connections), exactly as a process started for that group would.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from mssql2pg import control
from mssql2pg.config import Config
from mssql2pg.errors import OwnedElsewhereError, SourceError
from mssql2pg.pgconn import PgConnection, PgConnector
from mssql2pg.pipeline.runner import RunStats

log = structlog.get_logger(component="pipeline")


class _Runner(Protocol):
    wait_when_busy: bool
    standby_since: float | None
    on_started: Callable[[], None] | None


class GroupPipeline(Protocol):
    """What the spreader needs of a :class:`~mssql2pg.pipeline.assembly.Pipeline` built for one group."""

    @property
    def runner(self) -> _Runner: ...

    def run(self, stop: threading.Event, *, until_caught_up: bool = False) -> RunStats: ...

    def close(self) -> None: ...


def rotation(groups: Sequence[str], instance: str) -> list[str]:
    """Every group once, starting at one chosen by ``instance``: processes started at the same moment mostly try
    different groups first, so they spread without fighting over the first group."""
    if not groups:
        return []
    start = zlib.crc32(instance.encode()) % len(groups)
    return [*groups[start:], *groups[:start]]


def fair_share(groups: int, processes: int) -> int:
    """How many groups one of ``processes`` spreading processes writes at most."""
    return math.ceil(groups / max(1, processes))


def for_group(config: Config, group: str) -> Config:
    """``config`` as if started with ``pipeline.group: <group>``."""
    pipeline = config.pipeline.model_copy(update={"group": group})
    return config.model_copy(update={"pipeline": pipeline})


@dataclass
class Presence:
    """This process among the live spreading processes of its pipeline: a target connection of its own holding
    its presence lock (:mod:`mssql2pg.control.instances`), opened again after it was lost."""

    connect: PgConnector
    pipeline: str
    instance: str
    _conn: PgConnection | None = None

    def processes(self) -> int:
        """How many spreading processes are alive, this one included (raises while the target is unreachable)."""
        try:
            return max(1, control.live_instances(self._connected(), self.pipeline))
        except Exception:
            self.close()
            raise

    def written(self) -> set[str]:
        """The groups whose tables' write locks some session holds now."""
        try:
            return set(control.group_writers(self._connected(), self.pipeline))
        except Exception:
            self.close()
            raise

    def _connected(self) -> PgConnection:
        if self._conn is None:
            conn = self.connect()
            control.register_instance(conn, self.pipeline, self.instance)
            self._conn = conn
        return self._conn

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()


@dataclass
class _Writing:
    """One group this process writes: its pipeline running in a thread."""

    group: str
    stop: threading.Event = field(default_factory=threading.Event)
    started: threading.Event = field(default_factory=threading.Event)  # its tables' write locks are held
    done: threading.Event = field(default_factory=threading.Event)
    busy: bool = False  # another process writes the group (now, or took it over after a fault of ours)
    error: BaseException | None = None
    stats: RunStats | None = None
    thread: threading.Thread | None = None


@dataclass
class Spreader:
    config: Config
    build: Callable[[Config], GroupPipeline | None]
    """Build (inside the retry loop) the pipeline of the group ``config`` names; None when stopped first."""
    groups: Callable[[], list[str]]
    """The groups of the selected tables, sorted (discovery; called every round, so a group added to the
    configuration's tables is seen without a restart)."""
    processes: Callable[[], int]
    """How many spreading processes of this pipeline are alive, this one included."""
    instance: str
    written: Callable[[], set[str]] = set
    on_standby: Callable[[str], None] = lambda _reason: None
    """Called every round this process writes no group: alive (liveness) and ready as a standby (``/readyz``),
    as a standby of one group is (:meth:`mssql2pg.observability.Observability.standby`)."""
    """The groups some process writes now (the target's lock holders). They are not tried: building a group's
    pipeline (discovery, the target's tables, their schema) is left to the process that will write it."""
    _writing: dict[str, _Writing] = field(default_factory=dict, init=False)
    _standby_since: float | None = field(default=None, init=False)
    _finished: list[RunStats] = field(default_factory=list, init=False)

    def run(self, stop: threading.Event, *, until_caught_up: bool = False) -> RunStats:
        try:
            while not stop.is_set():
                self._reap()
                if until_caught_up and self._finished and not self._writing:
                    break  # the groups it took are caught up; the others are other processes' to finish
                groups = self.groups()
                if not groups:
                    msg = "no table to replicate: no selected table has CDC enabled, so there is no group to take"
                    raise SourceError(msg, hint="see `mssql2pg check`")
                share = fair_share(len(groups), self.processes())
                if len(self._writing) > share:
                    self._let_go(len(self._writing) - share)
                elif len(self._writing) < share:
                    self._take(groups, share, stop, until_caught_up)
                self._say_whether_standby(groups)
                stop.wait(self.config.pipeline.standby_poll)
        finally:
            self._let_go(len(self._writing))
        self._reap()
        return _total(self._finished)

    def _take(self, groups: list[str], share: int, stop: threading.Event, until_caught_up: bool) -> None:
        """Try the groups nobody writes, until this process writes its share."""
        written = self.written()
        for group in rotation(groups, self.instance):
            if len(self._writing) >= share or stop.is_set():
                return
            if group in self._writing or group in written:
                continue
            writing = self._start(group, stop, until_caught_up)
            if writing is not None:
                self._writing[group] = writing

    def _start(self, group: str, stop: threading.Event, until_caught_up: bool) -> _Writing | None:
        """Run ``group``'s pipeline in a thread; the writing once its locks are held, None when it has a writer."""
        pipeline = self.build(for_group(self.config, group))
        if pipeline is None:  # stopped while a database was down
            return None
        writing = _Writing(group)
        pipeline.runner.wait_when_busy = False
        pipeline.runner.standby_since = self._standby_since
        pipeline.runner.on_started = writing.started.set

        def run() -> None:
            try:
                writing.stats = pipeline.run(writing.stop, until_caught_up=until_caught_up)
            except OwnedElsewhereError:
                writing.busy = True
            except BaseException as exc:
                writing.error = exc
            finally:
                pipeline.close()
                writing.done.set()

        log.debug("trying a group", group=group, instance=self.instance)
        writing.thread = threading.Thread(target=run, name=f"mssql2pg-group-{group}", daemon=True)
        writing.thread.start()
        while not (writing.started.wait(0.05) or writing.done.is_set()):
            if stop.is_set():
                writing.stop.set()
        if writing.started.is_set():
            self._standby_since = None
            return writing
        writing.thread.join()
        self._raise_if_failed(writing)
        return None

    def _let_go(self, how_many: int) -> None:
        """Stop writing the groups taken last: each finishes its PostgreSQL transaction and closes its connections,
        which releases its locks for another process."""
        for group in list(self._writing)[::-1][:how_many]:
            writing = self._writing.pop(group)
            log.info("letting a group go to another process", group=group, instance=self.instance)
            writing.stop.set()
            if writing.thread is not None:
                writing.thread.join()
            self._raise_if_failed(writing)
            if writing.stats is not None:
                self._finished.append(writing.stats)

    def _reap(self) -> None:
        """Forget the groups whose pipeline ended: caught up, or taken over by another process after a fault."""
        for group, writing in list(self._writing.items()):
            if writing.done.is_set():
                del self._writing[group]
                self._raise_if_failed(writing)
                if writing.busy:
                    log.info("another process writes the group now", group=group)
                if writing.stats is not None:
                    self._finished.append(writing.stats)

    def _say_whether_standby(self, groups: list[str]) -> None:
        if self._writing:
            return
        self.on_standby(f"every group has a writer ({', '.join(groups)}); waiting to take one over")
        if self._standby_since is None:
            self._standby_since = time.monotonic()
            log.info(
                "standby: every group has a writer; waiting to take one over",
                groups=groups,
                poll_s=self.config.pipeline.standby_poll,
            )

    @staticmethod
    def _raise_if_failed(writing: _Writing) -> None:
        """A fault the group's own retry loop gave up on ends the process, as it would end a one-group process."""
        if writing.error is not None:
            raise writing.error


def _total(runs: list[RunStats]) -> RunStats:
    total = RunStats()
    for stats in runs:
        total.attempts += stats.attempts
        total.items += stats.items
        total.transactions += stats.transactions
        total.rows += stats.rows
        total.last_lsn = max(total.last_lsn, stats.last_lsn)
        total.failures.extend(stats.failures)
    return total
