"""The source reader in a process of its own, so reading and applying use two CPU cores.

Why: both halves of the pipeline are CPU-bound Python - the reader parsing driver rows and building
:class:`~mssql2pg.model.ChangeRow` values, the applier encoding COPY text - and in one process they take turns
on one interpreter lock. Many small source transactions (the common OLTP shape) are bound by that CPU time,
not by either database. A second process doubles the CPU the pipeline can use, within the 2-CPU budget.

What stays the same: the runner still sees a :class:`~mssql2pg.pipeline.runner.ChangeSource`; items arrive in
the same order; a fault in the reader process arrives in the runner as the same exception type with the same
fields (see :meth:`mssql2pg.errors.Mssql2pgError.__reduce__`), so retries, LSN-gap pauses and stops take the
same paths as with an in-process reader. The reader process holds no state worth keeping: every attempt starts
one from the committed checkpoint, and every end of an attempt stops it.

Lifetime, so that no reader is ever left behind:

* the runner stops reading (stop requested, caught up, or a fault on either side): the process is told to
  stop, drained, joined, and terminated if it does not end within :data:`STOP_SECONDS`;
* the pipeline process dies (kill -9): the reader process notices its parent is gone within a fraction of a
  second and exits without waiting for anyone to read what it had queued;
* the reader process dies (killed, out of memory): the runner gets a :class:`~mssql2pg.errors.TransientError`
  and restarts from the checkpoint like after any other fault.

Transport: items are packed into plain tuples (:func:`pack`) - bytes, ints and the canonical values - which
pickle in C and are rebuilt without per-field ``__setstate__`` calls; pickling the dataclasses themselves cost
more than reading them did. The rows of one chunk share its commit LSN (the model's contract), so it is sent
once per chunk.
"""

from __future__ import annotations

import multiprocessing
import pickle
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from mssql2pg.classify import classify
from mssql2pg.errors import Mssql2pgError, TerminalError, TransientError
from mssql2pg.model import ChangeRow, Heartbeat, Operation, ReaderItem, TableId, TxChunk
from mssql2pg.observability.logging import LogFormat, configure_logging, register_secrets
from mssql2pg.pipeline.runner import ChangeSource, relay
from mssql2pg.positions import Lsn

log = structlog.get_logger(component="reader-process")

QUEUE_BATCHES = 4  # batches in flight between the processes (each at most runner.BATCH_ROWS rows)
STOP_SECONDS = 5.0  # how long a stopping reader process may take before it is terminated
POLL_SECONDS = 0.1  # how often a waiting side looks at stop requests and the other process

_BATCH, _DONE, _ERROR = 0, 1, 2
_CHUNK, _HEARTBEAT = 0, 1
_OPERATIONS = {int(op): op for op in Operation}

Packed = tuple[tuple[tuple[str, str, str], ...], list[tuple[Any, ...]]]


def pack(batch: Sequence[ReaderItem]) -> Packed:
    """Reader items as plain tuples: ``(tables, items)``; rows name their table by an index into ``tables``."""
    tables: dict[tuple[TableId, str], int] = {}
    items: list[tuple[Any, ...]] = []
    for item in batch:
        if isinstance(item, Heartbeat):
            items.append((_HEARTBEAT, item.lsn.raw, item.source_time, tuple((t.schema, t.name) for t in item.tables)))
            continue
        lsn_raw = item.commit_lsn.raw
        rows = []
        for row in item.rows:
            if row.commit_lsn.raw != lsn_raw:
                msg = f"a row with commit LSN {row.commit_lsn} in a chunk of transaction {item.commit_lsn}"
                raise ValueError(msg)
            key = (row.table, row.capture_instance)
            index = tables.get(key)
            if index is None:
                index = tables[key] = len(tables)
            rows.append(
                (index, row.seqval.raw, int(row.operation), row.values, row.command_id, row.update_mask, row.fault)
            )
        items.append((_CHUNK, lsn_raw, item.first, item.last, item.commit_time, item.tran_id, rows))
    return tuple((t.schema, t.name, ci) for t, ci in tables), items


def unpack(packed: Packed) -> list[ReaderItem]:
    """The items :func:`pack` was given, equal field by field."""
    names, items = packed
    tables = [(TableId(schema, name), ci) for schema, name, ci in names]
    out: list[ReaderItem] = []
    for item in items:
        if item[0] == _HEARTBEAT:
            _, raw, source_time, heartbeat_tables = item
            out.append(Heartbeat(Lsn(raw), source_time, tuple(TableId(s, n) for s, n in heartbeat_tables)))
            continue
        _, raw, first, last, commit_time, tran_id, rows = item
        lsn = Lsn(raw)
        changes = tuple(
            ChangeRow(tables[i][0], tables[i][1], lsn, Lsn(seq), _OPERATIONS[op], values, command_id, mask, fault)
            for i, seq, op, values, command_id, mask, fault in rows
        )
        out.append(TxChunk(lsn, changes, first, last, commit_time, tran_id))
    return out


@dataclass(frozen=True)
class ChildLogging:
    """How the reader process logs: like its parent, with the same secrets redacted."""

    level: str
    format: LogFormat
    secrets: tuple[str, ...] = ()


@dataclass
class ProcessSource:
    """A :class:`ChangeSource` whose reading happens in a spawned process.

    ``build`` makes the real source inside that process; it must pickle (a module-level function or a
    ``functools.partial`` of one), because a spawned process starts from a fresh interpreter - forking a
    process that already runs threads (HTTP server, runner) is not safe.
    """

    build: Callable[[], ChangeSource]
    logging: ChildLogging | None = None
    queue_batches: int = QUEUE_BATCHES
    _process: Any = field(default=None, init=False, repr=False)
    _queue: Any = field(default=None, init=False, repr=False)
    _stop: Any = field(default=None, init=False, repr=False)

    @property
    def pid(self) -> int | None:
        """The reader process's id while one runs (for tests and diagnostics)."""
        return None if self._process is None else self._process.pid

    def read(self, start_after: Lsn, stop: threading.Event, *, until_caught_up: bool) -> Iterator[ReaderItem]:
        self.close()
        context = multiprocessing.get_context("spawn")
        self._queue = context.Queue(maxsize=self.queue_batches)
        stop_reader, self._stop = context.Pipe(duplex=False)
        self._process = context.Process(
            target=_child_main,
            args=(_ChildArgs(self.build, start_after, until_caught_up, self._queue, stop_reader, self.logging),),
            name="mssql2pg-reader",
            daemon=True,
        )
        self._process.start()
        stop_reader.close()  # the child holds it now; our write end closing is its signal to stop
        log.debug("reader process started", pid=self._process.pid, start_after=str(start_after))
        try:
            while not stop.is_set():
                message = self._next()
                if message is None:
                    continue
                if message[0] == _BATCH:
                    yield from unpack(message[1])
                elif message[0] == _DONE:
                    return
                else:
                    raise message[1]
        finally:
            self.close()

    def _next(self) -> tuple[Any, ...] | None:
        try:
            message: tuple[Any, ...] = self._queue.get(timeout=POLL_SECONDS)
        except queue.Empty:
            if self._process.is_alive():
                return None
            try:  # it may have queued its last words just before it ended
                message = self._queue.get(timeout=POLL_SECONDS)
            except queue.Empty:
                code = self._process.exitcode
                msg = f"the source reader process ended unexpectedly (exit code {code})"
                raise TransientError(
                    msg,
                    hint="it is restarted from the last checkpoint; if this repeats, look for an out-of-memory kill "
                    "(dmesg) or a crash report above",
                ) from None
        return message

    def close(self) -> None:
        """Stop the reader process (if one runs) and wait for it; terminate it if it does not stop in time."""
        process, self._process = self._process, None
        if process is None:
            return
        self._stop.close()  # the reader process sees end-of-file: stop
        deadline = time.monotonic() + STOP_SECONDS
        while process.is_alive() and time.monotonic() < deadline:
            try:  # drain, so that its queue feeder can finish writing and the process can exit
                self._queue.get(timeout=POLL_SECONDS)
            except queue.Empty:
                continue
        if process.is_alive():
            log.warning("reader process did not stop in time; terminating it", pid=process.pid)
            process.terminate()
            process.join(STOP_SECONDS)
            if process.is_alive():
                process.kill()
        process.join(STOP_SECONDS)
        self._queue.close()


@dataclass(frozen=True)
class _ChildArgs:
    build: Callable[[], ChangeSource]
    start_after: Lsn
    until_caught_up: bool
    out: Any  # multiprocessing Queue of messages to the parent
    stop_requested: Any  # read end of a pipe whose write end only the parent holds: end-of-file means stop
    logging: ChildLogging | None


def _child_main(args: _ChildArgs) -> None:
    """The reader process: read, pack, send; stop when asked or when the parent is gone."""
    # Ctrl-C reaches the whole process group; stopping is the parent's decision, told through ``stop_requested``.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if args.logging is not None:
        configure_logging(args.logging.level, args.logging.format)
        register_secrets(list(args.logging.secrets))
    out = args.out
    stop = threading.Event()
    told_to_stop = threading.Event()

    def watch() -> None:
        # End-of-file on the pipe comes both from the parent closing it (a stop request) and from the parent dying
        # (the kernel closes its descriptors), so one wait covers both. A multiprocessing Event would not: its
        # set() waits for every sleeper to wake, and a sleeper that died never does.
        while not stop.is_set():
            if args.stop_requested.poll(POLL_SECONDS):
                told_to_stop.set()
                stop.set()

    threading.Thread(target=watch, name="mssql2pg-reader-watch", daemon=True).start()

    def send(message: tuple[Any, ...]) -> bool:
        while not stop.is_set():
            try:
                out.put(message, timeout=POLL_SECONDS)
            except queue.Full:
                continue
            return True
        return False

    source: ChangeSource | None = None
    try:
        source = args.build()
        items = source.read(args.start_after, stop, until_caught_up=args.until_caught_up)
        if relay(items, lambda batch: send((_BATCH, pack(batch)))):
            send((_DONE,))
    except BaseException as exc:
        send((_ERROR, _portable(exc)))
    finally:
        if source is not None:
            _close_quietly(source)
        if told_to_stop.is_set():
            # the parent no longer wants what is queued (and if it died, nobody could read it): do not wait to flush
            out.cancel_join_thread()


def _portable(exc: BaseException) -> BaseException:
    """The exception to send to the parent: the original when it pickles, else a classified stand-in."""
    candidate: BaseException = exc if isinstance(exc, Mssql2pgError) else classify(exc)
    try:
        pickle.loads(pickle.dumps(candidate))  # noqa: S301 - our own bytes, a round trip to test them
    except Exception:
        kind = TransientError if isinstance(candidate, TransientError) else TerminalError
        candidate = kind(f"{type(exc).__name__}: {exc}", hint=getattr(candidate, "hint", None))
    return candidate


def _close_quietly(source: ChangeSource) -> None:
    try:
        source.close()
    except Exception as exc:
        log.debug("closing the source failed", error=str(exc))
