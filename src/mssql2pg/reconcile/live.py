"""Re-checking differing keys on a replicating system, so that a change still in flight is not reported.

A key that differs may only be a change the pipeline has not applied yet. So: read the source's max LSN ``M``
(every change seen so far is at or below it), wait until the target's checkpoint has passed ``M``, and compare
those keys again; only keys that still differ stay. A key whose source row changed again meanwhile is
compared once more (up to :data:`ROUNDS` times), so a busy key is not reported as drift.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from mssql2pg.positions import Lsn
from mssql2pg.reconcile.compare import Differences, compare_rows
from mssql2pg.reconcile.sides import Side

ROUNDS = 3
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
    current = found
    previous_hashes: dict[str, int] | None = None
    for _ in range(ROUNDS):
        if not current.count:
            break
        if not wait_for_checkpoint(checkpoint, source_max_lsn(), timeout):
            return Rechecked(current, confirmed=False)
        keys = current.keys()
        source_rows = source.rows_by_key(keys)
        current = Differences(found.source_rows, found.target_rows)
        compare_rows(source_rows, target.rows_by_key(keys), current)
        hashes = {kt: rh for kt, (rh, _k) in source_rows.items()}
        if hashes == previous_hashes:  # the source rows did not move between two rounds: the drift is real
            break
        previous_hashes = hashes
    return Rechecked(current, confirmed=True)
