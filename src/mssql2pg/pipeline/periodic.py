"""The one shape of the pipeline's background watchers: a daemon thread that does one thing every so often
while a pipeline runs, and stops when the pipeline closes it.

The control-schema watcher, the clock-skew measurement, the retention margin and the capture-instance manager
each only say what one look does (:meth:`Periodic.tick`) and how often (:meth:`Periodic.period`); starting,
waiting without sleeping past a close, and stopping live here once. A tick handles its own faults (a database
away is the runner's to report and retry): an exception escaping it would end the watcher.
"""

from __future__ import annotations

import threading
from typing import ClassVar, Self


class Periodic:
    """Calls :meth:`tick` every :meth:`period` seconds in a daemon thread, from :meth:`start` until
    :meth:`close`, or until a tick returns True (its work is done)."""

    thread_name: ClassVar[str] = "mssql2pg-periodic"
    tick_at_start: ClassVar[bool] = False
    """Tick once right at start, before the first wait (a gauge wanted at once)."""
    close_timeout: ClassVar[float] = 30.0
    """Seconds :meth:`close` waits for a tick in flight (a slow database) before leaving the daemon thread."""

    _done: threading.Event
    _thread: threading.Thread

    def period(self) -> float:
        raise NotImplementedError

    def tick(self) -> bool | None:
        """One look; True ends the watcher."""
        raise NotImplementedError

    def closing(self) -> bool:
        """Whether :meth:`close` was called: a long tick checks it between its steps (False before :meth:`start`)."""
        done: threading.Event | None = getattr(self, "_done", None)
        return done is not None and done.is_set()

    def start(self) -> Self:
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=self.thread_name, daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        if not hasattr(self, "_thread"):  # never started
            return
        self._done.set()
        self._thread.join(timeout=self.close_timeout)

    def _loop(self) -> None:
        if self.tick_at_start and self.tick():
            return
        while not self._done.wait(self.period()):
            if self.tick():
                return
