"""Watches the control schema while a pipeline runs, so that a table paused or made active again (by
``mssql2pg resync``) is noticed without a restart."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import structlog

from mssql2pg.config import Config
from mssql2pg.observability import Observability
from mssql2pg.pipeline.connections import target_connector
from mssql2pg.pipeline.evolution import publish_schema_changes
from mssql2pg.pipeline.periodic import Periodic
from mssql2pg.pipeline.plan import control_state

log = structlog.get_logger(component="pipeline")

CONTROL_POLL_SECONDS = 10.0
"""How often a running pipeline looks at the control schema for tables whose state changed."""


@dataclass
class ControlWatcher(Periodic):
    """Sets ``replan`` when the control schema's table states no longer match what a pipeline was built for:
    a table it replicates (``replicated``) was paused (``mssql2pg resync`` pauses a table first and waits for
    the pipeline to leave it), or a table it left out (``left_out``) is active again (the resync is done). The
    runner then stops at the next source-transaction boundary."""

    config: Config
    replicated: frozenset[str]  # source tables the pipeline replicates
    left_out: frozenset[str]  # source tables it left out because they were not active
    replan: threading.Event
    interval: float = field(default_factory=lambda: CONTROL_POLL_SECONDS)
    obs: Observability | None = None  # where the recorded schema changes are published at each poll

    thread_name = "mssql2pg-control"
    close_timeout = 5.0

    def period(self) -> float:
        return self.interval

    def _publish(self, obs: Observability) -> None:
        """The schema changes by status as recorded now: ``mssql2pg schema approve`` changes them from another
        process, and this is how the running pipeline's metric follows (within one poll)."""
        conn = target_connector(self.config)()
        try:
            publish_schema_changes(conn, self.config.pipeline.name, obs)
        finally:
            conn.close()

    def tick(self) -> bool:
        """One look at the table states; True (done) once it asked for a re-plan."""
        try:
            inactive = set(control_state(self.config).inactive)
            if self.obs is not None:
                self._publish(self.obs)
        except Exception as exc:  # the target is down: the runner reports and retries that
            log.debug("control schema not readable", error=str(exc))
            return False
        rejoined = self.left_out - inactive
        paused = self.replicated & inactive
        if not (rejoined or paused):
            return False
        log.info(
            "table states changed; re-planning the pipeline at the next transaction boundary",
            active_again=sorted(rejoined),
            paused=sorted(paused),
        )
        self.replan.set()
        return True
