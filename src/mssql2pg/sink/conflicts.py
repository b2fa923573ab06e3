"""Writes to the target by someone else, as the applier meets them (issue 17 point 1; docs/operations.md).

Replication is one-way: a row deleted, inserted or re-stamped in a replicated table behind the pipeline's back
shows up when the pipeline next applies a change to the same key. The applier's set-based statements judge each
key against the target row as it was before the statement (:func:`mssql2pg.sink.statements.conflict_kind`) and
return what they found; this module turns that into :class:`TargetConflict` values, the dead letters of the
``dead-letter`` policy, and the rate-limited log (:class:`ConflictLog`).

Detection, by kind (:data:`mssql2pg.model.TARGET_CONFLICT_KINDS`), and its limits: a foreign ``DELETE`` is found
by the next update or delete of the key; a foreign ``INSERT`` by the source's insert of the same key; a row whose
``_cdc_lsn`` was written by someone else (NULL, or later than the change) by any change of the key. A foreign
``UPDATE`` that leaves the metadata columns alone cannot be told from the pipeline's own row: it is overwritten by
the next change of the key unseen (``target.protect`` refuses such writes instead).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from mssql2pg.model import TARGET_CONFLICT_KINDS, TableId
from mssql2pg.sink.deadletters import DeadLetter

log = structlog.get_logger(component="applier")

MEANING = {
    "update_missing": "an update of a key the target does not hold (deleted in the target behind the pipeline)",
    "delete_missing": "a delete of a key the target does not hold (deleted in the target behind the pipeline)",
    "insert_exists": "an insert of a key the target already holds (inserted in the target behind the pipeline)",
    "foreign_lsn": "the target row carries a _cdc_lsn the pipeline cannot have written (NULL or later than the change)",
}

ERROR_CLASS = "TargetConflictError"
"""Error class of a dead letter of the ``dead-letter`` policy: ``TargetConflictError [update_missing]``."""


def kind_of(code: int) -> str:
    """The kind of a code the applier's SQL returns (its position in TARGET_CONFLICT_KINDS + 1)."""
    return TARGET_CONFLICT_KINDS[int(code) - 1]


def key_of(names: Sequence[str], values: Sequence[Any]) -> dict[str, Any]:
    """The key as the log shows it: target key column -> value (as PostgreSQL's JSON gave it)."""
    return dict(zip(names, values, strict=False))


@dataclass(frozen=True, slots=True)
class TargetConflict:
    """One conflict met while applying: its table, kind and key; ``letter`` when the change was dead-lettered."""

    table: TableId
    kind: str
    key: dict[str, Any]
    letter: DeadLetter | None = None


def conflict_message(kind: str) -> str:
    """The dead letter's message: what was found, and that the target row was kept."""
    return (
        f"target conflict {kind}: {MEANING[kind]}; the target row was kept as it is (on_target_conflict: "
        "dead-letter). Review it: `mssql2pg dlq retry ID` rewrites the key from the source's current row "
        "(source wins), "
        "`mssql2pg dlq ignore ID` keeps the target as it is"
    )


@dataclass
class ConflictLog:
    """Logs each conflict as a warning with table, key and kind: the first ``limit`` per table per ``window``
    seconds, then one summary line per table and window with how many were not logged one by one (a bulk write
    to the target must not flood the log; the counter and ``status`` still count every one)."""

    limit: int = 20
    window: float = 60.0
    clock: Callable[[], float] = time.monotonic
    _windows: dict[TableId, tuple[float, int, int]] = field(default_factory=dict)  # start, logged, suppressed

    def report(self, conflict: TargetConflict, **context: Any) -> None:
        now = self.clock()
        start, logged, suppressed = self._roll(conflict.table, now)
        if logged < self.limit:
            log.warning(
                "target conflict: the target table was written by someone else",
                table=str(conflict.table),
                kind=conflict.kind,
                key=conflict.key,
                meaning=MEANING[conflict.kind],
                dead_lettered=conflict.letter is not None,
                **context,
            )
            self._windows[conflict.table] = (start, logged + 1, suppressed)
        else:
            self._windows[conflict.table] = (start, logged, suppressed + 1)

    def flush(self) -> None:
        """Say what was suppressed in windows that have ended (called after every commit and on the applier's idle
        tick: cheap when quiet)."""
        if not self._windows:
            return
        now = self.clock()
        for table in list(self._windows):
            self._roll(table, now)

    def close(self) -> None:
        """Say what was suppressed in every window, ended or not (the applier closes: nobody would say it later)."""
        for table in list(self._windows):
            self._roll(table, math.inf)

    def _roll(self, table: TableId, now: float) -> tuple[float, int, int]:
        current = self._windows.get(table)
        if current is not None and now - current[0] < self.window:
            return current
        if current is not None and current[2]:
            log.warning(
                "target conflicts not logged one by one",
                table=str(table),
                suppressed=current[2],
                logged=current[1],
                window_s=self.window,
            )
        if current is not None:
            del self._windows[table]
        return (now, 0, 0)
