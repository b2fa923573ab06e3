"""``pipeline.group: auto``: a process takes one group nobody writes, and waits as a standby for any group."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import pytest
from structlog.testing import capture_logs

from mssql2pg.config import Config
from mssql2pg.errors import OwnedElsewhereError, SourceError
from mssql2pg.pipeline.runner import RunStats
from mssql2pg.pipeline.spreading import Spreader, rotation


@dataclass
class FakeRunner:
    wait_when_busy: bool = True
    standby_since: float | None = None


@dataclass
class FakePipeline:
    group: str
    busy: bool
    runner: FakeRunner = field(default_factory=FakeRunner)
    closed: bool = False

    def run(self, stop: threading.Event, *, until_caught_up: bool = False) -> RunStats:
        assert not self.runner.wait_when_busy, "a spreading process must not wait for one group"
        if self.busy:
            raise OwnedElsewhereError(f"{self.group} is being written by another connection")
        return RunStats(rows=len(self.group))

    def close(self) -> None:
        self.closed = True


class RecordingStop(threading.Event):
    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout or 0.0)
        return False


def _config(**pipeline: object) -> Config:
    return Config.model_validate(
        {
            "source": {"url": "mssql+pytds://u@h/db"},
            "target": {"url": "postgresql://u@h/dw"},
            "tables": [{"name": "dbo.*"}],
            "pipeline": {"group": "auto", "standby_poll": 0.5, **pipeline},
        }
    )


def test_it_takes_the_first_group_nobody_writes_and_closes_the_ones_it_tried() -> None:
    built: list[FakePipeline] = []
    busy = {"ga"}

    def build(config: Config) -> FakePipeline:
        assert config.pipeline.group is not None
        built.append(FakePipeline(config.pipeline.group, config.pipeline.group in busy))
        return built[-1]

    spreader = Spreader(_config(), build, lambda: ["ga", "gb"], instance="host:1")
    stats = spreader.run(threading.Event())

    assert stats.rows == 2  # gb ran
    assert sorted(p.group for p in built) in (["ga", "gb"], ["gb"])
    assert all(p.closed for p in built)
    assert built[-1].group == "gb"


def test_with_every_group_written_it_waits_as_a_standby_for_whichever_frees_first() -> None:
    """Two full rounds find every group busy; then gb frees. It waited standby_poll between rounds, said once
    that it waits, and the runner it starts knows it takes over."""
    rounds = {"n": 0}
    built: list[FakePipeline] = []

    def groups() -> list[str]:
        rounds["n"] += 1
        return ["ga", "gb"]

    def build(config: Config) -> FakePipeline:
        group = config.pipeline.group or ""
        built.append(FakePipeline(group, busy=rounds["n"] <= 2 or group == "ga"))
        return built[-1]

    stop = RecordingStop()
    with capture_logs() as logs:
        stats = Spreader(_config(), build, groups, instance="host:2").run(stop)

    assert stats.rows == 2
    assert stop.waits == [0.5, 0.5]
    assert built[-1].group == "gb"
    assert built[-1].runner.standby_since is not None
    assert [e["event"] for e in logs].count("standby: every group has a writer; waiting to take one over") == 1


def test_a_stop_while_a_database_is_down_ends_it_without_a_pipeline() -> None:
    stats = Spreader(_config(), lambda _c: None, lambda: ["ga"], instance="h:3").run(threading.Event())
    assert stats == RunStats()


def test_without_any_group_it_says_what_to_configure() -> None:
    with pytest.raises(SourceError, match="no table to replicate"):
        Spreader(_config(), lambda _c: None, lambda: [], instance="h:4").run(threading.Event())


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_rotation_is_every_group_once_starting_where_the_instance_says(n: int) -> None:
    groups = [f"g{i}" for i in range(n)]
    starts = set()
    for instance in (f"host:{pid}" for pid in range(50)):
        order = rotation(groups, instance)
        assert sorted(order) == groups
        i = groups.index(order[0])
        assert order == groups[i:] + groups[:i]
        starts.add(order[0])
    assert starts == set(groups)  # different instances start at different groups: they spread at once
