"""What ``mssql2pg schema`` does for a configured pipeline: list the recorded source schema changes
(``mssql2pg.schema_changes``) and approve one an operator reviewed.

Approving re-checks before it changes anything: the table is described from the source's capture instances as
they are now, exactly as ``mssql2pg run`` would, and compared with the target table
(:func:`~mssql2pg.sink.evolution.plan_evolution`). While the target still cannot hold a changed column the
approval is refused with what is wrong; once it can, the change is ``approved`` and a table it paused is
``active`` again, with its position kept, so a running pipeline takes it back (its watcher re-plans) and
catches it up from where it stopped.
"""

from __future__ import annotations

from dataclasses import dataclass

from mssql2pg import control
from mssql2pg.config import Config
from mssql2pg.control import StoredSchemaChange
from mssql2pg.pgconn import PgConnection, fetch
from mssql2pg.pipeline.connections import source_engine, target_connector
from mssql2pg.pipeline.plan import discover, target_tables
from mssql2pg.sink import statements as sink_sql
from mssql2pg.sink.evolution import plan_evolution

_PAUSING = ("type-change", "add-column")  # the changes that pause their table while they wait (review, failed)


@dataclass(frozen=True)
class Approval:
    approved: bool
    message: str


def list_changes(config: Config, status: str | None = None) -> list[StoredSchemaChange]:
    """This pipeline's recorded schema changes (of one status, or all), oldest first; none before a first run."""
    conn = target_connector(config)()
    try:
        if not control.control_table_exists(conn, "schema_changes"):
            return []
        return control.list_schema_changes(conn, config.pipeline.name, status)
    finally:
        conn.close()


def approve_change(config: Config, change_id: int) -> Approval:
    """Re-check the target against the source, then mark change ``change_id`` (``pending-review``, or ``failed``
    after the operator ran its DDL) approved and resume the table it paused."""
    conn = target_connector(config)()
    try:
        stored = (
            control.get_schema_change(conn, config.pipeline.name, change_id)
            if control.control_table_exists(conn, "schema_changes")
            else None
        )
        if stored is None:
            return Approval(False, f"no schema change with id {change_id}")
        if stored.status not in ("pending-review", "failed"):
            return Approval(False, f"schema change {change_id} is {stored.status}: nothing to approve")
        problems = _still_wrong(config, conn, stored)
        if problems:
            return Approval(
                False,
                f"schema change {change_id} not approved: the target still differs: {'; '.join(problems)} "
                f"(recommended: {stored.ddl})",
            )
        conn.run("BEGIN")
        control.approve_schema_change(conn, config.pipeline.name, change_id)
        resumed = stored.change in _PAUSING
        if resumed:
            control.set_table_state(
                conn,
                config.pipeline.name,
                stored.source_table,
                "active",
                reason=f"schema change {change_id} approved",
                remediation="",
            )
        conn.run("COMMIT")
    finally:
        conn.close()
    tail = f"; {stored.source_table} is active again and resumes from where it stopped" if resumed else ""
    return Approval(True, f"schema change {change_id} approved{tail}")


def _still_wrong(config: Config, conn: PgConnection, stored: StoredSchemaChange) -> list[str]:
    """What keeps the target from holding the table as the source has it now (empty: nothing)."""
    if stored.change not in _PAUSING:
        return []
    engine = source_engine(config)
    try:
        selections, instances = discover(engine, config)
    finally:
        engine.dispose()
    selected = [s for s in selections if str(s.source) == stored.source_table]
    if not selected:
        return [f"{stored.source_table} is not replicated by this configuration"]
    (table,) = target_tables(selected, instances)
    rows = fetch(conn, sink_sql.SELECT_TABLE_COLUMNS, schema=table.schema, name=table.name)
    evolution = plan_evolution(table, {str(n): (str(t), bool(nn)) for n, t, nn in rows})
    problems = [f"{c.column_name} is {c.old_type}, which cannot hold {c.new_type}" for c in evolution.needs_review]
    problems += [f"column {c.column_name} is missing" for c in evolution.changes if c.change == "add-column"]
    return problems
