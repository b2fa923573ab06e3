"""The Applier as the runner's sink: a transient source fault mid-stream restarts from the committed checkpoint
and the target ends exactly right (nothing lost, nothing doubled)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from itertools import repeat

import pytest

from mssql2pg.errors import TerminalError, TransientError
from mssql2pg.model import Operation, ReaderItem, SourceColumn
from mssql2pg.pipeline.runner import ChangeSink, Runner
from mssql2pg.positions import Lsn
from mssql2pg.retry import Retry
from mssql2pg.sink import Applier, ApplySettings, build_target_table
from tests.fixtures.target import Connect, TxBuilder, capture_instance

pytestmark = pytest.mark.integration

T = capture_instance("dbo.R", [SourceColumn("Id", 1, "int", nullable=False), SourceColumn("N", 2, "bigint")], ["Id"])


class FlakySource:
    """Serves a fixed list of transactions; the first read fails after ``fail_after`` items."""

    def __init__(self, items: list[ReaderItem], fail_after: int) -> None:
        self.items = items
        self.fail_after = fail_after
        self.reads: list[Lsn] = []

    def read(self, start_after: Lsn, stop: threading.Event, *, until_caught_up: bool) -> Iterator[ReaderItem]:
        self.reads.append(start_after)
        for served, item in enumerate(i for i in self.items if getattr(i, "commit_lsn", Lsn.NULL) > start_after):
            if len(self.reads) == 1 and served == self.fail_after:
                raise TransientError("connection reset by peer")
            yield item

    def close(self) -> None:
        pass


def classify(exc: BaseException) -> TransientError | TerminalError:
    return TransientError(str(exc))


def test_runner_restart_with_applier_applies_every_change_once(target_connect: Connect) -> None:
    b = TxBuilder()
    items: list[ReaderItem] = [b.tx((T, Operation.INSERT, [i, i])) for i in range(50)]
    items += [b.update(T, [i, i], [i, i * 10]) for i in range(0, 50, 2)]
    applier = Applier(target_connect, [build_target_table(T)], "runner", ApplySettings(group_max_rows=7))
    sink: ChangeSink = applier
    source = FlakySource(items, fail_after=33)
    stats = Runner(source, sink, Retry(classify, lambda: repeat(0.0))).run(threading.Event(), until_caught_up=True)
    assert stats.attempts == 2
    assert source.reads[0].is_null
    assert not source.reads[1].is_null  # the second attempt resumed after a committed checkpoint
    conn = target_connect()
    rows = conn.run("SELECT id, n FROM dbo.r ORDER BY id")
    assert rows == [[i, i * 10 if i % 2 == 0 else i] for i in range(50)]
    assert applier.stats.checkpoint == items[-1].commit_lsn  # type: ignore[union-attr]
    assert sum(applier.stats.rows.values()) == 75
