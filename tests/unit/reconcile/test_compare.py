"""The narrowing in :func:`compare_table`, on in-memory sides: exactly the differing keys, and only the rows of
differing segments are fetched."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from mssql2pg.reconcile import compare
from mssql2pg.reconcile.canonical import HASH_BITS
from mssql2pg.reconcile.sides import Rows, Sums


def _h(text: str) -> int:
    return int.from_bytes(hashlib.md5(text.encode()).digest()[:7], "big")  # noqa: S324 - a checksum, not security


@dataclass
class MemorySide:
    data: dict[int, str]  # key -> row value
    fetched: int = 0
    queries: list[tuple[str, int]] = field(default_factory=list)

    def _rows(self) -> list[tuple[int, str, int]]:
        return [(_h(str(k)), str(k), _h(f"{k}|{v}")) for k, v in self.data.items()]

    def sums(self, bits: int, parent_bits: int | None = None, parents: Sequence[int] = ()) -> Sums:
        self.queries.append(("sums", bits))
        out: dict[int, tuple[int, int]] = {}
        for kh, _kt, rh in self._rows():
            if parent_bits is not None and kh >> (HASH_BITS - parent_bits) not in set(parents):
                continue
            seg = kh >> (HASH_BITS - bits)
            n, total = out.get(seg, (0, 0))
            out[seg] = (n + 1, total + rh)
        return out

    def rows(self, bits: int, segments: Sequence[int]) -> Rows:
        wanted = set(segments)
        out = {kt: (rh, (int(kt),)) for kh, kt, rh in self._rows() if kh >> (HASH_BITS - bits) in wanted}
        self.fetched += len(out)
        return out

    def rows_by_key(self, keys: Sequence[Sequence[Any]]) -> Rows:
        raise AssertionError("not used")


def test_a_consistent_table_fetches_no_rows() -> None:
    data = {k: f"v{k}" for k in range(5000)}
    source, target = MemorySide(dict(data)), MemorySide(dict(data))

    diff = compare.compare_table(source, target)

    assert diff.count == 0
    assert diff.source_rows == diff.target_rows == 5000
    assert source.fetched == target.fetched == 0


def test_exactly_the_differing_keys_and_only_their_segments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compare, "LEAF_ROWS", 3)  # forces a second, finer level
    data = {k: f"v{k}" for k in range(20_000)}
    changed = dict(data)
    del changed[17]
    changed[20_001] = "new"
    changed[4242] = "v4242 "
    source, target = MemorySide(data), MemorySide(changed)

    diff = compare.compare_table(source, target)

    assert list(diff.missing.values()) == [(17,)]
    assert list(diff.extra.values()) == [(20_001,)]
    assert list(diff.different.values()) == [(4242,)]
    assert ("sums", 24) in source.queries  # narrowed once more before fetching rows
    assert source.fetched < 20  # not the table: a few rows of three small segments


class _BarrierSide(MemorySide):
    """A side whose first question waits for the other side's: passes only if both are asked at once."""

    def __init__(self, data: dict[int, str], barrier: threading.Barrier) -> None:
        super().__init__(data)
        self.barrier = barrier
        self.threads: set[int] = set()

    def sums(self, bits: int, parent_bits: int | None = None, parents: Sequence[int] = ()) -> Sums:
        self.threads.add(threading.get_ident())
        self.barrier.wait(timeout=10)
        return super().sums(bits, parent_bits, parents)


def test_both_databases_are_asked_at_once_each_from_one_thread() -> None:
    barrier = threading.Barrier(2)
    data = {k: f"v{k}" for k in range(100)}
    source, target = _BarrierSide(dict(data), barrier), _BarrierSide(dict(data), barrier)

    diff = compare.compare_table(source, target)  # sequential questions would break the barrier

    assert diff.count == 0
    assert len(source.threads) == len(target.threads) == 1
    assert source.threads != target.threads  # each side (and its connection) used by one thread of its own


class _FailingSide(MemorySide):
    def sums(self, bits: int, parent_bits: int | None = None, parents: Sequence[int] = ()) -> Sums:
        raise RuntimeError("target database went away")


def test_a_failure_of_the_target_side_reaches_the_caller() -> None:
    data = {k: f"v{k}" for k in range(100)}

    with pytest.raises(RuntimeError, match="target database went away"):
        compare.compare_table(MemorySide(dict(data)), _FailingSide(dict(data)))


class _SlowTarget(MemorySide):
    """A target whose question ends only after the source side has failed."""

    def __init__(self, data: dict[int, str]) -> None:
        super().__init__(data)
        self.started, self.release, self.finished = threading.Event(), threading.Event(), False

    def sums(self, bits: int, parent_bits: int | None = None, parents: Sequence[int] = ()) -> Sums:
        self.started.set()
        self.release.wait(timeout=10)
        out = super().sums(bits, parent_bits, parents)
        self.finished = True
        return out


@dataclass
class _SourceFailingAfterTargetStarted(MemorySide):
    target: _SlowTarget | None = None

    def sums(self, bits: int, parent_bits: int | None = None, parents: Sequence[int] = ()) -> Sums:
        assert self.target is not None
        assert self.target.started.wait(timeout=10)
        self.target.release.set()
        raise RuntimeError("source database went away")


def test_a_failure_of_the_source_side_reaches_the_caller_once_the_target_is_no_longer_in_use() -> None:
    data = {k: f"v{k}" for k in range(100)}
    target = _SlowTarget(dict(data))
    source = _SourceFailingAfterTargetStarted(dict(data), target=target)

    with pytest.raises(RuntimeError, match="source database went away"):
        compare.compare_table(source, target)
    assert target.finished  # the caller may close the target's connection: no thread still uses it
