"""Where a capture instance lands in PostgreSQL: the :class:`TargetTable`, its creation and its compatibility check.

A target table holds the source's captured columns (a ``datetimeoffset`` column also gets a companion
``<name>_offset`` column with the original offset in minutes) plus metadata columns with one common prefix
(``_cdc_`` by default): commit LSN, operation, commit time, applied time, soft-delete flag and stale flag.

Creating is idempotent (``IF NOT EXISTS``). An existing table is accepted only if it can hold every row: all
expected columns present with the same or a safely wider type, and the same primary key. Anything else stops
the start with a message that lists each difference and what to do, because writing into a table that
silently truncates or rejects values is worse than not starting.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from mssql2pg.errors import ConfigError, IncompatibleTargetError
from mssql2pg.model import CaptureInstance, TableId
from mssql2pg.pgconn import PgConnection, fetch
from mssql2pg.sink import statements as sql
from mssql2pg.sink.types import ColumnCodec, codec_for

Naming = Literal["lower", "preserve"]
DeleteMode = Literal["hard", "soft"]


@dataclass(frozen=True, slots=True)
class TableOptions:
    """Per-table target options. ``None`` target schema/name: derived from the source name by ``naming``."""

    target_schema: str | None = None
    target_name: str | None = None
    naming: Naming = "lower"
    delete_mode: DeleteMode = "hard"
    metadata_prefix: str = "_cdc_"


@dataclass(frozen=True, slots=True)
class MetadataColumns:
    """Names of the metadata columns, all sharing one prefix."""

    prefix: str = "_cdc_"

    @property
    def lsn(self) -> str:
        return self.prefix + "lsn"

    @property
    def operation(self) -> str:
        return self.prefix + "operation"

    @property
    def commit_time(self) -> str:
        return self.prefix + "commit_time"

    @property
    def applied_at(self) -> str:
        return self.prefix + "applied_at"

    @property
    def deleted(self) -> str:
        return self.prefix + "deleted"

    @property
    def stale(self) -> str:
        return self.prefix + "stale"

    def definitions(self) -> list[tuple[str, str]]:
        """(name, type and constraints) in table order."""
        return [
            (self.lsn, "bytea NOT NULL"),
            (self.operation, "smallint NOT NULL"),
            (self.commit_time, "timestamp"),
            (self.applied_at, "timestamptz NOT NULL DEFAULT now()"),
            (self.deleted, "boolean NOT NULL DEFAULT false"),
            (self.stale, "boolean NOT NULL DEFAULT false"),
        ]


@dataclass(frozen=True, slots=True)
class TargetColumn:
    """One PostgreSQL data column. ``codec`` is shared by a datetimeoffset column and its offset companion."""

    name: str
    pg_type: str
    nullable: bool
    source_name: str
    is_offset: bool = False


@dataclass(frozen=True, slots=True)
class TargetTable:
    """A capture instance's target: names, columns (in COPY order), key, metadata and delete mode."""

    capture_instance: CaptureInstance
    schema: str
    name: str
    columns: tuple[TargetColumn, ...]
    codecs: tuple[ColumnCodec, ...]  # one per captured source column, in capture-instance order
    key: tuple[str, ...]  # target column names
    key_positions: tuple[int, ...]  # positions of the key columns in ChangeRow.values
    delete_mode: DeleteMode
    meta: MetadataColumns = field(default_factory=MetadataColumns)

    @property
    def source(self) -> TableId:
        return self.capture_instance.source

    @property
    def qualified_name(self) -> str:
        return sql.qualified(self.schema, self.name)

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def keep_on_delete(self) -> tuple[str, ...]:
        """Columns SQL Server leaves NULL in delete rows (text/ntext/image): a soft delete keeps the old value."""
        names: list[str] = []
        cols = iter(self.columns)
        for codec in self.codecs:
            col = next(cols)
            if codec.target.offset_companion:
                next(cols)
            if codec.target.keeps_previous_on_delete:
                names.append(col.name)
        return tuple(names)


def build_target_table(capture_instance: CaptureInstance, options: TableOptions | None = None) -> TargetTable:
    """Describe the target of ``capture_instance``; :class:`ConfigError` for names that cannot work."""
    options = options or TableOptions()
    source = capture_instance.source

    def name_of(text: str) -> str:
        return text.lower() if options.naming == "lower" else text

    meta = MetadataColumns(options.metadata_prefix)
    columns: list[TargetColumn] = []
    codecs: list[ColumnCodec] = []
    origin: dict[str, str] = {}

    def add(column: TargetColumn) -> None:
        if column.name in origin:
            msg = (
                f"table {source}: source columns {origin[column.name]!r} and {column.source_name!r} both become "
                f"target column {column.name!r}"
            )
            raise ConfigError(
                msg,
                hint="rename one of the source columns, or set naming: preserve for this table"
                if options.naming == "lower"
                else "rename one of the source columns",
            )
        origin[column.name] = column.source_name if not column.is_offset else f"{column.source_name} (offset)"
        columns.append(column)

    for source_column in capture_instance.columns:
        codec = codec_for(source_column, source)
        codecs.append(codec)
        target_name = name_of(source_column.name)
        add(TargetColumn(target_name, codec.target.pg_type, source_column.nullable, source_column.name))
        if codec.target.offset_companion:
            add(TargetColumn(target_name + "_offset", "smallint", source_column.nullable, source_column.name, True))

    for meta_name, _ in meta.definitions():
        if meta_name in origin:
            msg = f"table {source}: column {origin[meta_name]!r} collides with the metadata column {meta_name!r}"
            raise ConfigError(msg, hint="choose another metadata_prefix for this pipeline")

    if not capture_instance.key_columns:
        msg = f"table {source} (capture instance {capture_instance.name}) has no primary key or unique index"
        raise ConfigError(
            msg,
            hint="add a primary key to the source table, or re-create the capture instance with @index_name "
            "naming a unique index",
        )
    by_source = {c.name: i for i, c in enumerate(capture_instance.columns)}
    missing = [k for k in capture_instance.key_columns if k not in by_source]
    if missing:
        msg = f"table {source}: key columns {missing} are not captured by {capture_instance.name}"
        raise ConfigError(msg, hint="capture all key columns (captured_column_list must include them)")
    key_positions = tuple(by_source[k] for k in capture_instance.key_columns)
    key = tuple(name_of(k) for k in capture_instance.key_columns)

    target_schema = options.target_schema if options.target_schema is not None else name_of(source.schema)
    target_name = options.target_name if options.target_name is not None else name_of(source.name)
    try:
        sql.qualified(target_schema, target_name)
        for c in columns:
            sql.quote_ident(c.name)
    except ValueError as exc:
        raise ConfigError(f"table {source}: {exc}", hint="map it to a shorter target name") from exc
    return TargetTable(
        capture_instance=capture_instance,
        schema=target_schema,
        name=target_name,
        columns=tuple(columns),
        codecs=tuple(codecs),
        key=key,
        key_positions=key_positions,
        delete_mode=options.delete_mode,
        meta=meta,
    )


# --- creating and checking ------------------------------------------------------------------------------------


def ensure_target_table(conn: PgConnection, table: TargetTable) -> None:
    """Create the schema and table if missing, else verify the existing table (inside the caller's transaction)."""
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
    wanted = [(c.name, c.pg_type) for c in table.columns]
    wanted += [(name, definition.split(" ")[0]) for name, definition in table.meta.definitions()]
    for name, pg_type in wanted:
        if name not in existing:
            problems.append(f"column {name!r} ({pg_type}) is missing")
            continue
        have = existing[name][0]
        if not type_can_hold(have, pg_type):
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
