"""A key that was removed is refused with a message that says so, not as an unknown key."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from mssql2pg.config import load_config
from mssql2pg.config.reference import documented_keys, render_reference
from mssql2pg.config.schema import REMOVED_KEYS
from mssql2pg.errors import ConfigError
from tests.unit.config.conftest import MINIMAL

WriteConfig = Callable[[object], Path]


def _problems(caught: pytest.ExceptionInfo[ConfigError]) -> list[str]:
    return [line.removeprefix("  - ") for line in str(caught.value).splitlines() if line.startswith("  - ")]


def test_an_old_file_with_apply_staging_gets_one_line_naming_the_key(write_config: WriteConfig) -> None:
    path = write_config({**MINIMAL, "apply": {"staging": "temp", "max_batch_rows": 10}})

    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})

    problems = _problems(caught)
    assert len(problems) == 1, problems
    assert problems[0].startswith("apply.staging: removed")
    assert "delete the key" in problems[0]
    assert "unknown key" not in problems[0]


def test_a_removed_key_set_from_the_environment_names_the_variable() -> None:
    env = {
        "MSSQL2PG__SOURCE__URL": "mssql://r@s/shop",
        "MSSQL2PG__TARGET__URL": "postgresql://w@pg/dw",
        "MSSQL2PG__TABLES": "dbo.a",
        "MSSQL2PG__APPLY__STAGING": "unlogged",
    }

    with pytest.raises(ConfigError) as caught:
        load_config(None, env=env)

    (problem,) = _problems(caught)
    assert problem.startswith("apply.staging: removed")
    assert problem.endswith("[from MSSQL2PG__APPLY__STAGING]")


def test_a_removed_key_is_not_a_documented_key() -> None:
    live = {key.dotted for key in documented_keys()}

    assert not live & set(REMOVED_KEYS)


def test_the_reference_lists_the_removed_keys_with_what_to_do() -> None:
    reference = render_reference()

    for key, remedy in REMOVED_KEYS.items():
        row = next((line for line in reference.splitlines() if line.startswith(f"| `{key}` |")), None)
        assert row is not None, f"{key} missing from the removed keys in the reference"
        assert remedy.replace("``", "`") in row
