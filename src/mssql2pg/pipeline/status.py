"""``mssql2pg status``: where replication stands, read from the target's control schema and the source.

It shows the committed checkpoint of this process's group (``pipeline.group``) and every group's own, how far
the source has moved past it, each table's state with the
reason and remediation of a paused one (and, for a table a resync loaded, the LSN it resumes after until
the checkpoint covers it), and the dead letters by status. It only reads; it is safe to run
next to a running pipeline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mssql2pg import control
from mssql2pg.config import load_config
from mssql2pg.instance import APPLICATION
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
        report["tables"] = [
            {
                "source": t.source_table,
                "target": t.target_table,
                "group": t.group or None,
                "state": t.state,
                "reason": t.reason,
                "remediation": t.remediation,
            }
            | ({"resumes_after": str(t.resume_after)} if t.resume_after is not None else {})
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


def _writer(writer: control.GroupWriter | None) -> dict[str, Any] | None:
    """The process writing a group (``application_name`` is ``mssql2pg host:pid``); None: nobody writes it."""
    if writer is None:
        return None
    process = writer.application_name.removeprefix(APPLICATION).strip() or writer.application_name
    return {"process": process, "client_address": writer.client_address, "since": _iso(writer.since)}


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None
