"""Re-checking differing keys on a replicating system, so that a change still in flight is not reported.

A key that differs may only be a change the pipeline has not applied yet. For the differing keys, in rounds:

1. read their source rows ``S``, then the source's max LSN ``M`` (every change ``S`` reflects is at or below it);
2. wait until the target's checkpoint has passed ``M``, then read their target rows ``T``: ``T`` now reflects
   at least everything ``S`` does;
3. read their source rows again, ``S'``. A key with ``T == S`` is consistent. A key with ``T != S`` and
   ``S' == S`` did not change at the source while we looked, so the target really differs: it is reported.
   A key whose source row moved (``S' != S``) is in flight and goes to the next round.

After :data:`ROUNDS` rounds a key that moved every time (a row written continuously) is reported as well.
If the checkpoint does not pass ``M`` within the timeout (the pipeline is stopped or far behind), what was
found is returned unconfirmed: the report says so instead of calling lag drift.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from mssql2pg.positions import Lsn
from mssql2pg.reconcile.compare import Differences, compare_rows
from mssql2pg.reconcile.sides import Side

ROUNDS = 5
POLL_SECONDS = 0.2


@dataclass(frozen=True)
class Rechecked:
    differences: Differences
    confirmed: bool  # False: the checkpoint did not pass the source's LSN in time (the pipeline is behind)


def wait_for_checkpoint(checkpoint: Callable[[], Lsn], lsn: Lsn, timeout: float) -> bool:
    """Whether the target's checkpoint reached ``lsn`` within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while checkpoint() < lsn:
        if time.monotonic() >= deadline:
            return False
        pause.wait(POLL_SECONDS)
    return True


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
        now = Differences(found.source_rows, found.target_rows)
        compare_rows(before, target.rows_by_key(keys), now)
        after = source.rows_by_key(keys)
        moved = {kt for kt in before.keys() | after.keys() if before.get(kt, (None,))[0] != after.get(kt, (None,))[0]}
        pending = Differences(found.source_rows, found.target_rows)
        for kind in ("missing", "extra", "different"):
            for kt, key in getattr(now, kind).items():
                getattr(pending if kt in moved else result, kind)[kt] = key
    _merge(result, pending)  # moved in every round: reported rather than hidden
    return Rechecked(result, confirmed=True)


def _merge(into: Differences, more: Differences) -> None:
    into.missing.update(more.missing)
    into.extra.update(more.extra)
    into.different.update(more.different)
