"""Following a source schema change in the target table (issue 12): what the target needs, what can be done
without an operator, and what must wait for one.

:func:`plan_evolution` compares the :class:`~mssql2pg.sink.schema.TargetTable` built from the capture
instances as they are now with the columns the target table has, and returns each change with its status:

* a column the target lacks (added at the source, captured by a new capture instance): ``ALTER TABLE ... ADD
  COLUMN`` with the mapped type, nullable (rows replicated before may have no value for it), and the source's
  default when it is a constant (filling the existing rows when the source column is NOT NULL, as SQL Server
  does) or one of the functions with a PostgreSQL equivalent (:data:`NON_CONSTANT_DEFAULTS`, never filling),
  ``auto-applied``; any other default is not carried, and the record says why;
* a column dropped at the source: the target column stays and receives NULL from then on (its NOT NULL, if
  any, is dropped so that it can), ``pending-review`` with the exact SQL to archive or drop it;
* a captured column whose type changed: nothing to do when the target column already holds every value of the
  new type (recorded ``auto-applied`` without DDL); a safe widening (the new type holds every value of the
  old one, :func:`~mssql2pg.sink.ddl.type_can_hold` both ways round) is applied with ``ALTER COLUMN ... TYPE``,
  ``auto-applied``; anything else is ``pending-review`` with the recommended migration, and pauses the table
  (the caller's job: this module only says so).

Nothing here is recorded or logged: :mod:`mssql2pg.pipeline.evolution` does that, in the same transaction as
the DDL :func:`evolve_target_table` runs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from mssql2pg.control import SchemaChange
from mssql2pg.model import SourceColumn
from mssql2pg.pgconn import PgConnection, fetch
from mssql2pg.sink import statements as sql
from mssql2pg.sink.ddl import type_can_hold
from mssql2pg.sink.schema import TargetColumn, TargetTable


@dataclass
class Evolution:
    """What one table's schema change means for its target: ``changes`` to record (in order), the ``ddl`` run
    for the auto-applied ones, and whether a change waits for review (the table pauses)."""

    changes: list[SchemaChange] = field(default_factory=list)
    ddl: list[str] = field(default_factory=list)

    @property
    def needs_review(self) -> list[SchemaChange]:
        """The changes that stop the table until an operator approves them (type changes the target cannot
        follow on its own). A dropped column is reviewed too, but it does not stop the table."""
        return [c for c in self.changes if c.status == "pending-review" and c.change == "type-change"]


def plan_evolution(table: TargetTable, existing: Mapping[str, tuple[str, bool]]) -> Evolution:
    """Compare ``table`` (from the capture instances now) with the target's ``existing`` columns (name ->
    (type, NOT NULL)); an empty :class:`Evolution` when nothing changed. Pure: no I/O."""
    evolution = Evolution()
    source = str(table.source)
    instance = table.capture_instance.name
    for column in table.columns:
        have = existing.get(column.name)
        if have is None:
            if column.dropped:
                continue  # dropped before the target ever had it: nothing to keep
            source_column = _newest(table, column)
            definition = None if source_column is None else source_column.default
            default, not_carried = column_default(definition, column.pg_type)
            constant = default is not None and default == pg_default(definition, column.pg_type)
            # a constant fills the existing rows as SQL Server did; a function's value at the ALTER is not known
            fills = constant and source_column is not None and not source_column.nullable
            ddl = sql.add_column(table, column, default if fills else None)
            evolution.ddl.append(ddl)
            if default is not None and not fills:
                ddl = f"{ddl}; {sql.set_default(table, column, default)}"
                evolution.ddl.append(sql.set_default(table, column, default))
            about_default = ""
            if default is not None and not constant:
                about_default = (
                    f"; the source default {definition} carried as {default} (the target's clock or generator; "
                    f"rows that existed before hold NULL in {column.name} until they are set from the source)"
                )
            elif not_carried is not None:
                about_default = f"; the source default {definition} is not carried: {not_carried}"
            evolution.changes.append(
                SchemaChange(
                    source,
                    "add-column",
                    "auto-applied",
                    capture_instance=instance,
                    column_name=column.name,
                    new_type=column.pg_type,
                    ddl=ddl,
                    detail=f"target column added (nullable); filled from capture instance {instance} on. Rows "
                    f"whose last change is older than {instance}'s start LSN (values written between the ALTER "
                    f"TABLE and it are in no change table) are set from the source table once the checkpoint "
                    f"passes that start, recorded column-filled (with schema_evolution.fill_added_columns: false, "
                    f"run `mssql2pg reconcile --repair {source}`){about_default}",
                )
            )
            continue
        have_type, not_null = have
        if column.dropped:
            if not_null and column.name not in table.key:
                evolution.ddl.append(sql.drop_not_null(table, column))
            evolution.changes.append(
                SchemaChange(
                    source,
                    "drop-column",
                    "pending-review",
                    capture_instance=_dropped_in(table, column),
                    column_name=column.name,
                    old_type=have_type,
                    ddl=sql.drop_column(table, column),
                    detail=f"dropped at the source: the target column is kept and receives NULL from now on. To "
                    f"archive it first: {sql.archive_column(table, column)}; then drop it with the DDL shown, only "
                    f"once no capture instance captures it any more (the old one disabled: `mssql2pg check` says "
                    f"when)",
                )
            )
            continue
        if _same_type(have_type, column.pg_type):
            continue
        evolution.changes.append(_type_change(table, column, have_type, instance, evolution))
    return evolution


def _type_change(
    table: TargetTable, column: TargetColumn, have: str, instance: str, evolution: Evolution
) -> SchemaChange:
    source, want = str(table.source), column.pg_type
    if type_can_hold(have, want):
        return SchemaChange(
            source,
            "type-change",
            "auto-applied",
            capture_instance=instance,
            column_name=column.name,
            old_type=have,
            new_type=want,
            detail=f"the target column ({have}) holds every value of the new type: no DDL needed",
        )
    ddl = sql.alter_column_type(table, column)
    if type_can_hold(want, have):  # a widening: every value the column holds converts exactly
        evolution.ddl.append(ddl)
        return SchemaChange(
            source,
            "type-change",
            "auto-applied",
            capture_instance=instance,
            column_name=column.name,
            old_type=have,
            new_type=want,
            ddl=ddl,
            detail="safe widening applied to the target column",
        )
    return SchemaChange(
        source,
        "type-change",
        "pending-review",
        capture_instance=instance,
        column_name=column.name,
        old_type=have,
        new_type=want,
        ddl=sql.alter_column_type(table, column, using=True),
        detail=f"{have} -> {want} is not a safe widening: the table is paused (its changes wait in CDC). "
        f"Migrate the target column (recommended DDL shown; check the USING expression for your data), then "
        f"`mssql2pg schema approve ID`; or `mssql2pg resync {source}`",
    )


def _dropped_in(table: TargetTable, column: TargetColumn) -> str:
    """The oldest capture instance that still captures the dropped column (the one the drop was seen in): the
    same change is then recorded once, not again for the instance that replaces it."""
    for ci in table.instances:
        if any(c.name == column.source_name and c.dropped for c in ci.columns):
            return ci.name
    return table.capture_instance.name


def _newest(table: TargetTable, column: TargetColumn) -> SourceColumn | None:
    """The newest capture instance's description of the source column behind ``column``."""
    for candidate in table.capture_instance.columns:
        if candidate.name == column.source_name:
            return candidate
    return None


_NUMBER = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")
_STRING = re.compile(r"^N?('(?:[^']|'')*')$")


def pg_default(definition: str | None, pg_type: str) -> str | None:
    """A SQL Server column default (``sys.default_constraints.definition``: ``((0))``, ``('x')``, ``(N'x')``) as
    a PostgreSQL literal for a column of ``pg_type``; None for anything that is not a constant (``(getdate())``,
    ``(newid())``, expressions): those are not carried to the target, since their value at the source is not
    known here. A bit default becomes ``true``/``false`` for a boolean column."""
    if definition is None:
        return None
    text = definition.strip()
    while text.startswith("(") and text.endswith(")"):
        text = text[1:-1].strip()
    if _NUMBER.match(text):
        if pg_type == "boolean":
            return {"0": "false", "1": "true"}.get(text)
        return text
    string = _STRING.match(text)
    if string and pg_type != "bytea":
        return string.group(1)  # quotes are doubled the same way in both dialects
    return None


_TIME_TYPES = ("timestamp", "timestamptz", "date", "time")
NON_CONSTANT_DEFAULTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "getdate()": ("LOCALTIMESTAMP", _TIME_TYPES),
    "current_timestamp": ("LOCALTIMESTAMP", _TIME_TYPES),
    "sysdatetime()": ("LOCALTIMESTAMP", _TIME_TYPES),
    "getutcdate()": ("(now() AT TIME ZONE 'UTC')", _TIME_TYPES),
    "sysutcdatetime()": ("(now() AT TIME ZONE 'UTC')", _TIME_TYPES),
    "sysdatetimeoffset()": ("now()", _TIME_TYPES),
    "newid()": ("gen_random_uuid()", ("uuid",)),
}
"""The SQL Server default functions carried to the target, a fixed allowlist: the function (lower case, as
``sys.default_constraints.definition`` spells it inside its parentheses) -> (the PostgreSQL expression, the
target type families it is carried for). The local-time functions become ``LOCALTIMESTAMP`` (SQL Server's local
time, PostgreSQL's session time zone), the UTC ones the UTC time, ``sysdatetimeoffset()`` ``now()``, ``newid()``
``gen_random_uuid()`` (PostgreSQL 13+). The expressions are constants of this module: nothing from the source
reaches the DDL text. Anything else (``newsequentialid()``, expressions, user functions) is not carried, and
the record says why."""


def column_default(definition: str | None, pg_type: str) -> tuple[str | None, str | None]:
    """The target default of a column whose source default is ``definition``: ``(expression, None)`` for a
    constant (:func:`pg_default`) or an allowlisted function (:data:`NON_CONSTANT_DEFAULTS`); ``(None, reason)``
    for a default that is not carried; ``(None, None)`` for no default."""
    if definition is None:
        return None, None
    constant = pg_default(definition, pg_type)
    if constant is not None:
        return constant, None
    text = definition.strip()
    while text.startswith("(") and text.endswith(")"):
        text = text[1:-1].strip()
    known = NON_CONSTANT_DEFAULTS.get(text.lower())
    if known is None:
        return None, (
            "no PostgreSQL equivalent (only constants and "
            + ", ".join(NON_CONSTANT_DEFAULTS)
            + " are carried); set the target column's default yourself if it needs one"
        )
    expression, families = known
    if pg_type.split("(", maxsplit=1)[0] not in families:
        return None, f"{text.lower()} has no equivalent for a {pg_type} column"
    return expression, None


def _same_type(have: str, want: str) -> bool:
    return type_can_hold(have, want) and type_can_hold(want, have)


def evolve_target_table(conn: PgConnection, table: TargetTable) -> Evolution:
    """Plan the target's evolution and run its auto-applied DDL (in the caller's transaction). A target table
    that does not exist yet needs nothing: it is created with every column when the applier starts."""
    rows = fetch(conn, sql.SELECT_TABLE_COLUMNS, schema=table.schema, name=table.name)
    if not rows:
        return Evolution()
    evolution = plan_evolution(table, {str(n): (str(t), bool(nn)) for n, t, nn in rows})
    for statement in evolution.ddl:
        try:
            conn.run(statement)
        except Exception as exc:
            raise EvolutionDdlError(evolution, statement) from exc
    return evolution


class EvolutionDdlError(Exception):
    """A DDL statement of an evolution failed (the caller's transaction is aborted): which one, and the plan it
    belongs to, so the caller can record that change as ``failed`` after rolling back. The driver's error is
    the ``__cause__``."""

    def __init__(self, evolution: Evolution, statement: str) -> None:
        super().__init__(f"schema evolution DDL failed: {statement}")
        self.evolution = evolution
        self.statement = statement

    def failed_change(self) -> SchemaChange | None:
        """The recorded change whose DDL this statement is (or is part of)."""
        for change in self.evolution.changes:
            if change.ddl is not None and self.statement in change.ddl:
                return change
        return None
