"""``mssql2pg status``: where replication stands, read from the target's control schema and the source.

It shows the committed checkpoint of this process's group (``pipeline.group``) and every group's own, how far
the source has moved past it, each table's state with the
reason and remediation of a paused one (and, for a table a resync loaded, the LSN it resumes after until
the checkpoint covers it; a table still loading its initial snapshot as ``snapshotting``, with its progress),
and the dead letters by status. It only reads; it is safe to run
next to a running pipeline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mssql2pg import control
from mssql2pg.config import Config, load_config
from mssql2pg.config.patterns import TablePattern
from mssql2pg.instance import APPLICATION
from mssql2pg.model import TableId
from mssql2pg.pipeline.connections import source_engine, target_connector
from mssql2pg.positions import Lsn
from mssql2pg.redact import redact_text
from mssql2pg.source import statements


def collect(config_path: Path | None) -> dict[str, Any]:
    config = load_config(config_path)
    report: dict[str, Any] = {
        "pipeline": config.pipeline.name,
        "group": config.pipeline.group,
        "source": config.source.redacted_url(),
        "target": config.target.redacted_url(),
    }
    conn = target_connector(config)()
    try:
        stored = control.read_status(conn, config.pipeline.name, config.pipeline.group_key)
    finally:
        conn.close()
    if not stored.created:
        report["checkpoint"] = None
        report["tables"] = []
        report["dead_letters"] = {}
        report["groups"] = {}
        report["note"] = "the pipeline has not run against this target yet"
    else:
        cp_row = stored.checkpoint
        report["checkpoint"] = {
            "lsn": str(cp_row.lsn),
            "source_commit_time": _iso(cp_row.commit_time),
            "written_at": _iso(cp_row.updated_at),
        }
        report["groups"] = {
            name or "(no group)": {
                "lsn": str(row.lsn),
                "source_commit_time": _iso(row.commit_time),
                "written_at": _iso(row.updated_at),
                "writer": _writer(stored.writers.get(name)),
            }
            for name, row in stored.groups.items()
        }
        selected = _selected(config, [t.source_table for t in stored.tables])
        report["tables"] = [
            {
                "source": t.source_table,
                "target": t.target_table,
                "group": t.group or None,
                "state": "snapshotting" if _snapshotting(t, selected) else t.state,
                "reason": t.reason,
                "remediation": t.remediation,
                # writes to the target by someone else the applier met (issue 17), kind -> count; {}: none
                "target_conflicts": t.conflicts,
            }
            | ({"resumes_after": str(t.resume_after)} if t.resume_after is not None else {})
            | ({"snapshot": _snapshot(t.snapshot)} if t.snapshot is not None else {})
            for t in stored.tables
        ]
        report["dead_letters"] = stored.dead_letters
    try:
        with source_engine(config).connect() as src:
            max_lsn = Lsn.from_bytes(src.execute(statements.MAX_LSN).scalar())
            max_time = src.execute(statements.COMMIT_TIME, {"lsn": max_lsn.raw}).scalar() if max_lsn else None
        report["source_max_lsn"] = {"lsn": str(max_lsn), "commit_time": _iso(max_time)}
        cp: dict[str, Any] | None = report.get("checkpoint")
        report["caught_up"] = cp is not None and Lsn.parse(cp["lsn"]) >= max_lsn
        for group in report["groups"].values():
            group["caught_up"] = Lsn.parse(group["lsn"]) >= max_lsn
    except Exception as exc:
        report["source_max_lsn"] = {"error": redact_text(str(exc).splitlines()[0])}
    return report


def _selected(config: Config, tables: list[str]) -> set[str]:
    """The recorded tables the configuration still selects (a load left behind by a table taken out of the
    configuration is not under way: nothing resumes it)."""
    patterns = [TablePattern.parse(entry.name) for entry in config.tables]
    selected = set()
    for name in tables:
        try:
            table = TableId.parse(name)
        except ValueError:
            continue
        if any(p.matches(table) for p in patterns):
            selected.add(name)
    return selected


def _snapshotting(table: control.TableStatus, selected: set[str]) -> bool:
    return table.snapshot is not None and table.snapshot.loading and table.source_table in selected


def _snapshot(progress: control.SnapshotProgress) -> dict[str, Any]:
    """An initial snapshot's progress as ``status --json`` shows it."""
    return {
        "state": progress.state,
        "snapshot_lsn": str(progress.lsn),
        "rows_loaded": progress.rows_loaded,
        "rows_estimated": progress.rows_estimated,
        "started_at": _iso(progress.started_at),
        "finished_at": _iso(progress.finished_at),
    }


def _writer(writer: control.GroupWriter | None) -> dict[str, Any] | None:
    """The process writing a group (``application_name`` is ``mssql2pg host:pid``); None: nobody writes it."""
    if writer is None:
        return None
    process = writer.application_name.removeprefix(APPLICATION).strip() or writer.application_name
    return {"process": process, "client_address": writer.client_address, "since": _iso(writer.since)}


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None
