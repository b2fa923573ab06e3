"""Every SQL Server type the sink maps has a canonical encoding, at the precision the two sides share."""

from __future__ import annotations

import pytest

from mssql2pg.model import SourceColumn
from mssql2pg.reconcile.canonical import FieldSpec, spec_for
from mssql2pg.sink import types as sink_types

MAPPED = [
    *sink_types._FIXED,
    *("decimal", "numeric", "time", "datetime2", "datetimeoffset", "char", "nchar", "varchar", "nvarchar"),
]


@pytest.mark.parametrize("sql_type", MAPPED)
def test_every_mapped_type_has_an_encoding(sql_type: str) -> None:
    assert isinstance(spec_for(SourceColumn("c", 1, sql_type, precision=10, scale=2)), FieldSpec)


@pytest.mark.parametrize(
    ("sql_type", "scale", "expected"),
    [
        ("datetime2", 7, FieldSpec("timestamp", 6)),  # the target keeps microseconds: the coarser side
        ("datetime2", 2, FieldSpec("timestamp", 2)),
        ("datetime", None, FieldSpec("timestamp", 3)),
        ("smalldatetime", None, FieldSpec("timestamp", 0)),
        ("time", None, FieldSpec("time", 6)),
        ("datetimeoffset", 7, FieldSpec("dto", 6)),
        ("money", None, FieldSpec("numeric", 4, 19)),
        ("decimal", 5, FieldSpec("numeric", 5, 10)),
        ("uniqueidentifier", None, FieldSpec("uuid")),
        ("rowversion", None, FieldSpec("bytes")),
        ("nchar", None, FieldSpec("text")),
    ],
)
def test_precision_and_scale(sql_type: str, scale: int | None, expected: FieldSpec) -> None:
    assert spec_for(SourceColumn("c", 1, sql_type, precision=10, scale=scale)) == expected


def test_an_unknown_type_is_refused() -> None:
    with pytest.raises(ValueError, match="cursor"):
        spec_for(SourceColumn("c", 1, "cursor"))
