"""``mssql2pg_group_writer``: 1 while this process writes its group, 0 while it waits as a standby (issue 16
point 4), so a dashboard shows which instance writes which group from the first scrape."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from mssql2pg.errors import OwnedElsewhereError
from mssql2pg.observability import Observability
from mssql2pg.observability.metrics import GROUP_WRITER
from mssql2pg.pipeline.observed import ObservedSink
from mssql2pg.positions import Lsn
from tests.unit.observability.test_metrics import value


@dataclass
class Applier:
    busy: bool

    def start(self) -> Lsn:
        if self.busy:
            raise OwnedElsewhereError("dbo.t is being written by another connection")
        return Lsn.NULL


@pytest.mark.parametrize(("busy", "expected"), [(False, 1.0), (True, 0.0)])
def test_the_writer_gauge_follows_whether_the_group_was_claimed(busy: bool, expected: float) -> None:
    obs = Observability(version="t")
    sink = ObservedSink(Applier(busy), obs, [], group="ga")  # type: ignore[arg-type]

    if busy:
        with pytest.raises(OwnedElsewhereError):
            sink.start()
    else:
        sink.start()

    assert value(obs.metrics, GROUP_WRITER, group="ga") == expected
