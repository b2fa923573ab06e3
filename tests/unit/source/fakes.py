"""An in-memory ``SourceBackend``: change tables as lists, keyset pages computed the way the SQL does.

It records every page request, so tests can see exactly where each page resumed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mssql2pg.model import CaptureInstance, SourceColumn, TableId
from mssql2pg.positions import Lsn
from mssql2pg.source.reader import Position, SourceBackend


def lsn(n: int) -> Lsn:
    return Lsn.from_int(n)


def instance(name: str, table: str, start: int = 1, columns: Sequence[str] = ("id", "v")) -> CaptureInstance:
    cols = tuple(
        SourceColumn(name=c, ordinal=i, sql_type="int", nullable=i > 1) for i, c in enumerate(columns, start=1)
    )
    return CaptureInstance(
        name=name, source=TableId.parse(table), start_lsn=lsn(start), columns=cols, key_columns=("id",)
    )


@dataclass
class FakeSource:
    """Change tables keyed by capture instance; rows ``(start_lsn, seqval, op, mask, command_id, *values)``."""

    instances: list[CaptureInstance] = field(default_factory=list)
    rows: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)
    max: Lsn = Lsn.NULL
    floors: dict[str, Lsn] = field(default_factory=dict)
    times: dict[bytes, tuple[datetime, bytes]] = field(default_factory=dict)
    page_requests: list[tuple[str, Lsn | Position, int]] = field(default_factory=list)
    commit_time_requests: int = 0
    connections: int = 0

    def add(self, ci: CaptureInstance, commit: int, seqval: int, op: int, command_id: int, *values: Any) -> None:
        self.rows.setdefault(ci.name, []).append((lsn(commit).raw, lsn(seqval).raw, op, b"\x03", command_id, *values))
        self.max = max(self.max, lsn(commit))
        self.times.setdefault(lsn(commit).raw or b"", (datetime(2024, 1, 1, 0, 0, commit % 60), bytes([commit % 256])))

    @contextmanager
    def connect(self) -> Iterator[SourceBackend]:
        self.connections += 1
        yield _Backend(self)


class _Backend:
    def __init__(self, src: FakeSource) -> None:
        self.src = src

    def capture_instances(self) -> list[CaptureInstance]:
        return list(self.src.instances)

    def max_lsn(self) -> Lsn:
        return self.src.max

    def min_lsn(self, capture_instance: str) -> Lsn:
        ci = next((c for c in self.src.instances if c.name == capture_instance), None)
        return self.src.floors.get(capture_instance, ci.start_lsn if ci else Lsn.ZERO)

    def change_page(
        self, instance: CaptureInstance, after: Lsn | Position, to: Lsn, limit: int
    ) -> Sequence[Sequence[Any]]:
        self.src.page_requests.append((instance.name, after, limit))
        rows = sorted(self.src.rows.get(instance.name, []), key=lambda r: (r[0], r[4], r[1], r[2]))
        if isinstance(after, Position):
            key = (after.lsn, after.command_id, after.seqval, after.operation)
            rows = [r for r in rows if (r[0], r[4], r[1], r[2]) > key]
        else:
            rows = [r for r in rows if r[0] > (after.raw or b"")]
        rows = [r for r in rows if r[0] <= (to.raw or b"")]
        return rows[:limit]

    def commit_times(self, after: Lsn, to: Lsn, limit: int) -> Sequence[Sequence[Any]]:
        keys = sorted(k for k in self.src.times if (after.raw or b"") < k <= (to.raw or b""))
        return [(k, *self.src.times[k]) for k in keys[:limit]]

    def commit_time(self, lsn: Lsn) -> datetime | None:
        self.src.commit_time_requests += 1
        entry = self.src.times.get(lsn.raw or b"")
        return entry[0] if entry else None
