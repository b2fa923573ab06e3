"""``pipeline.group: auto``: processes that share one configuration spread the table groups among themselves.

Each group has one writer at a time, enforced by the write locks its applier holds in the target
(:func:`mssql2pg.control.claim_tables`): whoever holds them writes, anyone else gets
:class:`~mssql2pg.errors.OwnedElsewhereError` before it has read or written anything. A spreading process builds
the pipeline of one group after another, starting at a group that depends on the process (so that processes
started together try different groups first), and keeps the first one whose locks it gets. When every group has
a writer it is a standby for all of them: it tries again every ``pipeline.standby_poll`` and takes the first
group whose writer has gone (its connection to the target ended, so the server dropped its locks).

A process writes one group at most. With fewer processes than groups some groups have no writer; ``mssql2pg
status`` shows them, and docs/scale-out.md says to run at least as many processes as groups (one more for a
standby). Why not several groups per process: a process's throughput is bounded by one applier; a group that
needs a process of its own is what scale-out is for.
"""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import structlog

from mssql2pg.config import Config
from mssql2pg.errors import OwnedElsewhereError, SourceError
from mssql2pg.pipeline.runner import RunStats

log = structlog.get_logger(component="pipeline")


class _Runner(Protocol):
    wait_when_busy: bool
    standby_since: float | None


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


def for_group(config: Config, group: str) -> Config:
    """``config`` as if started with ``pipeline.group: <group>``."""
    pipeline = config.pipeline.model_copy(update={"group": group})
    return config.model_copy(update={"pipeline": pipeline})


@dataclass
class Spreader:
    config: Config
    build: Callable[[Config], GroupPipeline | None]
    """Build (inside the retry loop) the pipeline of the group ``config`` names; None when stopped first."""
    groups: Callable[[], list[str]]
    """The groups of the selected tables, sorted (discovery; called once per round, so a group added to the
    configuration's tables is seen without a restart)."""
    instance: str

    def run(self, stop: threading.Event, *, until_caught_up: bool = False) -> RunStats:
        standby_since: float | None = None
        while not stop.is_set():
            groups = self.groups()
            if not groups:
                msg = "no table to replicate: no selected table has CDC enabled, so there is no group to take"
                raise SourceError(msg, hint="see `mssql2pg check`")
            for group in rotation(groups, self.instance):
                pipeline = self.build(for_group(self.config, group))
                if pipeline is None:  # stopped while a database was down
                    return RunStats()
                pipeline.runner.wait_when_busy = False
                pipeline.runner.standby_since = standby_since
                try:
                    log.debug("trying a group", group=group, instance=self.instance)
                    return pipeline.run(stop, until_caught_up=until_caught_up)
                except OwnedElsewhereError:
                    log.debug("the group has a writer; trying the next", group=group)
                finally:
                    pipeline.close()
                if stop.is_set():
                    return RunStats()
            if standby_since is None:
                standby_since = time.monotonic()
                log.info(
                    "standby: every group has a writer; waiting to take one over",
                    groups=groups,
                    poll_s=self.config.pipeline.standby_poll,
                )
            stop.wait(self.config.pipeline.standby_poll)
        return RunStats()
