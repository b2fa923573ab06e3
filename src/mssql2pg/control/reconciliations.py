"""The record of ``mssql2pg reconcile`` runs in ``mssql2pg.reconciliation_runs``: one row per table and run.

Kept in the target so that drift has a history next to the data (when it appeared, how large, what was done),
and so that monitoring can read the latest result per table (:func:`latest_reconciliations`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from mssql2pg.control import statements as sql


@dataclass(frozen=True)
class ReconciliationRecord:
    """One table's outcome of one run (``keys``: the bounded key lists, as the JSON report has them)."""

    run_id: str
    pipeline: str
    source_table: str
    target_table: str
    status: str
    source_rows: int
    target_rows: int
    missing: int
    extra: int
    different: int
    keys: dict[str, Any]
    rechecked: bool
    repaired: int
    suggested_action: str
    error: str | None
    started_at: datetime
    duration_seconds: float


@dataclass(frozen=True)
class LatestReconciliation:
    source_table: str
    status: str
    missing: int
    extra: int
    different: int
    started_at: datetime
    duration_seconds: float


def record_reconciliation(conn: Any, record: ReconciliationRecord) -> None:
    """Store ``record`` (in the caller's transaction, if any)."""
    params = {**record.__dict__, "keys": json.dumps(record.keys)}
    conn.run(sql.INSERT_RECONCILIATION_RUN, **params)


def latest_reconciliations(conn: Any, pipeline: str) -> list[LatestReconciliation]:
    """The latest run's outcome per table of ``pipeline``."""
    return [LatestReconciliation(*row) for row in conn.run(sql.SELECT_LATEST_RECONCILIATIONS, pipeline=pipeline)]
