"""The metrics of a reconcile run, written as a Prometheus text file.

``mssql2pg reconcile`` is a short command run on a schedule, not a service Prometheus can scrape; the usual way
to export such a job's results is a text file that node_exporter's textfile collector picks up (or that is
pushed to a Pushgateway). The names are defined with every other metric in
:mod:`mssql2pg.observability.metrics`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from mssql2pg.observability.metrics import Metrics
from mssql2pg.reconcile.run import TableReport


def render(reports: Sequence[TableReport], finished_at: datetime | None = None) -> bytes:
    """The reconcile gauges of ``reports`` (only those: no process or pipeline metrics) as exposition text."""
    metrics = Metrics(process=False)
    when = finished_at or datetime.now(UTC)
    text = []
    for report in reports:
        if report.status == "error":
            continue  # not compared: neither a time nor a count would be true
        differing = {"missing": len(report.missing), "extra": len(report.extra), "different": len(report.different)}
        metrics.reconciled(report.table, when, differing)
    for line in metrics.render().decode().splitlines():
        if "mssql2pg_reconcile_" in line:
            text.append(line)
    return ("\n".join(text) + "\n").encode()


def write_metrics_file(path: Path, reports: Sequence[TableReport]) -> None:
    """Replace ``path`` atomically (a collector never reads half a file)."""
    partial = path.with_name(path.name + ".tmp")
    partial.write_bytes(render(reports))
    os.replace(partial, path)
