"""``pipeline.group: auto``: a process writes its fair share of the groups nobody writes, lets go of groups when
others join, takes the groups of processes that died, and waits as a standby when every group has a writer."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from structlog.testing import capture_logs

from mssql2pg.config import Config
from mssql2pg.errors import OwnedElsewhereError, SourceError, TerminalError
from mssql2pg.observability import Observability
from mssql2pg.pipeline.runner import RunStats
from mssql2pg.pipeline.spreading import Spreader, fair_share, rotation


@dataclass
class FakeRunner:
    wait_when_busy: bool = True
    standby_since: float | None = None
    on_started: Callable[[], None] | None = None


@dataclass
class World:
    """The other processes, as the locks show them: which groups they write, and how many processes live."""

    written_elsewhere: set[str] = field(default_factory=set)
    processes: int = 1
    fail: set[str] = field(default_factory=set)  # groups whose pipeline ends with a terminal fault
    running: dict[str, FakePipeline] = field(default_factory=dict)
    built: list[str] = field(default_factory=list)


@dataclass
class FakePipeline:
    group: str
    world: World
    runner: FakeRunner = field(default_factory=FakeRunner)
    closed: bool = False

    def run(self, stop: threading.Event, *, until_caught_up: bool = False) -> RunStats:
        assert not self.runner.wait_when_busy, "a spreading process must not wait for one group"
        if self.group in self.world.written_elsewhere:
            raise OwnedElsewhereError(f"{self.group} is being written by another connection")
        assert self.runner.on_started is not None
        self.runner.on_started()
        if self.group in self.world.fail:
            raise TerminalError(f"{self.group}: the target refused the table")
        self.world.running[self.group] = self
        if not until_caught_up:
            stop.wait()
        del self.world.running[self.group]
        return RunStats(rows=1)

    def close(self) -> None:
        self.closed = True


class Rounds(threading.Event):
    """A stop event that runs ``between`` at each of the spreader's waits, and stops after ``rounds`` of them."""

    def __init__(self, rounds: int, between: Callable[[int], None] = lambda _n: None) -> None:
        super().__init__()
        self.rounds, self.between, self.waits = rounds, between, 0

    def wait(self, timeout: float | None = None) -> bool:
        if timeout is None or timeout < 0.1:  # the spreader waiting for a group's pipeline to start
            return super().wait(timeout)
        self.waits += 1
        self.between(self.waits)
        if self.waits >= self.rounds:
            self.set()
        return self.is_set()


def _config() -> Config:
    return Config.model_validate(
        {
            "source": {"url": "mssql+pytds://u@h/db"},
            "target": {"url": "postgresql://u@h/dw"},
            "tables": [{"name": "dbo.*"}],
            "pipeline": {"group": "auto", "standby_poll": 0.5},
        }
    )


def _spreader(world: World, groups: list[str], instance: str = "host:1") -> Spreader:
    def build(config: Config) -> FakePipeline:
        assert config.pipeline.group is not None
        world.built.append(config.pipeline.group)
        return FakePipeline(config.pipeline.group, world)

    return Spreader(_config(), build, lambda: groups, lambda: world.processes, instance)


GROUPS = ["g1", "g2", "g3", "g4"]


def test_it_writes_its_fair_share_of_the_groups_nobody_writes() -> None:
    world = World(written_elsewhere={"g1"}, processes=2)
    seen: list[set[str]] = []
    stop = Rounds(2, lambda _n: seen.append(set(world.running)))

    stats = _spreader(world, GROUPS).run(stop)

    assert len(seen[0]) == 2  # ceil(4 groups / 2 processes)
    assert "g1" not in seen[0]
    assert seen[1] == seen[0]  # a process at its share tries nothing more
    assert world.running == {}  # stopped: every group it wrote was let go
    assert stats.rows == 2


def test_it_takes_the_groups_of_a_process_that_died() -> None:
    world = World(written_elsewhere={"g1", "g2"}, processes=2)
    seen: list[set[str]] = []

    def between(n: int) -> None:
        seen.append(set(world.running))
        if n == 1:  # the other process died: its groups are free, and one process is left
            world.written_elsewhere.clear()
            world.processes = 1

    _spreader(world, GROUPS).run(Rounds(3, between))

    assert seen[0] == {"g3", "g4"}
    assert seen[1] == set(GROUPS)


def test_it_lets_go_of_groups_when_another_process_joins() -> None:
    world = World(processes=1)
    seen: list[set[str]] = []

    def between(n: int) -> None:
        seen.append(set(world.running))
        if n == 1:
            world.processes = 2

    with capture_logs() as logs:
        _spreader(world, GROUPS).run(Rounds(3, between))

    assert seen[0] == set(GROUPS)
    assert len(seen[1]) == 2
    assert seen[1] < seen[0]
    assert [e["event"] for e in logs].count("letting a group go to another process") >= 2


def test_with_every_group_written_it_waits_as_a_standby_and_then_takes_one_over() -> None:
    world = World(written_elsewhere=set(GROUPS), processes=5)
    taken: list[FakePipeline] = []

    def between(n: int) -> None:
        if n == 2:
            world.written_elsewhere.discard("g2")
        if n == 3:
            taken.extend(world.running.values())

    with capture_logs() as logs:
        _spreader(world, GROUPS).run(Rounds(3, between))

    assert [p.group for p in taken] == ["g2"]
    assert taken[0].runner.standby_since is not None  # its runner says it took over
    assert [e["event"] for e in logs].count("standby: every group has a writer; waiting to take one over") == 1


def test_a_terminal_fault_of_one_group_ends_the_process_after_letting_go_of_the_others() -> None:
    world = World(processes=1, fail={"g3"})
    with pytest.raises(TerminalError, match="g3"):
        _spreader(world, GROUPS).run(Rounds(5))
    assert world.running == {}


def test_until_caught_up_it_returns_once_its_groups_are_done() -> None:
    world = World(processes=2)
    stats = _spreader(world, GROUPS).run(threading.Event(), until_caught_up=True)
    assert stats.rows == 2


def test_a_stop_while_a_database_is_down_ends_it_without_a_pipeline() -> None:
    spreader = Spreader(_config(), lambda _c: None, lambda: ["ga"], lambda: 1, "h:3")
    assert spreader.run(Rounds(1)) == RunStats()


def test_without_any_group_it_says_what_to_configure() -> None:
    with pytest.raises(SourceError, match="no table to replicate"):
        Spreader(_config(), lambda _c: None, lambda: [], lambda: 1, "h:4").run(threading.Event())


@pytest.mark.parametrize(("groups", "processes", "share"), [(4, 2, 2), (5, 2, 3), (2, 3, 1), (3, 0, 3), (1, 1, 1)])
def test_fair_share(groups: int, processes: int, share: int) -> None:
    assert fair_share(groups, processes) == share


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


def test_groups_that_have_a_writer_are_not_even_built() -> None:
    """A standby does not build (discover, evolve, check) the pipeline of a group some process writes."""
    world = World(written_elsewhere={"g1", "g2"}, processes=4)
    spreader = _spreader(world, GROUPS)
    spreader.written = lambda: set(world.written_elsewhere)

    spreader.run(Rounds(2))

    assert "g1" not in world.built
    assert "g2" not in world.built


def test_a_process_that_writes_no_group_is_alive_and_says_it_is_a_standby_every_round() -> None:
    """Liveness (a heartbeat) and readiness (``standby: ...``) come from the pipelines it runs; writing none,
    it reports them itself, or an orchestrator would restart or never route to a healthy standby."""
    world = World(written_elsewhere=set(GROUPS), processes=5)
    reasons: list[str] = []
    spreader = _spreader(world, GROUPS)
    spreader.on_standby = reasons.append

    spreader.run(Rounds(3))

    assert len(reasons) == 3
    assert all(r.startswith("every group has a writer") for r in reasons)


def test_a_standby_of_every_group_stays_alive_and_ready() -> None:
    """With the real health object: beats keep liveness, and /readyz says standby."""
    obs = Observability(version="t")
    world = World(written_elsewhere=set(GROUPS), processes=5)
    spreader = _spreader(world, GROUPS)
    spreader.on_standby = obs.standby
    spreader.run(Rounds(2))
    _, body = obs.health.readiness()
    assert body["components"]["target"]["reason"].startswith("standby: every group has a writer")
    assert obs.health.liveness()[0]
