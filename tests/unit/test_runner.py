"""The runner's contract with fake source and sink: nothing lost, nothing repeated, faults restart cleanly."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from structlog.testing import capture_logs

from mssql2pg.config import RetrySettings
from mssql2pg.errors import OwnedElsewhereError, TerminalError, TransientError
from mssql2pg.model import ChangeRow, Heartbeat, Operation, ReaderItem, TableId, TxChunk
from mssql2pg.observability import Observability
from mssql2pg.pipeline import runner as runner_module
from mssql2pg.pipeline.observed import retry_policy
from mssql2pg.pipeline.runner import Runner
from mssql2pg.positions import Lsn
from mssql2pg.retry import RetriesExhaustedError, Retry

T = TableId("dbo", "t")


def tx(n: int) -> TxChunk:
    lsn = Lsn.from_int(1000 + n)
    row = ChangeRow(T, "dbo_t", lsn, lsn, Operation.INSERT, (n,))
    return TxChunk(lsn, [row])


@dataclass
class FakeSource:
    txs: list[TxChunk]
    fail_after: dict[int, BaseException] = field(default_factory=dict)  # attempt -> error after 1st item
    reads: list[Lsn] = field(default_factory=list)

    def read(self, start_after: Lsn, stop: threading.Event, *, until_caught_up: bool) -> Iterator[ReaderItem]:
        self.reads.append(start_after)
        attempt = len(self.reads)
        sent = 0
        for t in self.txs:
            if t.commit_lsn <= start_after:
                continue
            if sent == 1 and attempt in self.fail_after:
                raise self.fail_after[attempt]
            yield t
            sent += 1
        yield Heartbeat(self.txs[-1].commit_lsn)

    def close(self) -> None:
        pass


@dataclass
class FakeSink:
    checkpoint: Lsn = Lsn.NULL
    committed: list[int] = field(default_factory=list)
    pending: list[tuple[Lsn, int]] = field(default_factory=list)
    abandoned: int = 0

    def start(self) -> Lsn:
        return self.checkpoint

    def offer(self, item: ReaderItem) -> None:
        if isinstance(item, TxChunk):
            assert item.commit_lsn > self.checkpoint, "runner re-sent an applied transaction"
            self.pending.append((item.commit_lsn, item.rows[0].values[0]))
            if len(self.pending) >= 2:
                self.flush()

    def tick(self) -> None:
        self.flush()

    def flush(self) -> None:
        for lsn, value in self.pending:
            self.committed.append(value)
            self.checkpoint = lsn
        self.pending.clear()

    def abandon(self) -> None:
        self.pending.clear()
        self.abandoned += 1

    def mid_transaction(self) -> bool:
        return False

    def close(self) -> None:
        pass


def classify(exc: BaseException) -> TransientError | TerminalError:
    if isinstance(exc, ConnectionError):
        return TransientError(str(exc))
    return TerminalError(str(exc))


def no_wait() -> Iterator[float]:
    while True:
        yield 0.0


def test_until_caught_up_applies_everything_once() -> None:
    source, sink = FakeSource([tx(i) for i in range(10)]), FakeSink()
    stats = Runner(source, sink, Retry(classify, no_wait)).run(threading.Event(), until_caught_up=True)

    assert sink.committed == list(range(10))
    assert stats.transactions == 10
    assert stats.last_lsn == Lsn.from_int(1009)


def test_transient_fault_restarts_from_committed_checkpoint() -> None:
    faults: dict[int, BaseException] = {1: ConnectionError("reset"), 2: ConnectionError("reset again")}
    source = FakeSource([tx(i) for i in range(10)], fail_after=faults)
    sink = FakeSink()
    retries: list[int] = []
    runner = Runner(
        source,
        sink,
        Retry(classify, no_wait, on_retry=lambda n, d, e: retries.append(n)),
        tick_interval=60,  # no time-bound commit between the first item and the fault: no progress counted
    )

    runner.run(threading.Event(), until_caught_up=True)

    assert sink.committed == list(range(10))
    assert sink.abandoned == 2
    assert retries == [1, 2]
    assert source.reads[0] == Lsn.NULL
    assert all(b >= a for a, b in zip(source.reads, source.reads[1:], strict=False))


def test_terminal_fault_is_raised_not_retried() -> None:
    source = FakeSource([tx(i) for i in range(5)], fail_after={1: ValueError("bad data")})

    with pytest.raises(TerminalError, match="bad data"):
        Runner(source, FakeSink(), Retry(classify, no_wait)).run(threading.Event(), until_caught_up=True)
    assert len(source.reads) == 1


@dataclass
class EndlessSource:
    produced: int = 0

    def read(self, start_after: Lsn, stop: threading.Event, *, until_caught_up: bool) -> Iterator[ReaderItem]:
        n = start_after.to_int() - 1000 + 1 if start_after else 0
        while not stop.is_set():
            yield tx(n)
            self.produced = n
            n += 1

    def close(self) -> None:
        pass


def test_stop_request_commits_what_was_received_and_returns() -> None:
    stop = threading.Event()
    source, sink = EndlessSource(), FakeSink()
    runner = Runner(source, sink, Retry(classify, no_wait), queue_size=4)
    thread = threading.Thread(target=runner.run, args=(stop,))
    thread.start()
    while len(sink.committed) < 50:
        thread.join(0.01)
    stop.set()
    thread.join(10)

    assert not thread.is_alive()
    assert sink.pending == []
    assert sink.committed == list(range(len(sink.committed)))
    assert runner.stats.transactions == len(sink.committed)


def test_already_stopped_runner_does_nothing() -> None:
    stop = threading.Event()
    stop.set()
    sink = FakeSink()

    stats = Runner(FakeSource([tx(1)]), sink, Retry(classify, no_wait)).run(stop)

    assert stats.attempts == 0
    assert sink.committed == []


@dataclass
class ChunkedSink(FakeSink):
    """Commits whole source transactions only; knows when one has arrived in part."""

    open_tx: Lsn | None = None
    ticks: int = 0

    def offer(self, item: ReaderItem) -> None:
        if isinstance(item, TxChunk):
            self.open_tx = None if item.last else item.commit_lsn
            self.pending.append((item.commit_lsn, item.rows[0].values[0]))

    def flush(self) -> None:
        if self.open_tx is not None:  # a partly received transaction is rolled back, as the applier does
            self.pending.clear()
            return
        super().flush()

    def tick(self) -> None:
        self.ticks += 1
        if self.open_tx is None:
            super().tick()

    def mid_transaction(self) -> bool:
        return self.open_tx is not None


def test_replan_ends_the_run_at_a_transaction_boundary_without_rolling_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner_module, "BATCH_ITEMS", 1)  # hand each chunk over on its own
    lsn = Lsn.from_int(2000)
    halves = [
        TxChunk(lsn, [ChangeRow(T, "dbo_t", lsn, lsn, Operation.INSERT, (1,))], first=True, last=False),
        TxChunk(lsn, [ChangeRow(T, "dbo_t", lsn, lsn, Operation.INSERT, (2,))], first=False, last=True),
    ]
    replan = threading.Event()
    sink = ChunkedSink()

    class Source:
        def read(self, start_after: Lsn, stop: threading.Event, *, until_caught_up: bool) -> Iterator[ReaderItem]:
            yield halves[0]
            assert wait_until(sink.mid_transaction)
            ticks = sink.ticks
            replan.set()  # the request arrives while the sink holds half of the transaction ...
            wait_until(lambda: sink.ticks > ticks + 1)  # ... and the runner goes round its loop with it
            yield halves[1]
            stop.wait(30)  # then nothing more arrives until the runner stops the reader

        def close(self) -> None:
            pass

    runner = Runner(Source(), sink, Retry(classify, no_wait), replan=replan)
    runner.run(threading.Event())

    assert sink.committed == [1, 2]  # the whole transaction, not rolled back
    assert sink.checkpoint == lsn


def wait_until(probe: object, timeout: float = 10.0) -> bool:
    done = threading.Event()
    for _ in range(int(timeout / 0.01)):
        if probe():  # type: ignore[operator]
            return True
        done.wait(0.01)
    return False


# -- retry.max_attempts: failed attempts in a row, wherever they fail ---------------------------------------------
@dataclass
class DownSink(FakeSink):
    """A target that is down for the first ``down`` attempts: ``start()`` fails with a connection error."""

    down: int = 1_000_000
    starts: int = 0

    def start(self) -> Lsn:
        self.starts += 1
        if self.starts <= self.down:
            raise ConnectionError("connection refused")
        return super().start()


def test_max_attempts_gives_up_after_that_many_failed_attempts_in_a_row() -> None:
    sink = DownSink()
    retries: list[int] = []
    runner = Runner(
        FakeSource([tx(1)]), sink, Retry(classify, no_wait, max_attempts=3, on_retry=lambda n, d, e: retries.append(n))
    )

    with pytest.raises(RetriesExhaustedError) as caught:
        runner.run(threading.Event(), until_caught_up=True)

    assert sink.starts == 3
    assert retries == [1, 2]  # the third failure is not retried
    assert "3 failed attempts" in str(caught.value)
    assert isinstance(caught.value.__cause__, TransientError)


def test_without_max_attempts_the_runner_retries_until_the_target_is_back() -> None:
    sink = DownSink(down=50)

    stats = Runner(FakeSource([tx(i) for i in range(3)]), sink, Retry(classify, no_wait)).run(
        threading.Event(), until_caught_up=True
    )

    assert sink.starts == 51
    assert sink.committed == [0, 1, 2]
    assert stats.attempts == 51


@dataclass
class EagerSink(FakeSink):
    """Commits every transaction as it is offered."""

    def offer(self, item: ReaderItem) -> None:
        super().offer(item)
        self.flush()


def test_an_attempt_that_commits_starts_a_new_count() -> None:
    # every attempt commits one transaction, then the source fails: never two failures without progress between
    faults: dict[int, BaseException] = {n: ConnectionError(f"reset {n}") for n in range(1, 10)}
    source, sink = FakeSource([tx(i) for i in range(10)], fail_after=faults), EagerSink()
    retries: list[int] = []
    runner = Runner(source, sink, Retry(classify, no_wait, max_attempts=2, on_retry=lambda n, d, e: retries.append(n)))

    stats = runner.run(threading.Event(), until_caught_up=True)

    assert sink.committed == list(range(10))
    assert retries == [1] * 9
    assert stats.attempts == 10


@dataclass
class CommitsThenGoesDown(EagerSink):
    """Commits during the first attempt; from then on the target is down (``start()`` fails)."""

    starts: int = 0

    def start(self) -> Lsn:
        self.starts += 1
        if self.starts > 10:
            raise ValueError("still retrying: the failed starts were taken for progress")  # terminal: ends the test
        if self.starts > 1:
            raise ConnectionError("connection refused")
        return super().start()


def test_a_failed_start_after_progress_is_not_progress() -> None:
    source = FakeSource([tx(i) for i in range(5)], fail_after={1: ConnectionError("reset")})
    sink = CommitsThenGoesDown()

    with pytest.raises(RetriesExhaustedError):
        Runner(source, sink, Retry(classify, no_wait, max_attempts=3)).run(threading.Event(), until_caught_up=True)

    assert sink.committed == [0]
    assert sink.starts == 3  # the attempt that committed, then two failed starts: three failures in a row


def test_max_attempts_counts_start_up_and_streaming_failures_together() -> None:
    retry = Retry(classify, no_wait, max_attempts=3)
    attempts = iter([ConnectionError("down"), ConnectionError("still down"), None])

    def build() -> str:
        error = next(attempts)
        if error is not None:
            raise error
        return "built"

    assert retry.call(build, threading.Event()) == "built"  # two failures, then success: a new count starts
    assert retry.failures == 0
    retry.failed(ConnectionError("the target went away at the end of start-up"))
    sink = DownSink()
    with pytest.raises(RetriesExhaustedError):
        Runner(FakeSource([tx(1)]), sink, retry).run(threading.Event(), until_caught_up=True)
    assert sink.starts == 2  # one start-up failure and two of the runner's: three in a row


def test_the_pipeline_component_is_healthy_again_after_recovery() -> None:
    """``on_retry`` marks an error that names no side as a failing ``pipeline`` component; the first commit
    after the fault clears it (nothing else would: the source and the target report only for themselves)."""
    obs = Observability(process_metrics=False)
    obs.component_ok("source")
    obs.component_ok("target")
    seen: list[str] = []

    @dataclass
    class Recording(FakeSource):
        def read(self, start_after: Lsn, stop: threading.Event, *, until_caught_up: bool) -> Iterator[ReaderItem]:
            seen.append(_pipeline_status(obs))
            yield from super().read(start_after, stop, until_caught_up=until_caught_up)

    source = Recording([tx(i) for i in range(5)], fail_after={1: ConnectionError("somewhere in between")})
    retry = retry_policy(RetrySettings(initial=0.001, maximum=0.001), obs)

    Runner(source, EagerSink(), retry).run(threading.Event(), until_caught_up=True)

    assert seen == ["absent", "degraded"]  # marked while retrying ...
    assert _pipeline_status(obs) == "healthy"  # ... and healthy again once the retry committed
    assert obs.health.readiness()[1]["status"] == "healthy"


def _pipeline_status(obs: Observability) -> str:
    status: str = obs.health.readiness()[1]["components"].get("pipeline", {}).get("status", "absent")
    return status


@dataclass
class OwnedSink(FakeSink):
    """Another process writes the tables for the first ``owned`` starts (this one is its standby)."""

    owned: int = 0
    starts: int = 0

    def start(self) -> Lsn:
        self.starts += 1
        if self.starts <= self.owned:
            raise OwnedElsewhereError("dbo.t is being written by another connection")
        return super().start()


def test_a_standby_waits_without_counting_failures_and_takes_over() -> None:
    """Waiting for the owner to go is not a failed attempt: retry.max_attempts (here 2) does not end it, it
    waits standby_poll between tries, and it says once that it waits and once that it took over."""
    sink = OwnedSink(owned=5)
    waits: list[float] = []

    class Stop(threading.Event):
        def wait(self, timeout: float | None = None) -> bool:
            waits.append(timeout or 0.0)
            return False

    with capture_logs() as logs:
        stats = Runner(
            FakeSource([tx(i) for i in range(3)]), sink, Retry(classify, no_wait, max_attempts=2), standby_poll=0.25
        ).run(Stop(), until_caught_up=True)

    assert sink.committed == [0, 1, 2]
    assert stats.failures == []
    assert waits == [0.25] * 5
    events = [entry["event"] for entry in logs]
    assert events.count("standby: another process writes these tables; waiting to take over") == 1
    assert events.count("took over: this process writes its tables now") == 1


def test_a_standby_leaves_the_wait_when_its_tables_are_re_planned() -> None:
    """A table paused for a resync holds the lock too: once the pipeline is asked to re-plan, the runner returns
    instead of waiting for a table it will no longer replicate."""
    sink = OwnedSink(owned=1_000_000)
    replan = threading.Event()
    replan.set()

    stats = Runner(FakeSource([tx(1)]), sink, Retry(classify, no_wait), replan=replan).run(threading.Event())

    assert sink.starts == 1
    assert stats.failures == []


def test_a_runner_that_must_not_wait_hands_a_busy_group_back_to_its_caller() -> None:
    """With ``pipeline.group: auto`` a busy group is not waited for: the runner closes what it opened and
    raises, so the caller can try the next group."""
    sink = OwnedSink(owned=1)
    source = FakeSource([tx(1)])

    with pytest.raises(OwnedElsewhereError):
        Runner(source, sink, Retry(classify, no_wait), wait_when_busy=False).run(threading.Event())

    assert sink.starts == 1
    assert sink.committed == []


def test_a_runner_started_after_a_wait_elsewhere_says_it_took_over() -> None:
    """The caller that waited (for any group) tells the runner since when; its first start is a takeover."""
    with capture_logs() as logs:
        Runner(FakeSource([tx(1)]), FakeSink(), Retry(classify, no_wait), standby_since=0.0).run(
            threading.Event(), until_caught_up=True
        )
    assert [e["event"] for e in logs].count("took over: this process writes its tables now") == 1
