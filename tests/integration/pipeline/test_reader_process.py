"""The reader in a process of its own (``reader.separate_process``) behaves like the reader in the pipeline's
process, and never outlives it.

The sources the spawned processes run are module-level here because a spawned process imports what it runs by
name (see :class:`mssql2pg.pipeline.reader_process.ProcessSource`).
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mssql2pg.config import load_config
from mssql2pg.emulator import connect
from mssql2pg.errors import TerminalError, TransientError
from mssql2pg.model import Heartbeat, ReaderItem, TableId, TxChunk
from mssql2pg.pipeline.plan import build_reader
from mssql2pg.pipeline.reader_process import ProcessSource
from mssql2pg.positions import Lsn
from mssql2pg.source.errors import LsnGapError
from tests.e2e.pipeline_process import write_config
from tests.fixtures.emulator import enable_table
from tests.fixtures.waiting import wait_for

pytestmark = pytest.mark.integration

ORDERS = TableId("dbo", "orders")


def _number(lsn: Lsn) -> int:
    return 0 if lsn == Lsn.NULL else lsn.to_int()


class EndlessHeartbeats:
    """A source that never catches up: a heartbeat at an ever higher LSN until stopped."""

    def read(self, start_after: Lsn, stop: threading.Event, *, until_caught_up: bool) -> Iterator[ReaderItem]:
        n = _number(start_after)
        while not stop.wait(0.01):
            n += 1
            yield Heartbeat(Lsn.from_int(n), None, (ORDERS,))

    def close(self) -> None:
        pass


class FailingSource:
    """A source that yields one heartbeat, then raises ``error``."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def read(self, start_after: Lsn, stop: threading.Event, *, until_caught_up: bool) -> Iterator[ReaderItem]:
        yield Heartbeat(Lsn.from_int(_number(start_after) + 1), None, (ORDERS,))
        raise self.error

    def close(self) -> None:
        pass


class Unpicklable(Exception):  # noqa: N818 - named for what it is in these tests
    """An error a third-party library might raise: it holds something that cannot cross a process boundary."""

    def __init__(self) -> None:
        super().__init__("driver state")
        self.lock = threading.Lock()


def endless() -> EndlessHeartbeats:
    return EndlessHeartbeats()


def failing(kind: str) -> FailingSource:
    errors: dict[str, BaseException] = {
        "gap": LsnGapError(ORDERS, "dbo_orders", Lsn.from_int(5), Lsn.from_int(9)),
        "terminal": TerminalError("bad data", hint="fix it"),
        "unpicklable": Unpicklable(),
        "connection": ConnectionResetError("peer reset"),
    }
    return FailingSource(errors[kind])


def _read_all(source: ProcessSource, start: Lsn = Lsn.NULL) -> list[ReaderItem]:
    return list(source.read(start, threading.Event(), until_caught_up=True))


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # a zombie (exited, not yet reaped by its parent) counts as gone
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z"


def test_reads_the_same_items_as_the_reader_in_process(
    emulated_source_url: str, target_url: str, tmp_path: Path
) -> None:
    src = connect(emulated_source_url)
    src.run("CREATE SCHEMA dbo")
    src.run("CREATE TABLE dbo.orders (id int PRIMARY KEY, note text, amount numeric(10,2))")
    src.run("CREATE TABLE dbo.lines (id int PRIMARY KEY, order_id int)")
    enable_table(src, "dbo", "orders")
    enable_table(src, "dbo", "lines")
    src.run("INSERT INTO dbo.orders SELECT g, 'n' || g, g / 3.0 FROM generate_series(1, 300) g")
    src.run("BEGIN")
    src.run("UPDATE dbo.orders SET note = NULL WHERE id % 7 = 0")
    src.run("INSERT INTO dbo.lines SELECT g, g FROM generate_series(1, 50) g")
    src.run("COMMIT")
    src.run("DELETE FROM dbo.orders WHERE id > 290")
    src.close()
    config = load_config(write_config(tmp_path / "p.yaml", emulated_source_url, target_url, ["dbo.*"]))
    tables = [ORDERS, TableId("dbo", "lines")]

    in_process = build_reader(config, tables)
    try:
        expected = list(in_process.read(Lsn.NULL, threading.Event(), until_caught_up=True))
    finally:
        in_process.close()
    received = _read_all(ProcessSource(functools.partial(build_reader, config, tables)))

    assert sum(len(i.rows) for i in expected if isinstance(i, TxChunk)) == 300 + 2 * 42 + 50 + 10
    assert received == expected


@pytest.mark.parametrize(
    ("kind", "expected_type"),
    [("gap", LsnGapError), ("terminal", TerminalError), ("connection", TransientError)],
)
def test_a_fault_in_the_reader_process_arrives_as_the_same_error(kind: str, expected_type: type) -> None:
    received: list[ReaderItem] = []
    with pytest.raises(expected_type) as caught:
        received.extend(
            ProcessSource(functools.partial(failing, kind)).read(Lsn.NULL, threading.Event(), until_caught_up=True)
        )

    assert len(received) == 1  # what was read before the fault still arrives first
    if kind == "gap":
        assert caught.value.table == ORDERS  # type: ignore[attr-defined]
        assert caught.value.min_lsn == Lsn.from_int(9)  # type: ignore[attr-defined]
    if kind == "terminal":
        assert caught.value.hint == "fix it"  # type: ignore[attr-defined]


def test_an_error_that_cannot_be_pickled_arrives_classified_with_its_text() -> None:
    with pytest.raises(TerminalError, match="Unpicklable: driver state"):
        _read_all(ProcessSource(functools.partial(failing, "unpicklable")))


def test_stopping_the_read_ends_the_reader_process() -> None:
    source = ProcessSource(endless)
    items = source.read(Lsn.NULL, threading.Event(), until_caught_up=False)
    next(items)
    pid = source.pid
    assert pid is not None

    items.close()  # what the runner does when it stops reading

    assert source.pid is None
    assert _gone(pid)


def test_a_stop_request_ends_the_read_and_the_process() -> None:
    source = ProcessSource(endless)
    stop = threading.Event()
    seen = 0
    pid = None
    for _ in source.read(Lsn.NULL, stop, until_caught_up=False):
        pid = source.pid
        seen += 1
        if seen == 3:
            stop.set()

    assert seen >= 3
    assert pid is not None
    assert _gone(pid)


def test_a_killed_reader_process_is_a_transient_fault() -> None:
    source = ProcessSource(endless)
    items = source.read(Lsn.NULL, threading.Event(), until_caught_up=False)
    next(items)
    assert source.pid is not None
    os.kill(source.pid, signal.SIGKILL)

    with pytest.raises(TransientError, match="ended unexpectedly"):
        for _ in items:
            pass


def test_the_reader_process_ends_when_the_pipeline_process_is_killed(tmp_path: Path) -> None:
    script = tmp_path / "parent.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys, threading
            from mssql2pg.pipeline.reader_process import ProcessSource
            from mssql2pg.positions import Lsn
            from tests.integration.pipeline.test_reader_process import endless

            if __name__ == "__main__":
                source = ProcessSource(endless)
                for _ in source.read(Lsn.NULL, threading.Event(), until_caught_up=False):
                    print("reader-pid", source.pid, flush=True)
                    threading.Event().wait()  # hold here until killed
            """
        ),
        encoding="utf-8",
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert parent.stdout is not None
        lines = (line.split() for line in parent.stdout)
        child = next(int(words[1]) for words in lines if words[:1] == ["reader-pid"])
        assert not _gone(child)

        parent.kill()
        parent.wait(30)

        wait_for(lambda: _gone(child), timeout=30, what="the orphaned reader process to exit")
    finally:
        if parent.poll() is None:
            parent.kill()
