"""Target tables in PostgreSQL: created when missing, checked when they exist.

Creating is idempotent (``IF NOT EXISTS``). An existing table is accepted only if it can hold every row: all
expected columns present with the same or a safely wider type, and the same primary key. Anything else stops
the start with a message that lists each difference and what to do, because writing into a table that
silently truncates or rejects values is worse than not starting.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from mssql2pg.errors import IncompatibleTargetError
from mssql2pg.pgconn import PgConnection, fetch
from mssql2pg.sink import statements as sql
from mssql2pg.sink.schema import TargetTable


def ensure_target_table(conn: PgConnection, table: TargetTable) -> None:
    """Create the schema and table if missing, else verify the existing table (inside the caller's transaction).
    The schema is looked for first: creating it needs CREATE on the database even when it exists."""
    if not fetch(conn, sql.SCHEMA_EXISTS, schema=table.schema):
        conn.run(sql.create_schema(table.schema))
    existing = _existing_columns(conn, table)
    if not existing:
        conn.run(sql.create_target_table(table))
        return
    problems = _differences(table, existing, _existing_key(conn, table))
    if problems:
        listing = "\n    - ".join(problems)
        msg = f"target table {table.schema}.{table.name} (for {table.source}) is incompatible:\n    - {listing}"
        raise IncompatibleTargetError(
            msg,
            hint="alter or drop the target table so it matches (mssql2pg creates it when missing), or map the "
            "source table to another target table name",
        )


def _existing_columns(conn: PgConnection, table: TargetTable) -> dict[str, tuple[str, bool]]:
    rows = fetch(conn, sql.SELECT_TABLE_COLUMNS, schema=table.schema, name=table.name)
    return {str(name): (str(pg_type), bool(not_null)) for name, pg_type, not_null in rows}


def _existing_key(conn: PgConnection, table: TargetTable) -> tuple[str, ...]:
    rows = fetch(conn, sql.SELECT_PRIMARY_KEY, schema=table.schema, name=table.name)
    return tuple(str(r[0]) for r in rows)


def _differences(table: TargetTable, existing: dict[str, tuple[str, bool]], existing_key: Sequence[str]) -> list[str]:
    problems: list[str] = []
    wanted = [(c.name, c.pg_type, c.dropped) for c in table.columns]
    wanted += [(name, definition.split(" ")[0], False) for name, definition in table.meta.definitions()]
    for name, pg_type, dropped in wanted:
        if name not in existing:
            problems.append(f"column {name!r} ({pg_type}) is missing")
            continue
        have = existing[name][0]
        # a column dropped at the source only receives NULL from now on; its type facts are gone with it
        if not dropped and not type_can_hold(have, pg_type):
            problems.append(f"column {name!r} is {have}, which cannot hold {pg_type}")
    if tuple(existing_key) != table.key:
        have_key = ", ".join(existing_key) if existing_key else "none"
        problems.append(f"primary key is ({have_key}), expected ({', '.join(table.key)})")
    return problems


_TYPE = re.compile(r"^(?P<base>[a-z ]+?)(?:\((?P<args>[0-9, ]+)\))?(?P<rest>(?: with(?:out)? time zone)?)$")
_CANONICAL = {
    "timestamptz": "timestamp with time zone",
    "timestamp": "timestamp without time zone",
    "time": "time without time zone",
    "varchar": "character varying",
}
_INT_RANK = {"smallint": 1, "integer": 2, "bigint": 3}


def _parse_type(text: str) -> tuple[str, tuple[int, ...]]:
    """('timestamp without time zone', (3,)) for both 'timestamp(3)' and 'timestamp(3) without time zone'."""
    m = _TYPE.match(text.strip().lower())
    if m is None:
        return text.strip().lower(), ()
    base = (m.group("base").strip() + m.group("rest")).strip()
    base = _CANONICAL.get(base, base)
    args = tuple(int(a) for a in m.group("args").split(",")) if m.group("args") else ()
    return base, args


def type_can_hold(existing: str, wanted: str) -> bool:  # noqa: PLR0911 - one return per type family reads best
    """True when a column of type ``existing`` stores every value of type ``wanted`` exactly."""
    have, have_args = _parse_type(existing)
    want, want_args = _parse_type(wanted)
    if have in _INT_RANK and want in _INT_RANK:
        return _INT_RANK[have] >= _INT_RANK[want]
    if have == "text" and want in ("character varying", "text"):
        return True
    if have != want:
        return want == "real" and have == "double precision"
    if have == "character varying":
        return not have_args or (bool(want_args) and have_args[0] >= want_args[0])
    if have == "numeric":
        if not have_args:
            return True
        if len(want_args) != 2 or len(have_args) != 2:
            return have_args == want_args
        return have_args[1] >= want_args[1] and have_args[0] - have_args[1] >= want_args[0] - want_args[1]
    if have.startswith(("timestamp", "time")):
        return (have_args[0] if have_args else 6) >= (want_args[0] if want_args else 6)
    return have_args == want_args
