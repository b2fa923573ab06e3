"""The documentation and the examples cannot drift from the schema."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from mssql2pg.config import Config, load_config
from mssql2pg.config.reference import documented_keys, embed, render_reference

ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "configuration.md"
EXAMPLES = ROOT / "examples"


def _all_keys() -> list[str]:
    return [key.dotted for key in documented_keys()]


def test_reference_in_the_docs_is_current() -> None:
    document = DOC.read_text(encoding="utf-8")

    assert embed(document) == document, (
        "docs/configuration.md is out of date: run python -m mssql2pg.config.reference --write docs/configuration.md"
    )


def test_reference_lists_every_key_with_a_default_and_a_meaning() -> None:
    reference = render_reference()

    for key in _all_keys():
        row = next((line for line in reference.splitlines() if line.startswith(f"| `{key}` |")), None)
        assert row is not None, f"{key} missing from the reference"
        cells = [c.strip() for c in row.strip("|").split(" | ")]
        assert cells[2], f"{key} has no default column"
        assert len(cells[4]) > 10, f"{key} has no meaning (add a docstring to the field)"


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_examples_load(example: str, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("pw\n", encoding="utf-8")
    text = (EXAMPLES / example).read_text(encoding="utf-8").replace("/run/secrets/mssql_password", str(secret))
    text = text.replace("/run/secrets/pg_password", str(secret))
    path = tmp_path / example
    path.write_text(text, encoding="utf-8")

    config = load_config(path, env={})

    assert config.tables


def test_full_example_sets_every_key_that_has_a_default() -> None:
    text = (EXAMPLES / "full.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)

    for key in _all_keys():
        parts = key.split(".")
        if parts[0] == "tables[]":
            assert any(parts[1] in entry for entry in data["tables"] if isinstance(entry, dict)), key
            continue
        mentioned = re.search(rf"^\s*#?\s*{re.escape(parts[-1])}:", text, re.MULTILINE)
        assert mentioned, f"examples/full.yaml does not mention {key}"


def test_full_example_values_are_the_defaults() -> None:
    data = yaml.safe_load((EXAMPLES / "full.yaml").read_text(encoding="utf-8"))
    defaults = Config.model_validate({"source": {"url": "mssql://u@h/d"}, "target": {"url": "postgresql://u@h/d"},
                                      "tables": ["a"]})  # fmt: skip
    full = Config.model_validate({**data, "source": {"url": "mssql://u@h/d"}, "target": {"url": "postgresql://u@h/d"}})

    for section in ("defaults", "pipeline", "reader", "apply", "retry", "http", "log", "stale_after", "clock_skew"):
        assert getattr(full, section) == getattr(defaults, section), section
