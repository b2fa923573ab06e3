"""The capture agent's reconnect loop, with fake connections: backoff between attempts, from the shortest delay
again once a connection worked, a stop that ends a wait, and terminal faults that are not retried."""

from __future__ import annotations

import threading
from typing import Any

import pg8000.exceptions
import pytest

from mssql2pg.config import RetrySettings
from mssql2pg.emulator import agent as agent_module
from mssql2pg.emulator.agent import CaptureAgent
from mssql2pg.errors import TerminalError

NO_JITTER = RetrySettings(initial=1, maximum=8, multiplier=2, jitter=False)
LOST = pg8000.exceptions.InterfaceError("network error")


class RecordingStop(threading.Event):
    """Never sleeps: records each wait and sets itself after ``waits`` of them."""

    def __init__(self, waits: int) -> None:
        super().__init__()
        self.waited: list[float] = []
        self._left = waits

    def wait(self, timeout: float | None = None) -> bool:
        self.waited.append(float(timeout or 0))
        self._left -= 1
        if self._left <= 0:
            self.set()
        return self.is_set()


class FakeConnection:
    def __init__(self, script: list[Any]) -> None:
        self.script = script

    def run(self, sql: str, **_params: Any) -> list[list[int]]:
        if "set_capture_mode" in sql:
            return []
        step = self.script.pop(0) if self.script else 0
        if isinstance(step, Exception):
            raise step
        return [[step]]

    def close(self) -> None:
        raise LOST  # a dropped connection cannot close cleanly; the agent must not care


def _connections(monkeypatch: pytest.MonkeyPatch, outcomes: list[Any]) -> None:
    """Each connect() takes the next outcome: an exception to raise, or a scan script for a FakeConnection."""

    def connect(_url: str) -> FakeConnection:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return FakeConnection(outcome)

    monkeypatch.setattr(agent_module, "connect", connect)


def test_failed_connects_back_off_exponentially(monkeypatch: pytest.MonkeyPatch) -> None:
    _connections(monkeypatch, [LOST, LOST, LOST, LOST, [2]])
    stop = RecordingStop(waits=5)
    published = CaptureAgent("postgresql://x", 0.5, retry=NO_JITTER).run(stop)
    assert stop.waited == [1, 2, 4, 8, 0.5]  # four backoffs, then the polling interval after a scan
    assert published == 2


def test_after_a_connection_that_worked_the_backoff_starts_again_from_the_shortest_delay(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _connections(monkeypatch, [LOST, LOST, [1, LOST], LOST, [3]])
    stop = RecordingStop(waits=5)
    published = CaptureAgent("postgresql://x", 0.5, retry=NO_JITTER).run(stop)
    assert stop.waited == [1, 2, 1, 2, 0.5]
    assert published == 4  # counted over every connection


def test_a_terminal_fault_is_raised_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    missing = pg8000.exceptions.DatabaseError({"C": "3F000", "M": 'schema "cdc_emulator" does not exist'})
    _connections(monkeypatch, [[missing]])
    stop = RecordingStop(waits=5)
    with pytest.raises(TerminalError):
        CaptureAgent("postgresql://x", 0.5, retry=NO_JITTER).run(stop)
    assert stop.waited == []


def test_a_stop_during_a_backoff_ends_the_agent(monkeypatch: pytest.MonkeyPatch) -> None:
    _connections(monkeypatch, [LOST])
    stop = RecordingStop(waits=1)
    assert CaptureAgent("postgresql://x", 0.5, retry=NO_JITTER).run(stop) == 0
    assert stop.waited == [1]
