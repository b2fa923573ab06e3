"""The narrowing in :func:`compare_table`, on in-memory sides: exactly the differing keys, and only the rows of
differing segments are fetched."""

from __future__ import annotations

import hashlib
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
