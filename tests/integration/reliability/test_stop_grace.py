"""The graceful stop is bounded: after a stop signal the process gets ``grace`` seconds to finish the current
transaction, then it is abandoned (exit 0 without committing). The end-to-end proof is
``tests/e2e/test_outages.py::test_sigterm_while_target_network_hangs_exits_0``; this checks the mechanism
in-process, without exiting (``_abandon`` is replaced)."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator

import pytest

from mssql2pg.cli import run as commands
from tests.fixtures.waiting import wait_for


@pytest.fixture
def restore_handlers() -> Iterator[None]:
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    yield
    for s, handler in saved.items():
        signal.signal(s, handler)


@pytest.mark.usefixtures("restore_handlers")
def test_sigterm_sets_stop_and_abandons_after_the_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    abandoned = threading.Event()
    monkeypatch.setattr(commands, "_abandon", lambda grace: abandoned.set())
    stop = threading.Event()
    commands._install_signal_handlers(stop, grace=0.2)

    os.kill(os.getpid(), signal.SIGTERM)
    wait_for(stop.is_set, timeout=5, what="the stop flag after SIGTERM")

    wait_for(abandoned.is_set, timeout=5, what="the stop to be abandoned after the grace")


@pytest.mark.usefixtures("restore_handlers")
def test_second_signal_interrupts_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(commands, "_abandon", lambda grace: None)  # the watchdog must not end pytest
    stop = threading.Event()
    commands._install_signal_handlers(stop, grace=0.1)
    os.kill(os.getpid(), signal.SIGTERM)
    wait_for(stop.is_set, timeout=5, what="the stop flag after SIGTERM")
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGTERM)  # the handler runs in this thread as soon as os.kill returns
