"""Re-checking differing keys on a replicating system, so that a change still in flight is not reported.

A key that differs may only be a change the pipeline has not applied yet. For the differing keys, in rounds:

1. read their source rows ``S``, then the source's max LSN ``M`` (every change ``S`` reflects is at or below it);
2. wait until the target's checkpoint has passed ``M``, then read their target rows ``T``: ``T`` now reflects
   at least everything ``S`` does;
3. read their source rows again, ``S'``. The target's rows reflect the source at some moment between the two
   reads, so a key whose target row equals ``S`` or ``S'`` is consistent. A key with ``S' == S`` did not change
   at the source while we looked and its target row equals neither: it really differs and is reported. The
   others changed at the source while we looked (in flight) and go to the next round.

A key still in flight after :data:`ROUNDS` rounds (a row written all the time) could not be compared: it is
returned apart (``unsettled``), not called drift, so a consistent live system has no false positive.
If the checkpoint does not pass ``M`` within the timeout (the pipeline is stopped or far behind), what was
found is returned unconfirmed: the report says so instead of calling lag drift.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mssql2pg.positions import Lsn
from mssql2pg.reconcile.compare import Differences, compare_rows
from mssql2pg.reconcile.sides import Rows, Side

ROUNDS = 5
POLL_SECONDS = 0.2


@dataclass(frozen=True)
class Rechecked:
    differences: Differences
    confirmed: bool  # False: the checkpoint did not pass the source's LSN in time (the pipeline is behind)
    unsettled: dict[str, tuple[Any, ...]] = field(default_factory=dict)  # in flight in every round: key text -> key


def wait_for_checkpoint(checkpoint: Callable[[], Lsn], lsn: Lsn, timeout: float) -> bool:
    """Whether the target's checkpoint reached ``lsn`` within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while checkpoint() < lsn:
        if time.monotonic() >= deadline:
            return False
        pause.wait(POLL_SECONDS)
    return True


def _version(rows: Rows, kt: str) -> int | None:
    """The row hash of ``kt`` in ``rows``; None when the row is absent."""
    found = rows.get(kt)
    return None if found is None else found[0]


def recheck_live(
    source: Side,
    target: Side,
    found: Differences,
    *,
    source_max_lsn: Callable[[], Lsn],
    checkpoint: Callable[[], Lsn],
    timeout: float,
) -> Rechecked:
    """The keys of ``found`` that still differ once the target has caught up with what the source had."""
    result = Differences(found.source_rows, found.target_rows)
    pending = found
    for _ in range(ROUNDS):
        if not pending.count:
            break
        keys = pending.keys()
        before = source.rows_by_key(keys)
        if not wait_for_checkpoint(checkpoint, source_max_lsn(), timeout):
            _merge(result, pending)
            return Rechecked(result, confirmed=False)
        seen = target.rows_by_key(keys)
        after = source.rows_by_key(keys)
        now = Differences(found.source_rows, found.target_rows)
        compare_rows(after, seen, now)  # the kind of difference as the source is now
        pending = Differences(found.source_rows, found.target_rows)
        for kind in ("missing", "extra", "different"):
            for kt, key in getattr(now, kind).items():
                if _version(seen, kt) == _version(before, kt):
                    continue  # the target holds the first version read: consistent
                settled = _version(before, kt) == _version(after, kt)
                getattr(result if settled else pending, kind)[kt] = key
    unsettled = {kt: key for kind in (pending.missing, pending.extra, pending.different) for kt, key in kind.items()}
    return Rechecked(result, confirmed=True, unsettled=unsettled)


def _merge(into: Differences, more: Differences) -> None:
    into.missing.update(more.missing)
    into.extra.update(more.extra)
    into.different.update(more.different)
