"""A table the control schema recorded is found again by its recorded name, whatever characters it holds."""

from __future__ import annotations

import pytest

from mssql2pg.model import TableId
from mssql2pg.pipeline.plan import registered_table


@pytest.mark.parametrize(
    "table",
    [
        TableId("dbo", "orders"),
        TableId("Sales", "Order Lines"),
        TableId('Sch"ema; DROP TABLE decoy; --', "Tä[b]le.x /* x */ $b$ 🚀"),
    ],
)
def test_a_recorded_name_gives_back_its_table(table: TableId) -> None:
    """Quotes and brackets that the configuration's syntax would read as quoting, dots in the table name."""
    assert registered_table(str(table)) == table


def test_a_recorded_name_never_raises() -> None:
    """A schema with a dot cannot be told from a table with one in the recorded form: a table is still returned
    (the pipeline starts; such a table, if it vanished, is not matched to the configuration)."""
    assert registered_table('a"b.c.d') == TableId('a"b', "c.d")
