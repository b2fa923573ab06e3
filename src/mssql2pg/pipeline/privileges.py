"""Least privilege, checked (issue 15 point 5): the grants the pipeline's logins lack, each with the exact
statement that gives it, for ``mssql2pg check``.

The minimum, documented in docs/security.md and used by the compose stack:

* source login: SELECT on the CDC catalog and change tables (the ``cdc`` schema) and SELECT on each replicated
  table (snapshots for ``resync``, ``reconcile``, and the column metadata read from ``sys.columns``, which SQL
  Server shows only for tables the login has a permission on). Nothing server-wide, nothing that writes.
* target role: TEMPORARY on the database (staging tables), CREATE on the database while the control schema or a
  target schema does not exist yet (or CREATE on those schemas while a table is missing), and SELECT, INSERT,
  UPDATE, DELETE on the target tables and the control tables; with ``target.protect``, TRIGGER on each target
  table it does not own (the guard is a trigger the pipeline creates at start).

Each probe reads nothing (``WHERE 0 = 1``, or the servers' own ``has_*_privilege`` functions). The GRANT texts
built here are advice printed for the operator, never executed; names in them are quoted the way the server
that runs them quotes (``[...]`` for SQL Server, ``"..."`` for PostgreSQL and so for the emulator).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import sqlalchemy as sa

from mssql2pg.classify import is_permission_denied
from mssql2pg.control.statements import CONTROL_SCHEMA
from mssql2pg.identifiers import quote_ident
from mssql2pg.model import CaptureInstance, TableId
from mssql2pg.pgconn import PgConnection, fetch
from mssql2pg.sink import statements as sink_sql
from mssql2pg.sink.schema import TargetTable
from mssql2pg.source import statements as source_sql

TABLE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE")


@dataclass(frozen=True)
class MissingGrant:
    """One permission a login lacks: what it stops, and the statement that gives it."""

    what: str
    grant: str


def _tsql_name(name: str) -> str:  # sql-lint: quotes (T-SQL brackets, inner ] doubled)
    return "[" + name.replace("]", "]]") + "]"


class SourceGrants:
    """GRANT statements in the source's own dialect (T-SQL on SQL Server, PostgreSQL on the emulator)."""

    def __init__(self, dialect: str, user: str) -> None:
        self.mssql = dialect == "mssql"
        self.user = user

    def _grantee(self) -> str:  # sql-lint: quotes (the dialect's quoting of the user)
        return _tsql_name(self.user) if self.mssql else quote_ident(self.user)

    def cdc_schema(self) -> str:
        if self.mssql:
            return f"GRANT SELECT ON SCHEMA::[cdc] TO {self._grantee()};"
        return (
            f"GRANT USAGE ON SCHEMA cdc TO {self._grantee()}; "
            f"GRANT SELECT ON ALL TABLES IN SCHEMA cdc TO {self._grantee()};"
        )

    def select_on(self, schema: str, name: str) -> str:
        if self.mssql:
            return f"GRANT SELECT ON {_tsql_name(schema)}.{_tsql_name(name)} TO {self._grantee()};"
        return (
            f"GRANT USAGE ON SCHEMA {quote_ident(schema)} TO {self._grantee()}; "
            f"GRANT SELECT ON {quote_ident(schema)}.{quote_ident(name)} TO {self._grantee()};"
        )


def source_user(conn: sa.Connection) -> str:
    return str(conn.execute(source_sql.CURRENT_USER).scalar())


def source_missing(engine: sa.Engine, instances: Mapping[TableId, Sequence[CaptureInstance]]) -> list[MissingGrant]:
    """The SELECT grants the source login lacks: each change table read and each replicated table."""
    missing: list[MissingGrant] = []
    with engine.connect() as conn:
        grants = SourceGrants(engine.dialect.name, source_user(conn))
    probes: list[tuple[str, str, str]] = []
    for table, cis in instances.items():
        probes += [("cdc", f"{ci.name}_CT", f"{table}: cannot read the change table of {ci.name}") for ci in cis]
        probes.append((table.schema, table.name, f"{table}: cannot read the table (resync, reconcile)"))
    for schema, name, what in probes:
        try:
            with engine.connect() as conn:  # one connection each: a refused statement ends its transaction
                conn.execute(source_sql.can_read(schema, name)).all()
        except sa.exc.DBAPIError as exc:
            if not is_permission_denied(exc):
                raise
            missing.append(
                MissingGrant(f"{what}: the login {grants.user} lacks SELECT", grants.select_on(schema, name))
            )
    return missing


def target_missing(conn: PgConnection, tables: Iterable[TargetTable], *, protect: bool = False) -> list[MissingGrant]:
    """The grants the target role lacks to create and write the control schema and ``tables`` (and, with
    ``protect``, to install the ``target.protect`` guard trigger on them)."""
    [[user, database, can_create, can_temp]] = fetch(conn, sink_sql.DATABASE_PRIVILEGES)
    role, db = quote_ident(str(user)), quote_ident(str(database))
    missing: list[MissingGrant] = []
    if not can_temp:
        missing.append(
            MissingGrant(
                f"target: the role {user} cannot create TEMP tables (the applier stages rows in them)",
                f"GRANT TEMPORARY ON DATABASE {db} TO {role};",
            )
        )
    need_db_create = False
    by_schema: dict[str, list[str | None]] = {CONTROL_SCHEMA: [None]}
    tables = list(tables)
    for t in tables:
        by_schema.setdefault(t.schema, []).append(t.name)
    guarded = {(str(s), str(n)) for s, n in fetch(conn, sink_sql.PROTECTED_TABLES)}
    if not protect:
        missing += _guards_to_remove(conn, [t for t in tables if (t.schema, t.name) in guarded])
    for schema, names in by_schema.items():
        rows = fetch(conn, sink_sql.SCHEMA_PRIVILEGES, schema=schema)
        if not rows:
            need_db_create = True  # the schema is created at the first start
            continue
        [[usage, create]] = rows
        quoted = quote_ident(schema)
        if not usage:
            missing.append(
                MissingGrant(
                    f"target: the role {user} cannot use schema {schema}", f"GRANT USAGE ON SCHEMA {quoted} TO {role};"
                )
            )
        lacking: dict[str, list[str]] = {}
        for name in names:
            trigger = protect and schema != CONTROL_SCHEMA and (schema, name) not in guarded  # installed: not needed
            for relname, privilege in fetch(
                conn, sink_sql.TABLE_PRIVILEGES_MISSING, schema=schema, name=name, trigger=trigger
            ):
                lacking.setdefault(str(relname), []).append(str(privilege))
        existing = {str(r[0]) for r in fetch(conn, sink_sql.TABLES_OF_SCHEMA, schema=schema)}
        if not create and (schema == CONTROL_SCHEMA or any(n not in existing for n in names if n is not None)):
            missing.append(
                MissingGrant(
                    f"target: the role {user} cannot create tables in schema {schema}",
                    f"GRANT CREATE ON SCHEMA {quoted} TO {role};",
                )
            )
        if schema == CONTROL_SCHEMA and lacking:
            missing.append(
                MissingGrant(
                    f"target: the role {user} cannot write the control tables ({', '.join(sorted(lacking))})",
                    f"GRANT {', '.join(TABLE_PRIVILEGES)} ON ALL TABLES IN SCHEMA {quoted} TO {role}; "
                    f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA {quoted} TO {role};",
                )
            )
            continue
        for relname, privileges in lacking.items():
            why = " (target.protect installs its guard trigger on it)" if "TRIGGER" in privileges else ""
            missing.append(
                MissingGrant(
                    f"target: the role {user} lacks {', '.join(privileges)} on {schema}.{relname}{why}",
                    # sql-lint: privileges are names from TABLE_PRIVILEGES_MISSING's fixed array
                    f"GRANT {', '.join(privileges)} ON {quoted}.{quote_ident(relname)} TO {role};",
                )
            )
    if need_db_create and not can_create:
        missing.append(
            MissingGrant(
                f"target: the role {user} cannot create the schemas that do not exist yet",
                f"GRANT CREATE ON DATABASE {db} TO {role};",
            )
        )
    return missing


def _guards_to_remove(conn: PgConnection, tables: Iterable[TargetTable]) -> list[MissingGrant]:
    """With ``target.protect: false`` a start removes the guard from ``tables``, which only their owner may do."""
    missing = []
    for table in tables:
        [[user, _may_trigger, owns]] = fetch(conn, sink_sql.GUARD_PRIVILEGES, schema=table.schema, name=table.name)
        if not owns:
            missing.append(
                MissingGrant(
                    f"target: target.protect is false but {table.schema}.{table.name} carries the guard trigger, "
                    f"which only the table's owner may drop (the role {user} does not own it; or set "
                    "target.protect: true)",
                    f"{sink_sql.unprotect_table(table.schema, table.name)}; (as the table's owner)",
                )
            )
    return missing
