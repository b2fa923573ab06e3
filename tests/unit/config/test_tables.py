from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from mssql2pg.config import Config, TableSelection, load_config, resolve_tables
from mssql2pg.errors import ConfigError
from mssql2pg.model import TableId
from tests.unit.config.conftest import MINIMAL

WriteConfig = Callable[[object], Path]

AVAILABLE = [
    TableId("dbo", "Orders"),
    TableId("dbo", "Customers"),
    TableId("dbo", "Order Lines"),
    TableId("sales", "Invoices"),
    TableId("sales", "Refunds"),
    TableId("Audit", "Log"),
]


@pytest.fixture
def config_with(write_config: WriteConfig) -> Callable[..., Config]:
    def make(tables: list[object], **sections: object) -> Config:
        return load_config(write_config({**MINIMAL, "tables": tables, **sections}), env={})

    return make


def _pairs(selections: Sequence[TableSelection]) -> list[tuple[str, str]]:
    return [(str(s.source), str(s.target)) for s in selections]


def test_explicit_names_and_wildcards_expand_in_config_order(config_with: Callable[..., Config]) -> None:
    config = config_with(["dbo.orders", "sales.*", "[dbo].[Order Lines]"])

    selections = resolve_tables(config, AVAILABLE)

    assert _pairs(selections) == [
        ("dbo.Orders", "dbo.orders"),
        ("sales.Invoices", "sales.invoices"),
        ("sales.Refunds", "sales.refunds"),
        ("dbo.Order Lines", "dbo.order lines"),
    ]
    assert all(s.delete_mode == "hard" and s.naming == "lower" for s in selections)


def test_star_star_selects_everything_sorted(config_with: Callable[..., Config]) -> None:
    selections = resolve_tables(config_with(["*.*"]), AVAILABLE)

    assert [s.source for s in selections] == sorted(AVAILABLE, key=lambda t: (t.schema.lower(), t.name.lower()))


def test_partial_wildcards(config_with: Callable[..., Config]) -> None:
    selections = resolve_tables(config_with(["dbo.Order*", "*.R?funds"]), AVAILABLE)

    assert [str(s.source) for s in selections] == ["dbo.Order Lines", "dbo.Orders", "sales.Refunds"]


def test_per_table_options_and_explicit_target(config_with: Callable[..., Config]) -> None:
    config = config_with(
        [{"name": "dbo.orders", "target": "dw.Orders_V2", "delete_mode": "soft", "naming": "preserve"}, "dbo.customers"]
    )

    orders, customers = resolve_tables(config, AVAILABLE)

    assert orders.target == TableId("dw", "Orders_V2")
    assert orders.delete_mode == "soft"
    assert orders.naming == "preserve"
    assert customers.target == TableId("dbo", "customers")
    assert customers.delete_mode == "hard"


def test_naming_preserve_keeps_source_spelling(config_with: Callable[..., Config]) -> None:
    config = config_with(["Audit.*"], defaults={"naming": "preserve"})

    (log,) = resolve_tables(config, AVAILABLE)

    assert log.target == TableId("Audit", "Log")
    assert log.naming == "preserve"


def test_defaults_target_schema_and_wildcard_target_schema(config_with: Callable[..., Config]) -> None:
    config = config_with(
        [{"name": "sales.*", "target_schema": "sales_raw"}, "dbo.orders"], defaults={"target_schema": "staging"}
    )

    selections = resolve_tables(config, AVAILABLE)

    assert _pairs(selections) == [
        ("sales.Invoices", "sales_raw.invoices"),
        ("sales.Refunds", "sales_raw.refunds"),
        ("dbo.Orders", "staging.orders"),
    ]


def test_explicit_entry_wins_over_a_wildcard(config_with: Callable[..., Config]) -> None:
    config = config_with(["sales.*", {"name": "sales.refunds", "delete_mode": "soft"}])

    selections = resolve_tables(config, AVAILABLE)

    assert _pairs(selections) == [("sales.Invoices", "sales.invoices"), ("sales.Refunds", "sales.refunds")]
    assert [s.delete_mode for s in selections] == ["hard", "soft"]


def test_explicit_name_matching_nothing_lists_what_is_available(config_with: Callable[..., Config]) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_tables(config_with(["dbo.ordes"]), AVAILABLE)

    text = str(caught.value)
    assert "dbo.ordes" in text
    assert "dbo.Orders" in text  # the available tables are listed
    assert "CDC" in text
    assert "did you mean 'dbo.Orders'" in text


def test_wildcard_matching_nothing_is_fine_if_something_else_matched(config_with: Callable[..., Config]) -> None:
    selections = resolve_tables(config_with(["dbo.orders", "hr.*"]), AVAILABLE)

    assert _pairs(selections) == [("dbo.Orders", "dbo.orders")]


def test_nothing_selected_at_all_is_an_error(config_with: Callable[..., Config]) -> None:
    with pytest.raises(ConfigError, match=r"no table.*hr\.\*"):
        resolve_tables(config_with(["hr.*"]), AVAILABLE)


def test_same_explicit_name_twice_is_an_error(config_with: Callable[..., Config]) -> None:
    with pytest.raises(ConfigError, match=r"dbo\.Orders.*(more than once|twice)"):
        resolve_tables(config_with(["dbo.orders", "[dbo].[Orders]"]), AVAILABLE)


def test_lower_naming_collision_is_left_to_the_pipeline_to_pause(config_with: Callable[..., Config]) -> None:
    """Source names that differ only in case are a fact of the source, not a configuration mistake: both are
    selected, and the pipeline pauses them (tests/unit/pipeline/test_unmappable_names.py), not every table."""
    available = [TableId("dbo", "Orders"), TableId("dbo", "ORDERS")]

    selections = resolve_tables(config_with(["dbo.*"]), available)

    assert sorted(_pairs(selections)) == [("dbo.ORDERS", "dbo.orders"), ("dbo.Orders", "dbo.orders")]


def test_explicit_targets_colliding_is_an_error(config_with: Callable[..., Config]) -> None:
    config = config_with([{"name": "dbo.orders", "target": "dw.t"}, {"name": "dbo.customers", "target": "dw.t"}])

    with pytest.raises(ConfigError, match=r"dw\.t"):
        resolve_tables(config, AVAILABLE)


def test_case_sensitive_exact_match_is_preferred(config_with: Callable[..., Config]) -> None:
    available = [TableId("dbo", "Orders"), TableId("dbo", "orders")]
    config = config_with(["dbo.orders", {"name": "dbo.Orders", "target": "dbo.orders_upper"}])

    selections = resolve_tables(config, available)

    assert _pairs(selections) == [("dbo.orders", "dbo.orders"), ("dbo.Orders", "dbo.orders_upper")]


def test_target_in_the_control_schema_is_refused(config_with: Callable[..., Config]) -> None:
    with pytest.raises(ConfigError, match="mssql2pg"):
        resolve_tables(config_with([{"name": "dbo.orders", "target": "mssql2pg.orders"}]), AVAILABLE)


def test_an_explicit_target_name_too_long_for_postgresql_is_an_error(config_with: Callable[..., Config]) -> None:
    with pytest.raises(ConfigError, match="63"):
        resolve_tables(config_with([{"name": "dbo.orders", "target": "dw." + "t" * 70}]), AVAILABLE)


def test_a_source_name_too_long_for_postgresql_is_left_to_the_pipeline_to_pause(
    config_with: Callable[..., Config],
) -> None:
    long_name = "t" * 70

    [selection] = resolve_tables(config_with(["dbo.*"]), [TableId("dbo", long_name)])

    assert selection.target == TableId("dbo", long_name)


def test_target_option_on_a_wildcard_is_refused_at_load(write_config: WriteConfig) -> None:
    with pytest.raises(ConfigError, match=r"tables\.0.*target_schema"):
        load_config(write_config({**MINIMAL, "tables": [{"name": "sales.*", "target": "dw.x"}]}), env={})


def test_unparseable_table_name_is_refused_at_load(write_config: WriteConfig) -> None:
    with pytest.raises(ConfigError, match=r"tables\.1"):
        load_config(write_config({**MINIMAL, "tables": ["dbo.a", "a.b.c"]}), env={})


def test_empty_table_list_is_refused_at_load(write_config: WriteConfig) -> None:
    with pytest.raises(ConfigError, match=r"tables"):
        load_config(write_config({**MINIMAL, "tables": []}), env={})


def test_bare_name_defaults_to_dbo(config_with: Callable[..., Config]) -> None:
    (orders,) = resolve_tables(config_with(["orders"]), AVAILABLE)

    assert orders.source == TableId("dbo", "Orders")


def test_quoted_star_is_a_literal_name(config_with: Callable[..., Config]) -> None:
    available = [TableId("dbo", "*"), TableId("dbo", "x")]

    selections = resolve_tables(config_with(["[dbo].[*]"]), available)

    assert [s.source for s in selections] == [TableId("dbo", "*")]


def test_groups_default_and_per_table(config_with: Callable[..., Config]) -> None:
    config = config_with([{"name": "sales.*", "group": "sales"}, "dbo.orders"])

    selections = resolve_tables(config, AVAILABLE)

    assert [s.group for s in selections] == ["sales", "sales", "default"]


def test_explicit_name_matching_several_tables_by_case_only_is_ambiguous(config_with: Callable[..., Config]) -> None:
    available = [TableId("dbo", "Orders"), TableId("dbo", "ORDERS")]

    with pytest.raises(ConfigError, match=r"differ only in case.*spell it exactly"):
        resolve_tables(config_with(["dbo.orders"]), available)


def test_no_cdc_tables_at_all_says_so(config_with: Callable[..., Config]) -> None:
    with pytest.raises(ConfigError, match="no CDC-enabled tables at all"):
        resolve_tables(config_with(["dbo.orders"]), [])


@pytest.mark.parametrize("bad", ["[dbo.orders", "dbo.[]", "dbo.", ".orders", '"dbo"."x'])
def test_malformed_names_are_refused_at_load(write_config: WriteConfig, bad: str) -> None:
    with pytest.raises(ConfigError, match=r"tables\.0\.name"):
        load_config(write_config({**MINIMAL, "tables": [bad]}), env={})


def test_comma_inside_a_quoted_name_does_not_split_the_env_list() -> None:
    config = load_config(
        None,
        env={
            "MSSQL2PG__SOURCE__URL": "mssql://r@s/shop",
            "MSSQL2PG__TARGET__URL": "postgresql://w@pg/dw",
            "MSSQL2PG__TABLES": "[dbo].[a,b], dbo.c",
        },
    )

    selections = resolve_tables(config, [TableId("dbo", "a,b"), TableId("dbo", "c")])
    assert [s.source for s in selections] == [TableId("dbo", "a,b"), TableId("dbo", "c")]


def test_a_table_entry_of_the_wrong_kind(write_config: WriteConfig) -> None:
    with pytest.raises(ConfigError, match=r"tables\.1: expected a table name or a mapping with 'name', got a number"):
        load_config(write_config({**MINIMAL, "tables": ["dbo.a", 5]}), env={})
