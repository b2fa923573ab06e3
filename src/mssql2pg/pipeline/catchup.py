"""Catch-up of resynced tables: a table ``mssql2pg resync`` loaded at snapshot LSN ``S`` while the pipeline
kept replicating the other tables is behind the pipeline checkpoint; before the pipeline streams it again, its
changes from ``S`` up to the checkpoint are applied on their own (see :mod:`mssql2pg.pipeline.resync`)."""

from __future__ import annotations

import threading

import sqlalchemy as sa
import structlog

from mssql2pg import control
from mssql2pg.config import Config
from mssql2pg.pipeline.connections import target_connector
from mssql2pg.pipeline.plan import apply_settings, build_reader
from mssql2pg.pipeline.runner import Runner, RunStats
from mssql2pg.positions import Lsn
from mssql2pg.retry import Retry
from mssql2pg.sink.applier import Applier
from mssql2pg.sink.schema import TargetTable

log = structlog.get_logger(component="resync")


def catch_up(  # noqa: PLR0917 - one caller, which names them in order
    config: Config,
    engine: sa.Engine,
    tables: list[TargetTable],
    positions: dict[str, Lsn],
    checkpoint: Lsn,
    stop: threading.Event,
    retry: Retry,
) -> RunStats | None:
    """Bring resynced tables whose position is behind the pipeline checkpoint up to it, on their own.

    ``tables`` are the pipeline's target tables; those whose source table has a position below ``checkpoint``
    read their changes from there up to ``checkpoint`` and move their own position with the data. Transient
    faults are retried by the pipeline's ``retry`` policy. None when no table was behind."""
    replicated = {str(t.source) for t in tables}
    behind = {t: p for t, p in positions.items() if p < checkpoint and t in replicated}
    if not behind:
        return None
    chosen = [t for t in tables if str(t.source) in behind]
    sources = sorted({t.source for t in chosen})
    log.info(
        "resynced tables catching up to the pipeline checkpoint",
        tables={t: str(p) for t, p in behind.items()},
        checkpoint=str(checkpoint),
    )
    reader = build_reader(config, sources, engine, {s: behind[str(s)] for s in sources}, until=checkpoint)
    applier = Applier(
        target_connector(config),
        chosen,
        config.pipeline.name,
        apply_settings(config),
        checkpoints=control.ResumePositions(config.pipeline.name, behind, config.pipeline.group_key),
    )
    runner = Runner(reader, applier, retry)
    try:
        stats = runner.run(stop, until_caught_up=True)
    finally:
        applier.close()
        reader.close()
    log.info("resynced tables caught up", tables=[str(s) for s in sources], rows=stats.rows)
    return stats
