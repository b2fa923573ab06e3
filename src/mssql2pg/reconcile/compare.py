"""Compare one table's two sides: segment checksums, narrowing, then row by row.

1. One pass per side gives count and checksum of each of ``2^12`` segments (segments are by key hash).
2. Segments whose count or checksum differ are split again (12 more bits) while they hold more than
   :data:`LEAF_ROWS` rows; the others have their rows' key text and row hash fetched from both sides.
3. Keys only in the source are missing, only in the target extra, in both with different hashes different.

Only the per-segment sums of the first pass and the rows of differing segments cross the network.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from mssql2pg.reconcile.canonical import HASH_BITS
from mssql2pg.reconcile.sides import Rows, Side, Sums

T = TypeVar("T")

BITS_PER_LEVEL = 12
LEAF_ROWS = 4096
"""A differing segment with at most this many rows (on the larger side) is compared row by row."""


@dataclass
class Differences:
    """What differs, by key (each key as its raw values in key order), and the two sides' row counts."""

    source_rows: int
    target_rows: int
    missing: dict[str, tuple[Any, ...]] = field(default_factory=dict)  # key text -> raw key
    extra: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    different: dict[str, tuple[Any, ...]] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return len(self.missing) + len(self.extra) + len(self.different)

    def keys(self) -> list[tuple[Any, ...]]:
        return [*self.missing.values(), *self.extra.values(), *self.different.values()]


def _differing(a: Sums, b: Sums) -> list[int]:
    return sorted(s for s in a.keys() | b.keys() if a.get(s) != b.get(s))


def compare_rows(source: Rows, target: Rows, into: Differences) -> None:
    """Row-by-row comparison of fetched rows (key text -> (row hash, raw key))."""
    for kt, (rh, key) in source.items():
        other = target.get(kt)
        if other is None:
            into.missing[kt] = key
        elif other[0] != rh:
            into.different[kt] = key
    for kt, (_rh, key) in target.items():
        if kt not in source:
            into.extra[kt] = key


def _both(source: Callable[[], T], target: Callable[[], T]) -> tuple[T, T]:
    """Ask both databases at once: each computes over its own rows, so the slower one sets the time.

    Each side has its own connection and each is used by one thread only (the target's by the worker, the
    source's by the caller). Whichever fails, its error reaches the caller; leaving the ``with`` waits for the
    target's question to end, so the caller may close the target connection as soon as this returns or raises.
    """
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(target)
        return source(), pending.result()


def compare_table(source: Side, target: Side) -> Differences:
    """Every differing key of the table (see the module docstring)."""
    bits = BITS_PER_LEVEL
    src, tgt = _both(partial(source.sums, bits), partial(target.sums, bits))
    diff = Differences(sum(n for n, _ in src.values()), sum(n for n, _ in tgt.values()))
    pending = _differing(src, tgt)
    while pending:
        size = {s: max(src.get(s, (0, 0))[0], tgt.get(s, (0, 0))[0]) for s in pending}
        leaves = [s for s in pending if size[s] <= LEAF_ROWS or bits >= HASH_BITS]
        big = [s for s in pending if s not in set(leaves)]
        if leaves:
            compare_rows(*_both(partial(source.rows, bits, leaves), partial(target.rows, bits, leaves)), diff)
        if not big:
            break
        finer = min(bits + BITS_PER_LEVEL, HASH_BITS)
        src, tgt = _both(partial(source.sums, finer, bits, big), partial(target.sums, finer, bits, big))
        bits, pending = finer, _differing(src, tgt)
    return diff
