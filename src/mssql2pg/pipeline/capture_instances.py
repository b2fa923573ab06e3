"""The pipeline managing capture instances itself (``schema_evolution.manage_capture_instances``, issue 12
point 8): after an ADD or DROP COLUMN at the source, SQL Server's existing capture instance no longer matches its
table (it never gains the new column; a dropped one stays, NULL from then on), and the documented online procedure
is a second instance, read from its start LSN on, then the first one disabled (``sqlserver-cdc.md`` §4). With the
option on, the operator steps of that procedure are done here:

1. **Create.** Every ``manage_interval`` the table's one capture instance is compared with the source table:
   a captured column dropped from the table, or a column of the table added after the instance (``sys.columns``
   against ``cdc.captured_columns``, confirmed by ``cdc.ddl_history`` rows on the instance), means a new
   instance is due. It is enabled with ``sp_cdc_enable_table`` with a generated name that no instance of the
   database has (``<old base>_v<n>``), and the old instance's gating role, filegroup, row-identifying index, net
   changes and partition-switch options (read from ``cdc.change_tables``). Captured-columns policy: an instance
   that captured every column of its table (no column of the table older than its newest captured column was
   left out) is followed by one that captures every column (``@captured_column_list`` NULL); one enabled with an
   explicit list is followed by that list without the dropped columns (an added column is not captured then,
   as the list never named it). A type change needs no new instance: SQL Server alters the change table's column
   itself (``required_column_update``), and the pipeline follows it in place.
2. **Switch.** Nothing to do here: the reader notices the second instance within one polling cycle and the
   pipeline re-plans onto both (:mod:`mssql2pg.pipeline.evolution`).
3. **Retire.** Once the table's committed checkpoint has passed the point where the newer instance takes over
   (the rule ``mssql2pg check`` states: the older instance holds nothing below it that is not applied), the
   older instance is disabled with ``sp_cdc_disable_table``; the reader notices and re-plans onto the newer one.

Each action is recorded in ``mssql2pg.schema_changes`` (``instance-created``, ``instance-retired``) and logged.
It is done only by the process that writes the table's group (the caller passes ``is_writer``): with several
processes, the standbys never touch the source catalog. Without ``db_owner`` at the source (``IS_MEMBER``) or when
the source refuses the procedure for lack of permission, nothing is attempted again for that instance: the change
is recorded ``failed`` with the exact command, and the manual procedure of docs/schema-evolution.md applies.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
import structlog

from mssql2pg import control
from mssql2pg.classify import is_permission_denied
from mssql2pg.config import Config
from mssql2pg.model import CaptureInstance, TableId
from mssql2pg.observability import Observability
from mssql2pg.pipeline.connections import target_connector
from mssql2pg.pipeline.evolution import publish_schema_changes, tell
from mssql2pg.pipeline.periodic import Periodic
from mssql2pg.pipeline.plan import control_state
from mssql2pg.source import statements
from mssql2pg.source.catalog import load_capture_instances, select_instances

log = structlog.get_logger(component="schema")

MAX_INSTANCE_NAME = 50
"""Generated names stay at most this long: SQL Server allows 100 characters, the emulator's PostgreSQL names
``fn_cdc_get_net_changes_<ci>`` in 63 bytes."""


@dataclass(frozen=True)
class NewInstance:
    """Why a table needs a new capture instance, and the captured columns it gets (None: every column)."""

    added: tuple[str, ...]
    dropped: tuple[str, ...]
    captured_column_list: tuple[str, ...] | None


def plan_new_instance(ci: CaptureInstance, table_columns: Mapping[int, str], ddl_seen: bool) -> NewInstance | None:
    """Whether ``ci`` no longer matches its table (``table_columns``: column_id -> name, from ``sys.columns``),
    given whether ``cdc.ddl_history`` has rows for it. Pure. See the module docstring for the policy."""
    dropped = tuple(c.name for c in ci.columns if c.dropped)
    captured = {c.column_id for c in ci.columns if not c.dropped and c.column_id is not None}
    newest = max(captured, default=0)
    left_out = [i for i in table_columns if i not in captured]
    explicit = any(i < newest for i in left_out)
    added = () if explicit or not ddl_seen else tuple(table_columns[i] for i in sorted(left_out) if i > newest)
    if not dropped and not added:
        return None
    keep = tuple(c.name for c in ci.columns if not c.dropped) if explicit else None
    return NewInstance(added, dropped, keep)


_VERSIONED = re.compile(r"^(?P<base>.*)_v(?P<n>[0-9]+)$")


def new_instance_name(old: str, taken: set[str]) -> str:
    """``<base>_v<n>`` for the first n above the old name's own version (``dbo_orders`` -> ``dbo_orders_v2``,
    ``dbo_orders_v2`` -> ``dbo_orders_v3``) that no capture instance of the database has."""
    match = _VERSIONED.match(old)
    base, n = (match.group("base"), int(match.group("n"))) if match else (old, 1)
    while True:
        n += 1
        suffix = f"_v{n}"
        name = base[: MAX_INSTANCE_NAME - len(suffix)] + suffix
        if name not in taken:
            return name


def _exec_text(procedure: str, arguments: Mapping[str, object]) -> str:  # sql-lint: literals (advice shown)
    """The T-SQL an operator would run for the same call (recorded and shown, never executed)."""

    def literal(value: object) -> str:
        if value is None:
            return "NULL"
        if isinstance(value, bool):
            return "1" if value else "0"
        return "N'" + str(value).replace("'", "''") + "'"

    return f"EXEC sys.{procedure} " + ", ".join(f"@{k} = {literal(v)}" for k, v in arguments.items())


@dataclass
class InstanceManager(Periodic):
    """Watches the capture instances of ``tables`` every ``config.schema_evolution.manage_interval`` while
    ``is_writer()`` says this process writes their group; creates and retires instances (module docstring)."""

    config: Config
    engine: sa.Engine
    tables: Sequence[TableId]
    obs: Observability
    is_writer: Callable[[], bool]
    thread_name = "mssql2pg-instances"

    def period(self) -> float:
        return self.config.schema_evolution.manage_interval

    def tick(self) -> None:
        try:
            self.check_once()
        except Exception as exc:  # a database away, a deadlock with a writer: tried again at the next poll
            log.warning("managing capture instances failed; trying again", error=str(exc).splitlines()[0])

    def check_once(self) -> list[str]:
        """One look: create or retire what is due (only as the group's writer). The actions taken, as words."""
        if not self.tables or not self.is_writer():
            return []
        with self.engine.connect() as conn:
            every = load_capture_instances(conn)
            sources = {
                str(r.capture_instance): int(r.source_object_id) for r in conn.execute(statements.CAPTURE_INSTANCES)
            }
            by_table = select_instances(every, self.tables, missing_ok=True)
            single = [cis[0] for cis in by_table.values() if len(cis) == 1]
            ids = sorted({ci.object_id for ci in single if ci.object_id is not None})
            tables = sorted({sources[ci.name] for ci in single if ci.name in sources})
            columns: dict[int, dict[int, str]] = {}
            if tables:
                for object_id, column_id, name in conn.execute(statements.SOURCE_TABLE_COLUMNS, {"object_ids": tables}):
                    columns.setdefault(int(object_id), {})[int(column_id)] = str(name)
            seen = {int(r[0]) for r in conn.execute(statements.DDL_SEEN, {"object_ids": ids})} if ids else set()
            conn.rollback()
        actions = self._retire_due([(cis[0], cis[1]) for cis in by_table.values() if len(cis) > 1])
        taken = {ci.name for ci in every}
        for ci in single:
            plan = plan_new_instance(ci, columns.get(sources.get(ci.name, -1), {}), ci.object_id in seen)
            if plan is not None and self._create(ci, plan, taken):
                actions.append(f"created an instance for {ci.source}")
        return actions

    def _create(self, ci: CaptureInstance, plan: NewInstance, taken: set[str]) -> bool:
        """Enable the instance that replaces ``ci``; True when it was created."""
        name = new_instance_name(ci.name, taken)
        with self.engine.connect() as conn:
            options = conn.execute(statements.INSTANCE_OPTIONS, {"capture_instance": ci.name}).mappings().first()
            conn.rollback()
        if options is None:
            return False  # disabled meanwhile: the next look sees the table as it is then
        arguments: dict[str, object] = {
            "source_schema": ci.source.schema,
            "source_name": ci.source.name,
            "role_name": options["role_name"],
            "capture_instance": name,
            "supports_net_changes": bool(options["supports_net_changes"]),
            "index_name": options["index_name"],
            "captured_column_list": None
            if plan.captured_column_list is None
            else _column_list(plan.captured_column_list),
            "filegroup_name": options["filegroup_name"],
            "allow_partition_switch": True
            if options["partition_switch"] is None
            else bool(options["partition_switch"]),
        }
        why = ", ".join([*(f"column {c} added" for c in plan.added), *(f"column {c} dropped" for c in plan.dropped)])
        ddl = _exec_text("sp_cdc_enable_table", arguments)
        if self._failed_before(ci.source, "instance-created", name) or self._refused(
            ci.source, "instance-created", name, ddl, why
        ):
            return False
        # Recorded BEFORE the procedure runs: a process killed right after it cannot leave an instance it created
        # without its record. A call that fails for another reason (an outage, a deadlock) leaves the record, and
        # the next look runs the same call under the same name (the record is not repeated).
        change_id = self._record(
            control.SchemaChange(
                str(ci.source),
                "instance-created",
                "auto-applied",
                capture_instance=name,
                ddl=ddl,
                detail=f"{why} at the source: capture instance {name} created to replace {ci.name} "
                f"(schema_evolution.manage_capture_instances); {ci.name} is disabled once the checkpoint passes "
                f"where {name} starts",
            )
        )
        try:
            self._call(statements.ENABLE_TABLE, arguments)
        except sa.exc.DBAPIError as exc:
            if not is_permission_denied(exc):
                raise
            self._fail(change_id, f"{why}; the source refused: {_first(exc)}")
            return False
        taken.add(name)
        return True

    # --- retire -----------------------------------------------------------------------------------------------

    def _retire_due(self, pairs: list[tuple[CaptureInstance, CaptureInstance]]) -> list[str]:
        if not pairs:
            return []
        known = control_state(self.config)
        actions = []
        for old, new in pairs:
            position = known.positions.get(str(old.source), known.checkpoint)
            if new.start_lsn.is_null or position.is_null or position < new.start_lsn.decrement():
                continue  # the older instance still holds changes the target lacks (mssql2pg check's rule)
            arguments = {
                "source_schema": old.source.schema,
                "source_name": old.source.name,
                "capture_instance": old.name,
            }
            ddl = _exec_text("sp_cdc_disable_table", arguments)
            detail = f"the checkpoint ({position}) passed where {new.name} starts ({new.start_lsn})"
            if self._refused(old.source, "instance-retired", old.name, ddl, detail):
                continue
            try:
                self._call(statements.DISABLE_TABLE, arguments)
            except sa.exc.DBAPIError as exc:
                if not is_permission_denied(exc):
                    raise
                self._record_failed(old.source, "instance-retired", old.name, ddl, f"{detail}; refused: {_first(exc)}")
                continue
            self._record(
                control.SchemaChange(
                    str(old.source),
                    "instance-retired",
                    "auto-applied",
                    capture_instance=old.name,
                    ddl=ddl,
                    detail=f"{detail}: capture instance {old.name} disabled; {new.name} carries the table on",
                )
            )
            actions.append(f"retired {old.name} of {old.source}")
        return actions

    # --- the source and the record ----------------------------------------------------------------------------

    def _call(self, statement: Any, arguments: Mapping[str, object]) -> None:
        """Run a CDC procedure in autocommit (as an operator's batch would). The commit is still needed: the
        pool's pre-ping may have begun a transaction before autocommit was set, and the call must not be rolled
        back with it when the connection goes back to the pool."""
        with self.engine.connect() as conn:
            autocommit = conn.execution_options(isolation_level="AUTOCOMMIT")
            autocommit.execute(statement, dict(arguments))
            autocommit.commit()

    def _refused(self, table: TableId, change: str, instance: str, ddl: str, why: str) -> bool:
        """True (and recorded ``failed`` once) when the source login is not ``db_owner``: nothing is attempted."""
        with self.engine.connect() as conn:
            owner = conn.execute(statements.IS_DB_OWNER).scalar()
            conn.rollback()
        if owner == 1:
            return False
        self._record_failed(table, change, instance, ddl, f"{why}; the source login is not db_owner")
        return True

    def _record_failed(self, table: TableId, change: str, instance: str, ddl: str, why: str) -> None:
        """Record a refused action once per instance (a failed record is not matched by
        :func:`~mssql2pg.control.record_schema_change`, so the earlier ones are looked up here)."""
        failed = control.SchemaChange(
            str(table), change, "failed", capture_instance=instance, ddl=ddl, detail=_needs_db_owner(why)
        )
        self._record(failed, once=True)

    def _failed_before(self, table: TableId, change: str, instance: str) -> bool:
        """The source refused this very action before: it is not attempted again (the record says what to run)."""
        conn = target_connector(self.config)()
        try:
            if not control.control_table_exists(conn, "schema_changes"):
                return False
            return any(
                (c.source_table, c.change, c.capture_instance, c.status) == (str(table), change, instance, "failed")
                for c in control.list_schema_changes(conn, self.config.pipeline.name, "failed")
            )
        finally:
            conn.close()

    def _fail(self, change_id: int | None, why: str) -> None:
        """The action recorded before it ran was refused: its record becomes ``failed``, with why."""
        if change_id is None:
            return
        conn = target_connector(self.config)()
        try:
            conn.run("BEGIN")
            control.fail_schema_change(conn, self.config.pipeline.name, change_id, _needs_db_owner(why))
            conn.run("COMMIT")
            publish_schema_changes(conn, self.config.pipeline.name, self.obs)
        finally:
            conn.close()
        log.warning("schema change failed", id=change_id, detail=why)

    def _record(self, change: control.SchemaChange, *, once: bool = False) -> int | None:
        """Record ``change`` (log line and count when new); its id. ``once``: not when the same table, kind and
        instance is recorded already, whatever its status (None then)."""
        conn = target_connector(self.config)()
        try:
            conn.run("BEGIN")
            control.ensure_control_schema(conn)
            earlier = control.list_schema_changes(conn, self.config.pipeline.name) if once else []
            if any(
                (c.source_table, c.change, c.capture_instance)
                == (change.source_table, change.change, change.capture_instance)
                for c in earlier
            ):
                conn.run("ROLLBACK")
                return None
            change_id, new = control.record_schema_change(conn, self.config.pipeline.name, change)
            conn.run("COMMIT")
            publish_schema_changes(conn, self.config.pipeline.name, self.obs)
        finally:
            conn.close()
        if new:
            tell(self.obs, change_id, change)
        return change_id


def _needs_db_owner(why: str) -> str:
    return (
        f"{why}: schema_evolution.manage_capture_instances needs db_owner at the source. Run the DDL shown "
        "yourself, or follow the manual procedure of docs/schema-evolution.md"
    )


def _column_list(names: Sequence[str]) -> str:
    """``@captured_column_list``: the names bracket-quoted (``]`` doubled), comma-separated."""
    return ", ".join("[" + name.replace("]", "]]") + "]" for name in names)


def _first(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
