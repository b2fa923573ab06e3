"""The live re-check: in-flight changes are not reported, real drift is, and lag is not called drift."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mssql2pg.positions import Lsn
from mssql2pg.reconcile import live
from mssql2pg.reconcile.compare import Differences
from mssql2pg.reconcile.sides import Rows, Sums


@dataclass
class KeyedSide:
    data: dict[int, int]  # key -> row hash

    def sums(self, bits: int, parent_bits: int | None = None, parents: Sequence[int] = ()) -> Sums:
        raise AssertionError("not used")

    def rows(self, bits: int, segments: Sequence[int]) -> Rows:
        raise AssertionError("not used")

    def rows_by_key(self, keys: Sequence[Sequence[Any]]) -> Rows:
        return {str(k): (self.data[k], (k,)) for (k,) in keys if k in self.data}


def _found(**kinds: list[int]) -> Differences:
    diff = Differences(10, 10)
    for kind, keys in kinds.items():
        getattr(diff, kind).update({str(k): (k,) for k in keys})
    return diff


def test_a_change_the_pipeline_had_not_applied_yet_is_not_reported() -> None:
    source, target = KeyedSide({1: 11, 2: 22}), KeyedSide({1: 10})
    applied = Lsn.from_int(5)

    def checkpoint() -> Lsn:  # the pipeline catches up while we wait
        target.data.update(source.data)
        return Lsn.from_int(9)

    result = live.recheck_live(
        source, target, _found(different=[1], missing=[2]), source_max_lsn=lambda: applied, checkpoint=checkpoint,
        timeout=1,
    )  # fmt: skip

    assert result.confirmed
    assert result.differences.count == 0


def test_real_drift_is_reported_with_exactly_its_keys() -> None:
    source, target = KeyedSide({1: 11, 2: 22, 3: 33}), KeyedSide({1: 10, 3: 33, 4: 44})

    result = live.recheck_live(
        source, target, _found(different=[1, 3], missing=[2], extra=[4]),
        source_max_lsn=lambda: Lsn.from_int(5), checkpoint=lambda: Lsn.from_int(5), timeout=1,
    )  # fmt: skip

    assert result.confirmed
    assert list(result.differences.different) == ["1"]
    assert list(result.differences.missing) == ["2"]
    assert list(result.differences.extra) == ["4"]


def test_a_key_that_moved_while_looked_at_is_looked_at_again() -> None:
    source, target = KeyedSide({1: 11}), KeyedSide({1: 10})
    reads = {"n": 0}
    real = source.rows_by_key

    def moving(keys: Sequence[Sequence[Any]]) -> Rows:
        reads["n"] += 1
        if reads["n"] == 2:  # the source row changes between the two reads of the first round ...
            source.data[1] = 12
            target.data[1] = 12  # ... and the pipeline applies it
        return real(keys)

    source.rows_by_key = moving  # type: ignore[method-assign]

    result = live.recheck_live(
        source, target, _found(different=[1]), source_max_lsn=lambda: Lsn.from_int(5),
        checkpoint=lambda: Lsn.from_int(5), timeout=1,
    )  # fmt: skip

    assert result.differences.count == 0
    assert reads["n"] >= 3  # a second round


def test_a_pipeline_that_does_not_catch_up_leaves_the_finding_unconfirmed() -> None:
    source, target = KeyedSide({1: 11}), KeyedSide({1: 10})

    result = live.recheck_live(
        source, target, _found(different=[1]), source_max_lsn=lambda: Lsn.from_int(9),
        checkpoint=lambda: Lsn.from_int(5), timeout=0.3,
    )  # fmt: skip

    assert not result.confirmed
    assert list(result.differences.different) == ["1"]


def test_a_target_that_already_holds_a_newer_source_version_is_consistent() -> None:
    """The target may be ahead of the first source read (the pipeline applied a later change meanwhile): equal to
    the second read, it is consistent, without another round."""
    source, target = KeyedSide({1: 11}), KeyedSide({1: 10})
    reads = {"n": 0}
    real = source.rows_by_key

    def moving(keys: Sequence[Sequence[Any]]) -> Rows:
        reads["n"] += 1
        if reads["n"] == 1:
            out = real(keys)
            source.data[1] = 12  # changed right after the first read ...
            target.data[1] = 12  # ... and applied before the target is read
            return out
        return real(keys)

    source.rows_by_key = moving  # type: ignore[method-assign]

    result = live.recheck_live(
        source, target, _found(different=[1]), source_max_lsn=lambda: Lsn.from_int(5),
        checkpoint=lambda: Lsn.from_int(5), timeout=1,
    )  # fmt: skip

    assert result.differences.count == 0
    assert result.unsettled == {}
    assert reads["n"] == 2  # one round


def test_a_key_written_all_the_time_is_unsettled_not_reported() -> None:
    """A row the source changes between every two reads, the target always one version behind: it cannot be
    compared, and calling it drift would be a false positive. It is listed apart."""
    source, target = KeyedSide({1: 100, 2: 22}), KeyedSide({1: 99, 2: 20})
    real = source.rows_by_key

    def hot(keys: Sequence[Sequence[Any]]) -> Rows:
        out = real(keys)
        target.data[1] = source.data[1] + 1  # the pipeline applied the next version ...
        source.data[1] += 2  # ... and the source is already at the one after
        return out

    source.rows_by_key = hot  # type: ignore[method-assign]

    result = live.recheck_live(
        source, target, _found(different=[1, 2]), source_max_lsn=lambda: Lsn.from_int(5),
        checkpoint=lambda: Lsn.from_int(5), timeout=1,
    )  # fmt: skip

    assert result.confirmed
    assert list(result.differences.different) == ["2"]  # real drift still found
    assert list(result.unsettled) == ["1"]
