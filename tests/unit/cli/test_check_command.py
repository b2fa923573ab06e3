"""``mssql2pg check``'s output: a finding that passed may still carry advice (the capture instance that can be
disabled now, with its EXEC, docs/schema-evolution.md); it is printed like a failure's remedy."""

from __future__ import annotations

import pytest

from mssql2pg.cli import check as cli
from mssql2pg.pipeline.check import Finding


def test_the_advice_of_a_passed_finding_is_printed(capsys: pytest.CaptureFixture[str]) -> None:
    advice = "EXEC sys.sp_cdc_disable_table @source_schema = N'dbo', @source_name = N'orders', ..."
    cli._print(Finding(True, "dbo.orders: capture instance dbo_orders can be disabled", advice))
    cli._print(Finding(False, "the source login lacks SELECT", "run on the source: GRANT ..."))
    cli._print(Finding(True, "source is reachable"))
    assert capsys.readouterr().out.splitlines() == [
        "  ok    dbo.orders: capture instance dbo_orders can be disabled",
        f"        -> {advice}",
        "  FAIL  the source login lacks SELECT",
        "        -> run on the source: GRANT ...",
        "  ok    source is reachable",
    ]
