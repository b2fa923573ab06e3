"""How the rows of one capture instance become COPY fields of its target table: :class:`InstanceEncoder`.

A source table has one target table but may have two capture instances (SQL Server's way to follow a schema
change, reference §4): each instance's change rows carry *its* captured columns, in its column order
(``ChangeRow.values``). The target table's data columns are matched to them by source column name:

* a target column the instance does not capture receives NULL from that instance's rows;
* a captured column the target has no column for is left out (:attr:`InstanceEncoder.left_out`);
* each value is encoded with the instance's own codec (its type as that instance describes it).

The usual case, an instance that captures exactly the target's columns in the same order, is ``direct``: the
applier's hot loop then encodes ``ChangeRow.values`` as they are, without re-ordering.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mssql2pg.errors import ConfigError
from mssql2pg.model import CaptureInstance
from mssql2pg.sink.types import ColumnCodec, Encoder, codec_for


@dataclass(frozen=True, slots=True, eq=False)
class InstanceEncoder:
    """One capture instance's rows → the COPY fields of its target table's data columns (see the module doc)."""

    instance: CaptureInstance
    codecs: tuple[ColumnCodec, ...]
    """One per target data column group (a ``datetimeoffset`` group is two target columns): the instance's codec
    where it captures the column, else the target's (whose NULL text is all that is ever written)."""
    positions: tuple[int | None, ...]
    """Per target column group: the index into ``ChangeRow.values``, or None where the instance has no value."""
    key_positions: tuple[int, ...]
    """The key columns' indexes into ``ChangeRow.values``, in key order."""
    left_out: tuple[str, ...]
    """Captured columns the target table has no column for."""

    @property
    def name(self) -> str:
        return self.instance.name

    @property
    def direct(self) -> bool:
        """The instance captures exactly the target's columns in target order: values need no re-ordering."""
        return not self.left_out and self.positions == tuple(range(len(self.positions)))

    @property
    def width(self) -> int:
        """How many values a change row of this instance carries."""
        return len(self.instance.columns)

    @property
    def raw_encoders(self) -> list[Encoder]:
        """Per target column group, the encoder without None handling or error context (the hot loop's)."""
        return [c.raw_encoder for c in self.codecs]

    @property
    def null_texts(self) -> list[str]:
        return [c.null_text for c in self.codecs]

    def target_values(self, values: Sequence[Any]) -> tuple[Any, ...]:
        """``values`` of a change row of this instance, in target column-group order (None where it has none)."""
        return tuple(None if i is None else values[i] for i in self.positions)

    def encode(self, values: Sequence[Any]) -> str:
        """The COPY fields of the data columns; :class:`~mssql2pg.sink.types.UnstorableValueError` names the
        column of a value PostgreSQL cannot hold."""
        return "\t".join(c.encode(v) for c, v in zip(self.codecs, self.target_values(values), strict=True))


def instance_encoder(
    instance: CaptureInstance, target_codecs: Sequence[ColumnCodec], key: Sequence[str] | None = None
) -> InstanceEncoder:
    """Map ``instance`` onto a target whose data column groups are ``target_codecs`` (by source column name).

    ``key``: the target's key as source column names (default: the instance's own); every instance must capture
    all of them, or its changes could not be applied by key (:class:`ConfigError`). A column whose target group
    has another number of fields (``datetimeoffset`` on one side only) cannot be mapped either."""
    source = instance.source
    by_name = {c.name: i for i, c in enumerate(instance.columns)}
    wanted = tuple(key) if key is not None else instance.key_columns
    missing = [k for k in wanted if k not in by_name]
    if missing:
        msg = f"table {source}: key columns {missing} are not captured by {instance.name}"
        raise ConfigError(msg, hint="capture all key columns (captured_column_list must include them)")
    codecs: list[ColumnCodec] = []
    positions: list[int | None] = []
    for target in target_codecs:
        index = by_name.get(target.column.name)
        if index is None:
            codecs.append(target)
            positions.append(None)
            continue
        codec = codec_for(instance.columns[index], source)
        if codec.field_count != target.field_count:
            msg = (
                f"table {source}: column {target.column.name!r} is {instance.columns[index].sql_type} in capture "
                f"instance {instance.name} and {target.column.sql_type} in the target table's definition"
            )
            raise ConfigError(msg, hint="disable one of the two capture instances, then `mssql2pg resync` the table")
        codecs.append(codec)
        positions.append(index)
    mapped = {target.column.name for target in target_codecs}
    return InstanceEncoder(
        instance=instance,
        codecs=tuple(codecs),
        positions=tuple(positions),
        key_positions=tuple(by_name[k] for k in wanted),
        left_out=tuple(c.name for c in instance.columns if c.name not in mapped),
    )
