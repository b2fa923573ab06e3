"""``mssql2pg status``: print the report :func:`mssql2pg.pipeline.status.collect` gathers, as text or JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from mssql2pg.cli.options import config_option, load


@click.command("status")
@config_option
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
def command(config_path: Path | None, as_json: bool) -> None:
    """Show the checkpoint, how far behind the source it is, table states and dead letters."""
    from mssql2pg.pipeline.status import collect  # noqa: PLC0415 - start-up speed only (keeps `--help` fast)

    load(config_path)  # the logger, the secrets, the databases a failure names
    report = collect(config_path)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    group = f" group {report['group']}" if report.get("group") else ""
    click.echo(f"pipeline {report['pipeline']}{group}: {report['source']} -> {report['target']}")
    cp = report.get("checkpoint")
    click.echo(
        f"  checkpoint      {cp['lsn'] if cp else 'none yet'}"
        + (f" (source commit {cp['source_commit_time']})" if cp and cp["source_commit_time"] else "")
    )
    for name, row in (report.get("groups") or {}).items():
        commit = f" (source commit {row['source_commit_time']})" if row["source_commit_time"] else ""
        caught_up = "  [caught up]" if row.get("caught_up") else ""
        writer = row.get("writer")
        written = f"; written by {writer['process']} since {writer['since']}" if writer else "; no writer"
        click.echo(f"  group {name:<10} checkpoint {row['lsn']}{commit}{caught_up}{written}")
    src: dict[str, Any] = report.get("source_max_lsn") or {}
    click.echo(
        f"  source max LSN  {src.get('lsn', src.get('error'))}" + ("  [caught up]" if report.get("caught_up") else "")
    )
    for t in report["tables"]:
        line = f"  {t['source']:<30} -> {t['target']:<30} {t['state']}" + (
            f" [group {t['group']}]" if t.get("group") else ""
        )
        snap = t.get("snapshot")
        if t["state"] == "snapshotting" and snap:
            of = f" of ~{snap['rows_estimated']:,}" if snap["rows_estimated"] is not None else ""
            line += f" ({snap['rows_loaded']:,}{of} rows loaded at LSN {snap['snapshot_lsn']})"
            click.echo(line)
            continue
        if "resumes_after" in t:  # resynced; the pipeline checkpoint does not cover it yet
            line += f" (resynced: resumes after {t['resumes_after']})"
        click.echo(line)
        conflicts = t.get("target_conflicts") or {}
        if conflicts:  # writes to the target by someone else (see docs/operations.md)
            counted = ", ".join(f"{kind}: {n}" for kind, n in sorted(conflicts.items()))
            click.echo(f"      target written by others: {counted}")
        if t["state"] != "active":
            click.echo(f"      reason: {t['reason']}\n      do: {t['remediation']}")
    dl = report["dead_letters"]
    click.echo("  dead letters    " + (", ".join(f"{k}: {v}" for k, v in dl.items()) if dl else "none"))
