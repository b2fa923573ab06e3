"""``mssql2pg status``: where replication stands, read from the target's control schema and the source.

It shows the committed checkpoint and how far the source has moved past it, each table's state with the
reason and remediation of a paused one (and, for a table a resync loaded, the LSN it resumes after until
the checkpoint covers it), and the dead letters by status. It only reads; it is safe to run
next to a running pipeline.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from mssql2pg.cli_options import config_option
from mssql2pg.config import load_config
from mssql2pg.pipeline.connections import source_engine, target_connector
from mssql2pg.positions import Lsn
from mssql2pg.sink import control
from mssql2pg.sink.statements import CONTROL_SCHEMA
from mssql2pg.source import statements

# Read-only reporting queries over the control schema (its DDL and write statements live in sink/statements.py).
CHECKPOINT_ROW = f"SELECT lsn, commit_time, updated_at FROM {CONTROL_SCHEMA}.checkpoints WHERE pipeline = :p"
TABLE_STATES = (
    f"SELECT source_table, target_table, state, reason, remediation FROM {CONTROL_SCHEMA}.table_state "
    "WHERE pipeline = :p ORDER BY source_table"
)
DEAD_LETTER_COUNTS = f"SELECT status, count(*) FROM {CONTROL_SCHEMA}.dead_letters GROUP BY status ORDER BY status"


def collect(config_path: Path | None) -> dict[str, Any]:
    config = load_config(config_path)
    report: dict[str, Any] = {
        "pipeline": config.pipeline.name,
        "source": config.source.redacted_url(),
        "target": config.target.redacted_url(),
    }
    conn = target_connector(config)()
    try:
        if not control.control_table_exists(conn, "checkpoints"):
            report["checkpoint"] = None
            report["tables"] = []
            report["dead_letters"] = {}
            report["note"] = "the pipeline has not run against this target yet"
        else:
            rows = conn.run(CHECKPOINT_ROW, p=config.pipeline.name)
            checkpoint = Lsn.from_bytes(rows[0][0]) if rows else Lsn.NULL
            report["checkpoint"] = {
                "lsn": str(checkpoint),
                "source_commit_time": _iso(rows[0][1]) if rows else None,
                "written_at": _iso(rows[0][2]) if rows else None,
            }
            positions = control.resume_positions(conn, config.pipeline.name)
            report["tables"] = [
                {"source": r[0], "target": r[1], "state": r[2], "reason": r[3], "remediation": r[4]}
                | ({"resumes_after": str(positions[r[0]])} if r[0] in positions else {})
                for r in conn.run(TABLE_STATES, p=config.pipeline.name)
            ]
            report["dead_letters"] = dict(conn.run(DEAD_LETTER_COUNTS))
    finally:
        conn.close()
    try:
        with source_engine(config).connect() as src:
            max_lsn = Lsn.from_bytes(src.execute(statements.MAX_LSN).scalar())
            max_time = src.execute(statements.COMMIT_TIME, {"lsn": max_lsn.raw}).scalar() if max_lsn else None
        report["source_max_lsn"] = {"lsn": str(max_lsn), "commit_time": _iso(max_time)}
        cp: dict[str, Any] | None = report.get("checkpoint")
        report["caught_up"] = cp is not None and Lsn.parse(cp["lsn"]) >= max_lsn
    except Exception as exc:
        from mssql2pg.classify import scrub  # noqa: PLC0415

        report["source_max_lsn"] = {"error": scrub(str(exc).splitlines()[0])}
    return report


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


@click.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
def status(config_path: Path | None, as_json: bool) -> None:
    """Show the checkpoint, how far behind the source it is, table states and dead letters."""
    report = collect(config_path)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    click.echo(f"pipeline {report['pipeline']}: {report['source']} -> {report['target']}")
    cp = report.get("checkpoint")
    click.echo(
        f"  checkpoint      {cp['lsn'] if cp else 'none yet'}"
        + (f" (source commit {cp['source_commit_time']})" if cp and cp["source_commit_time"] else "")
    )
    src: dict[str, Any] = report.get("source_max_lsn") or {}
    click.echo(
        f"  source max LSN  {src.get('lsn', src.get('error'))}" + ("  [caught up]" if report.get("caught_up") else "")
    )
    for t in report["tables"]:
        line = f"  {t['source']:<30} -> {t['target']:<30} {t['state']}"
        if "resumes_after" in t:  # resynced; the pipeline checkpoint does not cover it yet
            line += f" (resynced: resumes after {t['resumes_after']})"
        click.echo(line)
        if t["state"] != "active":
            click.echo(f"      reason: {t['reason']}\n      do: {t['remediation']}")
    dl = report["dead_letters"]
    click.echo("  dead letters    " + (", ".join(f"{k}: {v}" for k, v in dl.items()) if dl else "none"))
