"""Where a source table lands in PostgreSQL: the :class:`TargetTable` (creating and checking it in the target is
:mod:`mssql2pg.sink.ddl`).

A target table holds the source's captured columns (a ``datetimeoffset`` column also gets a companion
``<name>_offset`` column with the original offset in minutes) plus metadata columns with one common prefix
(``_cdc_`` by default): commit LSN, operation, commit time, applied time, soft-delete flag and stale flag.

One target table per *source table*, fed by each of its capture instances (one, or two while SQL Server
follows a schema change) through an :class:`~mssql2pg.sink.encoders.InstanceEncoder` of its own. Its data
columns are every column any of those instances captures, so no captured value is ever dropped: the oldest
instance's columns in their order, then each newer instance's new columns; a column's type is the newest
instance's. The key is the newest instance's, and every instance must capture it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from mssql2pg.errors import ConfigError
from mssql2pg.identifiers import qualified, quote_ident
from mssql2pg.model import CaptureInstance, SourceColumn, TableId
from mssql2pg.sink.encoders import InstanceEncoder, instance_encoder
from mssql2pg.sink.types import ColumnCodec, codec_for

Naming = Literal["lower", "preserve"]
DeleteMode = Literal["hard", "soft"]
ConflictPolicy = Literal["source-wins", "dead-letter"]


@dataclass(frozen=True, slots=True)
class TableOptions:
    """Per-table target options. ``None`` target schema/name: derived from the source name by ``naming``."""

    target_schema: str | None = None
    target_name: str | None = None
    naming: Naming = "lower"
    delete_mode: DeleteMode = "hard"
    metadata_prefix: str = "_cdc_"
    on_target_conflict: ConflictPolicy = "source-wins"  # when the applier detects conflicts (see Applier)


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
    dropped: bool = False  # dropped from the source table: kept in the target, NULL from then on


@dataclass(frozen=True, slots=True)
class TargetTable:
    """A source table's target: names, columns (in COPY order), key, metadata, delete mode, and one encoder per
    capture instance that feeds it (oldest first). Built by :func:`build_target_table`."""

    source: TableId
    schema: str
    name: str
    columns: tuple[TargetColumn, ...]
    codecs: tuple[ColumnCodec, ...]  # one per data column group (a source column), in COPY order
    key: tuple[str, ...]  # target column names
    delete_mode: DeleteMode
    encoders: tuple[InstanceEncoder, ...]  # one per capture instance, oldest first
    options: TableOptions
    meta: MetadataColumns = field(default_factory=MetadataColumns)

    @property
    def instances(self) -> tuple[CaptureInstance, ...]:
        """The capture instances that feed this table, oldest first."""
        return tuple(e.instance for e in self.encoders)

    @property
    def capture_instance(self) -> CaptureInstance:
        """The newest capture instance: the one the table follows (recorded in ``mssql2pg.table_state``)."""
        return self.encoders[-1].instance

    @property
    def qualified_name(self) -> str:
        return qualified(self.schema, self.name)

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def encoder(self, capture_instance: str) -> InstanceEncoder:
        """The encoder of the named capture instance; KeyError if it does not feed this table."""
        for encoder in self.encoders:
            if encoder.instance.name == capture_instance:
                return encoder
        msg = f"capture instance {capture_instance!r} does not feed the target of {self.source}"
        raise KeyError(msg)

    def with_instance(self, instance: CaptureInstance) -> TargetTable:
        """This table also fed by ``instance`` (as the newest), or with it replacing the instance of that name."""
        names = [ci.name for ci in self.instances]
        if instance.name in names:
            instances = [instance if ci.name == instance.name else ci for ci in self.instances]
        else:
            instances = [*self.instances, instance]
        return build_target_table(instances, self.options)

    def without_instance(self, capture_instance: str) -> TargetTable:
        """This table no longer fed by the named capture instance (its other instances stay)."""
        self.encoder(capture_instance)  # KeyError if unknown
        rest = [ci for ci in self.instances if ci.name != capture_instance]
        if not rest:
            msg = f"{capture_instance} is the last capture instance of {self.source}; retire the table instead"
            raise ValueError(msg)
        return build_target_table(rest, self.options)

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


def _all_columns(instances: Sequence[CaptureInstance]) -> list[SourceColumn]:
    """Every column any instance captures: first-seen order (oldest instance first), the newest description,
    nullable wherever some instance does not capture it (that instance writes NULL there)."""
    columns: dict[str, SourceColumn] = {}
    for ci in instances:
        for column in ci.columns:
            columns[column.name] = column  # a newer instance's description replaces, the position stays
    for name, column in columns.items():
        if not column.nullable and any(name not in ci.column_names for ci in instances):
            columns[name] = dataclasses.replace(column, nullable=True)
    return list(columns.values())


def build_target_table(
    instances: CaptureInstance | Sequence[CaptureInstance], options: TableOptions | None = None
) -> TargetTable:
    """Describe the target of one source table fed by ``instances`` (one capture instance, or its instances
    oldest first); :class:`ConfigError` for names or keys that cannot work."""
    options = options or TableOptions()
    feeds = (instances,) if isinstance(instances, CaptureInstance) else tuple(instances)
    if not feeds:
        msg = "a target table needs at least one capture instance"
        raise ValueError(msg)
    sources = {ci.source for ci in feeds}
    if len(sources) != 1:
        msg = f"capture instances of {sorted(map(str, sources))} cannot feed one target: one source table each"
        raise ValueError(msg)
    newest = feeds[-1]
    source = newest.source

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

    for source_column in _all_columns(feeds):
        codec = codec_for(source_column, source)
        codecs.append(codec)
        target_name = name_of(source_column.name)
        dropped = source_column.dropped
        add(TargetColumn(target_name, codec.target.pg_type, source_column.nullable, source_column.name, False, dropped))
        if codec.target.offset_companion:
            add(
                TargetColumn(
                    target_name + "_offset", "smallint", source_column.nullable, source_column.name, True, dropped
                )
            )

    for meta_name, _ in meta.definitions():
        if meta_name in origin:
            msg = f"table {source}: column {origin[meta_name]!r} collides with the metadata column {meta_name!r}"
            raise ConfigError(msg, hint="choose another metadata_prefix for this pipeline")

    if not newest.key_columns:
        msg = f"table {source} (capture instance {newest.name}) has no primary key or unique index"
        raise ConfigError(
            msg,
            hint="add a primary key to the source table, or re-create the capture instance with @index_name "
            "naming a unique index",
        )
    encoders = tuple(instance_encoder(ci, codecs, newest.key_columns) for ci in feeds)
    key = tuple(name_of(k) for k in newest.key_columns)

    target_schema = options.target_schema if options.target_schema is not None else name_of(source.schema)
    target_name = options.target_name if options.target_name is not None else name_of(source.name)
    try:
        qualified(target_schema, target_name)
        for c in columns:
            quote_ident(c.name)
    except ValueError as exc:
        raise ConfigError(f"table {source}: {exc}", hint="map it to a shorter target name") from exc
    return TargetTable(
        source=source,
        schema=target_schema,
        name=target_name,
        columns=tuple(columns),
        codecs=tuple(codecs),
        key=key,
        delete_mode=options.delete_mode,
        encoders=encoders,
        options=options,
        meta=meta,
    )
