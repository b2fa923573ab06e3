"""What ``mssql2pg schema`` does for a configured pipeline: list the recorded source schema changes
(``mssql2pg.schema_changes``) and approve one an operator reviewed.

Approving re-checks before it changes anything: the table is described from the source's capture instances as
they are now, exactly as ``mssql2pg run`` would, and the change's column is compared with the target table
(:func:`still_differs`). While the target column still cannot hold the source's type (a type change, a failed
DDL) or is missing (an added column), the approval is refused with what is wrong: even a column the next start
would widen on its own, since the operator asked to approve the target as it is. Once it can, the change is
``approved`` and a table it paused is ``active`` again, with its position kept, so a running pipeline takes it
back (its watcher re-plans) and catches it up from where it stopped.

A dropped column is done when the operator dealt with it: the target column is gone (archived and dropped), or
it is kept on purpose (``--keep-column``: it receives NULL from now on). Without either the approval is refused
with both ways out, so "approved" always records a decision, never a change nobody looked at.
"""

from __future__ import annotations

from dataclasses import dataclass

from mssql2pg import control
from mssql2pg.config import Config
from mssql2pg.control import StoredSchemaChange
from mssql2pg.pgconn import PgConnection, fetch
from mssql2pg.pipeline.connections import source_engine, target_connector
from mssql2pg.pipeline.plan import discover_known, target_tables
from mssql2pg.sink import statements as sink_sql
from mssql2pg.sink.ddl import type_can_hold
from mssql2pg.sink.schema import TargetTable

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


def approve_change(config: Config, change_id: int, *, keep_column: bool = False) -> Approval:
    """Re-check the target against the source, then mark change ``change_id`` (``pending-review``, or ``failed``
    after the operator ran its DDL) approved and resume the table it paused. ``keep_column``: a dropped column
    stays in the target on purpose."""
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
        problems = _still_wrong(config, conn, stored, keep_column=keep_column)
        if problems:
            recommended = f" (recommended: {stored.ddl})" if stored.change != "drop-column" else ""
            return Approval(
                False,
                f"schema change {change_id} not approved: the target still differs: {'; '.join(problems)}"
                + recommended,
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
    if stored.change == "drop-column":
        tail = f"; the target keeps column {stored.column_name} (NULL from now on)" if keep_column else "; column gone"
    return Approval(True, f"schema change {change_id} approved{tail}")


def _still_wrong(config: Config, conn: PgConnection, stored: StoredSchemaChange, *, keep_column: bool) -> list[str]:
    """What keeps the target from holding the table as the source has it now (empty: nothing)."""
    if stored.change not in (*_PAUSING, "drop-column"):
        return []
    engine = source_engine(config)
    try:
        selections, instances, gone = discover_known(engine, config)
    finally:
        engine.dispose()
    if any(str(t) == stored.source_table for t in gone):
        return [
            f"{stored.source_table} has no capture instance at the source any more (dropped, renamed or CDC disabled)"
        ]
    selected = [s for s in selections if str(s.source) == stored.source_table]
    if not selected:
        return [f"{stored.source_table} is not replicated by this configuration"]
    (table,) = target_tables(selected, instances)
    rows = fetch(conn, sink_sql.SELECT_TABLE_COLUMNS, schema=table.schema, name=table.name)
    return still_differs(stored, table, {str(n): str(t) for n, t, _ in rows}, keep_column=keep_column)


def still_differs(
    stored: StoredSchemaChange, table: TargetTable, existing: dict[str, str], *, keep_column: bool = False
) -> list[str]:
    """What keeps change ``stored`` from being done, given the target's ``existing`` columns (name -> type) and
    ``table`` as the source describes it now (empty: nothing). Only the change's own column counts: another
    column's pending change is approved on its own."""
    if stored.change == "drop-column":
        if keep_column:
            return []
        if stored.column_name not in existing:
            carrying = [ci.name for ci in table.instances if any(c.name == stored.column_name for c in ci.columns)]
            if carrying:  # its change table still has the column: the pipeline writes it (NULL) into the target
                return [
                    f"capture instance {', '.join(carrying)} still captures column {stored.column_name}, so the "
                    f"pipeline still writes it and the table stops on the missing column: add the column back to "
                    f"the target table {table.schema}.{table.name}, switch to a capture instance without it and "
                    f"disable the old one (`mssql2pg check` says when), then drop it and approve"
                ]
            return []
        return [
            f"column {stored.column_name} is still in the target table {table.schema}.{table.name}: archive it if "
            f"you need its values (the statement is in the change's detail), then drop it ({stored.ddl}), or keep "
            f"it on purpose with `mssql2pg schema approve {stored.id} --keep-column`"
        ]
    problems = []
    for column in table.columns:
        if column.dropped or (stored.column_name is not None and column.name != stored.column_name):
            continue
        have = existing.get(column.name)
        if have is None:
            problems.append(f"column {column.name} is missing")
        elif not type_can_hold(have, column.pg_type):
            problems.append(f"{column.name} is {have}, which cannot hold {column.pg_type}")
    return problems
