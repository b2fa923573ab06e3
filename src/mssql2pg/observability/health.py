"""Health model behind ``/healthz`` (liveness) and ``/readyz`` (readiness).

Statuses: ``healthy`` | ``degraded`` | ``unhealthy``, each with a human reason, for the components
(``source``, ``target``) and for every table.

Roll-up, and why: the overall status is the worst component status; a table can pull the overall status
down to ``degraded`` at most. A paused table or one needing resync is an operator task (and has alerts), but
the process is still doing useful work for the other tables, so an orchestrator must not restart it.
Components start ``unhealthy`` ("not checked yet"), so the pipeline only reports ready once the runner has
reached both databases.

HTTP mapping (what Kubernetes and Compose health checks understand): ``/readyz`` answers 200 for healthy and
degraded, 503 for unhealthy. ``/healthz`` answers 200 while the main loop has called :meth:`Health.beat`
within ``liveness_timeout`` seconds, 503 otherwise (a stuck loop gets the container restarted).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from mssql2pg.model import TableId

DEFAULT_LIVENESS_TIMEOUT = 120.0


class Status(StrEnum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"


_RANK = {Status.HEALTHY: 0, Status.DEGRADED: 1, Status.UNHEALTHY: 2}


def worst(statuses: list[Status]) -> Status:
    return max(statuses, key=_RANK.__getitem__, default=Status.HEALTHY)


@dataclass(frozen=True)
class Check:
    status: Status
    reason: str = ""

    def as_json(self) -> dict[str, str]:
        return {"status": self.status.value, "reason": self.reason}


class Health:
    """Thread-safe current health; the runner writes, the HTTP server reads."""

    def __init__(
        self,
        components: tuple[str, ...] = ("source", "target"),
        *,
        liveness_timeout: float = DEFAULT_LIVENESS_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self.liveness_timeout = liveness_timeout
        self._components = {name: Check(Status.UNHEALTHY, "not checked yet") for name in components}
        self._tables: dict[str, Check] = {}
        self._last_beat = clock()

    # -- writers (the runner) ---------------------------------------------------------------------------------
    def set_component(self, name: str, status: Status | str, reason: str = "") -> None:
        with self._lock:
            self._components[name] = Check(Status(status), reason)

    def set_table(self, table: TableId | str, status: Status | str, reason: str = "") -> None:
        with self._lock:
            self._tables[str(table)] = Check(Status(status), reason)

    def remove_table(self, table: TableId | str) -> None:
        with self._lock:
            self._tables.pop(str(table), None)

    def beat(self) -> None:
        """The main loop is alive (call at least every ``liveness_timeout`` seconds, also when idle)."""
        with self._lock:
            self._last_beat = self._clock()

    # -- readers (the HTTP server) ------------------------------------------------------------------------------
    def liveness(self) -> tuple[bool, dict[str, Any]]:
        with self._lock:
            age = self._clock() - self._last_beat
        alive = age <= self.liveness_timeout
        return alive, {"status": "alive" if alive else "stuck", "last_beat_age_seconds": round(age, 3)}

    def readiness(self) -> tuple[Status, dict[str, Any]]:
        with self._lock:
            components = dict(self._components)
            tables = dict(self._tables)
        overall = worst([c.status for c in components.values()])
        table_worst = worst([t.status for t in tables.values()])
        if table_worst is not Status.HEALTHY:
            overall = worst([overall, Status.DEGRADED])
        body = {
            "status": overall.value,
            "components": {name: check.as_json() for name, check in sorted(components.items())},
            "tables": {name: check.as_json() for name, check in sorted(tables.items())},
        }
        return overall, body
