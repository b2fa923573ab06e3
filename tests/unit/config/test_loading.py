from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from mssql2pg.config import Config, load_config
from mssql2pg.errors import ConfigError
from tests.unit.config.conftest import MINIMAL

WriteConfig = Callable[[object], Path]


def test_minimal_file_gets_documented_defaults(write_config: WriteConfig) -> None:
    config = load_config(write_config(MINIMAL), env={})

    assert config.pipeline.name == "default"
    assert config.reader.poll_interval == 0.5
    assert config.reader.chunk_rows == 10_000
    assert config.apply.max_batch_rows == 50_000
    assert config.apply.max_batch_seconds == 0.2
    assert (config.retry.initial, config.retry.maximum, config.retry.multiplier) == (1.0, 60.0, 2.0)
    assert config.retry.jitter is True
    assert config.retry.alert_after == 600.0
    assert config.stale_after == 24 * 3600.0
    assert (config.http.host, config.http.port) == ("127.0.0.1", 9400)
    assert config.log.level == "info"
    assert config.log.format == "auto"
    assert config.defaults.delete_mode == "hard"
    assert config.defaults.naming == "lower"
    assert [str(t.name) for t in config.tables] == ["dbo.orders", "dbo.customers", "sales.*"]


def test_durations_accept_unit_strings(write_config: WriteConfig) -> None:
    config = load_config(
        write_config(
            {**MINIMAL, "reader": {"poll_interval": "250ms"}, "stale_after": "2h", "retry": {"maximum": "5m"}}
        ),
        env={},
    )

    assert config.reader.poll_interval == 0.25
    assert config.stale_after == 7200.0
    assert config.retry.maximum == 300.0


def test_environment_overrides_win_and_are_typed(write_config: WriteConfig) -> None:
    path = write_config({**MINIMAL, "http": {"port": 1234}, "reader": {"chunk_rows": 5}})

    config = load_config(
        path,
        env={
            "MSSQL2PG__HTTP__PORT": "9401",
            "mssql2pg__Reader__Poll_Interval": "2s",
            "MSSQL2PG__RETRY__JITTER": "false",
            "MSSQL2PG_UNRELATED": "ignored: single underscore is not an override",
            "PATH": "/usr/bin",
        },
    )

    assert config.http.port == 9401
    assert config.reader.poll_interval == 2.0
    assert config.reader.chunk_rows == 5  # untouched keys of an overridden section survive
    assert config.retry.jitter is False


def test_config_can_come_entirely_from_the_environment() -> None:
    config = load_config(
        None,
        env={
            "MSSQL2PG__SOURCE__URL": "mssql://reader@sql:1433/shop",
            "MSSQL2PG__TARGET__URL": "postgresql://w@pg/dw",
            "MSSQL2PG__TABLES": '["dbo.orders", "sales.*"]',
            "MSSQL2PG__PIPELINE__NAME": "2024",
        },
    )

    assert [str(t.name) for t in config.tables] == ["dbo.orders", "sales.*"]
    assert config.pipeline.name == "2024"
    assert config.source.sqlalchemy_url().drivername == "mssql+pytds"


def test_tables_from_env_as_comma_separated_list() -> None:
    config = load_config(
        None,
        env={
            "MSSQL2PG__SOURCE__URL": "mssql://reader@sql/shop",
            "MSSQL2PG__TARGET__URL": "postgresql://w@pg/dw",
            "MSSQL2PG__TABLES": "dbo.orders, sales.*",
        },
    )

    assert [t.name for t in config.tables] == ["dbo.orders", "sales.*"]


def test_all_problems_reported_at_once_with_dotted_paths(write_config: WriteConfig) -> None:
    path = write_config(
        {**MINIMAL, "apply": {"max_batch_rows": 0, "max_batch_seconds": "soon"}, "http": {"port": 70000}}
    )

    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})

    text = str(caught.value)
    assert "apply.max_batch_rows" in text
    assert "apply.max_batch_seconds" in text
    assert "'soon'" in text
    assert "http.port" in text
    assert str(path) in text


def test_unknown_key_suggests_the_closest_valid_key(write_config: WriteConfig) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write_config({**MINIMAL, "reader": {"poll_intervall": 1}}), env={})

    text = str(caught.value)
    assert "unknown key 'poll_intervall' in section 'reader'" in text
    assert "did you mean 'poll_interval'" in text
    assert "chunk_rows" in text  # the valid keys are listed


def test_unknown_top_level_section(write_config: WriteConfig) -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'retries' at the top level.*did you mean 'retry'"):
        load_config(write_config({**MINIMAL, "retries": {"initial": 1}}), env={})


def test_unknown_key_in_a_table_entry(write_config: WriteConfig) -> None:
    path = write_config({**MINIMAL, "tables": [{"name": "dbo.orders", "delete_mod": "soft"}]})

    with pytest.raises(ConfigError, match=r"tables\.0.*did you mean 'delete_mode'"):
        load_config(path, env={})


def test_bad_choice_lists_the_allowed_values(write_config: WriteConfig) -> None:
    path = write_config({**MINIMAL, "defaults": {"delete_mode": "purge"}})

    with pytest.raises(ConfigError, match=r"defaults\.delete_mode.*'purge'.*'hard'.*'soft'"):
        load_config(path, env={})


def test_missing_required_sections(write_config: WriteConfig) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write_config({"tables": ["dbo.a"]}), env={})

    text = str(caught.value)
    assert "source" in text
    assert "target" in text
    assert "MSSQL2PG__SOURCE__URL" in text  # tells how to provide it


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"not found.*nope\.yaml"):
        load_config(tmp_path / "nope.yaml", env={})


def test_unreadable_yaml_names_line_and_column(write_config: WriteConfig) -> None:
    path = write_config("source:\n  url: [unclosed\ntarget: {url: x}\n")

    with pytest.raises(ConfigError, match=r"line \d+, column \d+"):
        load_config(path, env={})


@pytest.mark.parametrize("content", ["- a\n- b\n", "just a string\n", "42\n"])
def test_top_level_must_be_a_mapping(write_config: WriteConfig, content: str) -> None:
    with pytest.raises(ConfigError, match="mapping"):
        load_config(write_config(content), env={})


def test_empty_file_with_env_is_fine(write_config: WriteConfig) -> None:
    config = load_config(
        write_config(""),
        env={
            "MSSQL2PG__SOURCE__URL": "mssql://r@s/shop",
            "MSSQL2PG__TARGET__URL": "postgresql://w@pg/dw",
            "MSSQL2PG__TABLES": "dbo.a",
        },
    )

    assert isinstance(config, Config)


def test_env_override_that_is_invalid_names_the_variable() -> None:
    env = {
        "MSSQL2PG__SOURCE__URL": "mssql://r@s/shop",
        "MSSQL2PG__TARGET__URL": "postgresql://w@pg/dw",
        "MSSQL2PG__TABLES": "dbo.a",
        "MSSQL2PG__HTTP__PORT": "ninety",
    }

    with pytest.raises(ConfigError, match=r"http\.port.*MSSQL2PG__HTTP__PORT"):
        load_config(None, env=env)


def test_env_override_of_unknown_section_is_reported() -> None:
    env = {
        "MSSQL2PG__SOURCE__URL": "mssql://r@s/shop",
        "MSSQL2PG__TARGET__URL": "postgresql://w@pg/dw",
        "MSSQL2PG__TABLES": "dbo.a",
        "MSSQL2PG__HTPP__PORT": "1",
    }

    with pytest.raises(ConfigError, match=r"unknown key 'htpp'.*did you mean 'http'"):
        load_config(None, env=env)


def test_http_port_zero_means_pick_a_free_port(write_config: WriteConfig) -> None:
    config = load_config(write_config({**MINIMAL, "http": {"port": 0}}), env={})

    assert config.http.port == 0


def test_log_level_is_case_insensitive(write_config: WriteConfig) -> None:
    config = load_config(write_config({**MINIMAL, "log": {"level": "WARNING", "format": "json"}}), env={})

    assert config.log.level == "warning"
    assert config.log.format == "json"


def test_pipeline_name_must_be_a_usable_key(write_config: WriteConfig) -> None:
    with pytest.raises(ConfigError, match=r"pipeline\.name"):
        load_config(write_config({**MINIMAL, "pipeline": {"name": "a b;c"}}), env={})


def test_pipeline_group_must_be_a_usable_key_and_unset_keys_the_position_without_a_group(
    write_config: WriteConfig,
) -> None:
    with pytest.raises(ConfigError, match=r"pipeline\.group"):
        load_config(write_config(MINIMAL), env={"MSSQL2PG__PIPELINE__GROUP": "a b"})
    assert load_config(write_config(MINIMAL), env={}).pipeline.group_key == ""
    grouped = load_config(write_config(MINIMAL), env={"MSSQL2PG__PIPELINE__GROUP": "ga"}).pipeline
    assert (grouped.group, grouped.group_key) == ("ga", "ga")


def test_retry_maximum_not_below_initial(write_config: WriteConfig) -> None:
    with pytest.raises(ConfigError, match=r"retry"):
        load_config(write_config({**MINIMAL, "retry": {"initial": "10s", "maximum": "1s"}}), env={})


def test_config_is_immutable(write_config: WriteConfig) -> None:
    config = load_config(write_config(MINIMAL), env={})

    with pytest.raises(Exception, match="frozen"):
        config.http.port = 1  # type: ignore[misc]


def test_a_key_given_twice_is_an_error_not_a_silent_override(write_config: WriteConfig) -> None:
    path = write_config(
        "source: {url: 'mssql://r@s/shop'}\ntarget: {url: 'postgresql://w@pg/dw'}\ntables: [dbo.a]\n"
        "http:\n  port: 1\n  port: 2\n"
    )

    with pytest.raises(ConfigError, match=r"line 6.*'port' appears twice \(first on line 5\)"):
        load_config(path, env={})


def test_a_whole_section_from_one_variable() -> None:
    config = load_config(
        None,
        env={
            "MSSQL2PG__SOURCE": "{url: 'mssql://r@s/shop'}",
            "MSSQL2PG__TARGET__URL": "postgresql://w@pg/dw",
            "MSSQL2PG__TABLES": "*.*",
            "MSSQL2PG__SOURCE__CONNECT_TIMEOUT": "3s",
        },
    )

    assert config.source.redacted_url() == "mssql+pytds://r@s/shop"
    assert config.source.connect_timeout == 3.0
    assert [t.name for t in config.tables] == ["*.*"]


@pytest.mark.parametrize(
    ("section", "where"),
    [
        ({"tables": [{"name": "dbo.orders", "group": "my group"}]}, "tables.0.group"),
        ({"defaults": {"group": "x" * 64}}, "defaults.group"),
        ({"pipeline": {"group": "a/b"}}, "pipeline.group"),
    ],
)
def test_every_group_name_follows_the_rule_of_pipeline_group(
    write_config: WriteConfig, section: dict[str, object], where: str
) -> None:
    """A group named in ``tables`` or ``defaults`` that ``pipeline.group`` could not name would be a group no
    process can be started for: refused where it is written."""
    with pytest.raises(ConfigError, match=rf"{where}.*not a usable group name"):
        load_config(write_config({**MINIMAL, **section}), env={})


@pytest.mark.parametrize(
    ("section", "where"),
    [
        ({"tables": [{"name": "dbo.orders", "group": "auto"}]}, "tables.0.group"),
        ({"defaults": {"group": "auto"}}, "defaults.group"),
    ],
)
def test_auto_is_reserved_for_processes_that_spread_the_groups(
    write_config: WriteConfig, section: dict[str, object], where: str
) -> None:
    """``pipeline.group: auto`` asks a process to take whichever group has no owner; a table group called
    ``auto`` could never be named by a process of its own, so it is refused where it is written."""
    with pytest.raises(ConfigError, match=rf"{where}.*reserved"):
        load_config(write_config({**MINIMAL, **section}), env={})


def test_pipeline_group_auto_is_accepted(write_config: WriteConfig) -> None:
    config = load_config(write_config({**MINIMAL, "pipeline": {"group": "auto"}}), env={})
    assert config.pipeline.group == "auto"
    assert config.pipeline.spreads
