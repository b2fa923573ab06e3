"""The replication loop.

How it works, in order:

1. ``sink.start()`` prepares the target and returns the last committed checkpoint LSN.
2. A reader thread reads every change after that checkpoint (``source.read``) and puts the items
   (``TxChunk`` / ``Heartbeat``, see :mod:`mssql2pg.model`) on a bounded queue. The bound is the
   back-pressure: a slow target slows the reader down instead of filling memory.
3. This thread takes items off the queue and offers them to the sink, which groups whole source transactions
   into PostgreSQL transactions and commits data and checkpoint together. When the queue is quiet the sink is
   ticked so a time-bounded group still commits.
4. Any transient fault, on either side, ends the attempt: the reader stops, the sink rolls back whatever was
   not committed, and after a backoff delay everything starts again from step 1. Because the checkpoint is
   committed with the data, this restart neither loses nor repeats a change, and there is only one recovery
   path to get right (the same one a crash takes). The delays, the count of failed attempts in a row (and
   ``retry.max_attempts``) and the reporting are the pipeline's one :class:`~mssql2pg.retry.Retry` policy,
   which its start-up shares; an attempt that commits is progress and starts a new count.
5. A stop request (SIGTERM, Ctrl-C) stops the reader, commits what is complete, rolls back a partial source
   transaction, and returns.

``until_caught_up`` makes one pass up to the source's max LSN as it was when the pass began, and returns.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from mssql2pg.errors import OwnedElsewhereError
from mssql2pg.model import Heartbeat, ReaderItem, TxChunk
from mssql2pg.positions import Lsn
from mssql2pg.retry import Retry

log = structlog.get_logger(component="runner")


class ChangeSource(Protocol):
    """Where changes come from."""

    def read(self, start_after: Lsn, stop: threading.Event, *, until_caught_up: bool) -> Iterator[ReaderItem]:
        """Yield items with commit LSN > ``start_after``; return when caught up (if asked) or stopped."""
        ...

    def close(self) -> None: ...


class ChangeSink(Protocol):
    """Where changes go. Must be idempotent: offering an item at or below the checkpoint changes nothing."""

    def start(self) -> Lsn:
        """Prepare the target (DDL, control tables) and return the committed checkpoint."""
        ...

    @property
    def checkpoint(self) -> Lsn:
        """The checkpoint committed so far: an attempt that moved it made progress."""
        ...

    def offer(self, item: ReaderItem) -> None: ...

    def tick(self) -> None:
        """Called when no item arrived for a while: commit a group whose time bound has passed."""
        ...

    def flush(self) -> None:
        """Commit everything complete; roll back a source transaction that is only partly received."""
        ...

    def abandon(self) -> None:
        """Roll back what is not committed (after a fault); the next ``start`` resumes from the checkpoint."""
        ...

    def mid_transaction(self) -> bool:
        """True while a source transaction has arrived only in part (stopping now would roll it back)."""
        ...

    def close(self) -> None: ...


@dataclass
class RunStats:
    attempts: int = 0
    items: int = 0
    transactions: int = 0
    rows: int = 0
    last_lsn: Lsn = Lsn.NULL
    failures: list[str] = field(default_factory=list)


class _Done:
    pass


@dataclass
class _Failed:
    error: BaseException


_DONE = _Done()

# Reader items travel to the applier in batches of at most this many rows or items (see :func:`relay`).
BATCH_ROWS = 5_000
BATCH_ITEMS = 1_000


@dataclass
class Runner:
    source: ChangeSource
    sink: ChangeSink
    retry: Retry
    queue_size: int = 64
    tick_interval: float = 0.05
    stats: RunStats = field(default_factory=RunStats)
    replan: threading.Event | None = None
    """Set from outside to end the run at the next source-transaction boundary (nothing is rolled back), e.g.
    because the set of tables changed; ``stop`` ends it at once (a partly received transaction is rolled back)."""
    standby_poll: float = 1.0
    """While another process writes the tables (:class:`~mssql2pg.errors.OwnedElsewhereError`), how often this
    one tries to take over (``pipeline.standby_poll``)."""
    group: str | None = None
    """The table group (``pipeline.group``), for the log lines that say when this process starts writing."""
    wait_when_busy: bool = True
    """False under ``pipeline.group: auto``: a busy group is handed back to the caller (the
    :class:`~mssql2pg.errors.OwnedElsewhereError` is raised) so that it can try another group."""
    standby_since: float | None = None
    """Since when (``time.monotonic()``) this process has waited to take over; its next start is a takeover.
    The runner sets it while it waits as a standby; a caller that waited for any group passes it in."""
    on_started: Callable[[], None] | None = None
    """Called each time an attempt has started the sink (this process holds its tables' write locks)."""
    _started_at: Lsn | None = field(default=None, init=False, repr=False)  # the checkpoint this attempt began at

    def _wait_as_standby(self, busy: OwnedElsewhereError, stop: threading.Event) -> None:
        """Another process writes the tables: wait, without counting a failed attempt (a standby may wait for
        days), and try again every :attr:`standby_poll` seconds. Logged once when the wait begins."""
        if self.standby_since is None:
            self.standby_since = time.monotonic()
            log.info(
                "standby: another process writes these tables; waiting to take over",
                reason=str(busy).splitlines()[0],
                poll_s=self.standby_poll,
            )
        stop.wait(self.standby_poll)

    def run(self, stop: threading.Event, *, until_caught_up: bool = False) -> RunStats:
        """Replicate until ``stop`` is set (or, with ``until_caught_up``, until one pass is done)."""
        while not stop.is_set():
            self.stats.attempts += 1
            try:
                finished = self._attempt(stop, until_caught_up=until_caught_up)
            except OwnedElsewhereError as busy:
                self._safe(self.sink.abandon)
                self._safe(self.source.close)
                if not self.wait_when_busy:
                    raise
                self._wait_as_standby(busy, stop)
                if self.replan is not None and self.replan.is_set():
                    break  # the tables changed (a resync paused one): the pipeline re-plans
                continue
            except Exception as exc:
                self._note_progress()  # committed before it failed: this failure starts a new count
                self._safe(self.sink.abandon)
                self._safe(self.source.close)
                delay = self.retry.failed(exc)  # raises a terminal error, or after retry.max_attempts
                self.stats.failures.append(f"{type(exc).__name__}: {exc}")
                stop.wait(delay)
                continue
            self.retry.recovered()
            if finished:
                break
        return self.stats

    def _attempt(self, stop: threading.Event, *, until_caught_up: bool) -> bool:
        """One attempt from the checkpoint. True when the run is over (caught up or stopped cleanly)."""
        self._started_at = None  # until the sink has started, this attempt cannot have made progress
        checkpoint = self._started_at = self.sink.start()
        if self.on_started is not None:
            self.on_started()
        if self.standby_since is not None:
            log.info(
                "took over: this process writes its tables now",
                waited_s=round(time.monotonic() - self.standby_since, 3),
                checkpoint=str(checkpoint),
                group=self.group,
            )
            self.standby_since = None
        log.info("starting from checkpoint", checkpoint=str(checkpoint), group=self.group)
        items: queue.Queue[list[ReaderItem] | _Done | _Failed] = queue.Queue(maxsize=self.queue_size)
        reader_stop = threading.Event()
        reader = threading.Thread(
            target=self._read,
            args=(checkpoint, items, reader_stop, until_caught_up),
            name="mssql2pg-reader",
            daemon=True,
        )
        reader.start()
        try:
            return self._apply_loop(items, stop)
        finally:
            reader_stop.set()
            _drain(items)
            reader.join(timeout=30)

    def _read(
        self,
        start_after: Lsn,
        out: queue.Queue[list[ReaderItem] | _Done | _Failed],
        stop: threading.Event,
        until_caught_up: bool,
    ) -> None:
        try:
            if relay(
                self.source.read(start_after, stop, until_caught_up=until_caught_up), lambda b: _put(out, b, stop)
            ):
                _put(out, _DONE, stop)
        except BaseException as exc:
            _put(out, _Failed(exc), stop)

    def _apply_loop(self, items: queue.Queue[list[ReaderItem] | _Done | _Failed], stop: threading.Event) -> bool:
        replan = self.replan
        retry = self.retry
        while True:
            if retry.failures:
                self._note_progress()
            if stop.is_set() or (replan is not None and replan.is_set() and not self.sink.mid_transaction()):
                self.sink.flush()
                return True
            try:
                item = items.get(timeout=self.tick_interval)
            except queue.Empty:
                self.sink.tick()
                continue
            if isinstance(item, _Done):
                self.sink.flush()
                return True
            if isinstance(item, _Failed):
                raise item.error
            for one in item:
                self.sink.offer(one)
                self._count(one)

    def _count(self, item: ReaderItem) -> None:
        self.stats.items += 1
        if isinstance(item, TxChunk):
            self.stats.rows += len(item.rows)
            if item.last:
                self.stats.transactions += 1
                self.stats.last_lsn = item.commit_lsn
        elif isinstance(item, Heartbeat):
            self.stats.last_lsn = max(self.stats.last_lsn, item.lsn)

    def _note_progress(self) -> None:
        """The first commit of an attempt after a fault is progress: the count of failures in a row starts over
        (and what the fault reported is cleared)."""
        started_at = self._started_at
        if self.retry.failures and started_at is not None and self.sink.checkpoint > started_at:
            self.retry.recovered()

    @staticmethod
    def _safe(fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception as exc:
            log.debug("cleanup step failed", step=getattr(fn, "__qualname__", "?"), error=str(exc))


def relay(items: Iterable[ReaderItem], put: Callable[[list[ReaderItem]], bool]) -> bool:
    """Hand ``items`` to ``put`` in batches of at most :data:`BATCH_ROWS` rows or :data:`BATCH_ITEMS` items.

    One hand-off per single-row transaction made the reader and the applier trade the interpreter lock (or a
    pipe) for every change. A heartbeat ends a window, so the batch is flushed before the reader waits. If
    reading fails, the items read before the fault are good: they are put first, so the retry resumes from a
    later checkpoint, and then the fault is raised. False when ``put`` refused a batch (the consumer stopped).
    """
    batch: list[ReaderItem] = []
    rows = 0
    try:
        for item in items:
            batch.append(item)
            rows += len(item.rows) if isinstance(item, TxChunk) else 0
            if isinstance(item, Heartbeat) or rows >= BATCH_ROWS or len(batch) >= BATCH_ITEMS:
                if not put(batch):
                    return False
                batch, rows = [], 0
    except BaseException:
        if batch:
            put(batch)
        raise
    return not batch or put(batch)


def _put(
    q: queue.Queue[list[ReaderItem] | _Done | _Failed], item: list[ReaderItem] | _Done | _Failed, stop: threading.Event
) -> bool:
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
        except queue.Full:
            continue
        return True
    return False


def _drain(q: queue.Queue[list[ReaderItem] | _Done | _Failed]) -> None:
    deadline = time.monotonic() + 1
    while time.monotonic() < deadline:
        try:
            q.get_nowait()
        except queue.Empty:
            return
