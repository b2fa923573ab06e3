"""The prose, not only the generated reference: every key, variable and YAML snippet a document shows works.

The reference table is generated and checked by ``test_docs.py``; the text around it, the README, the other
guides and the Compose files are written by hand and can keep a key that was renamed or removed. Here every
backticked ``section.key`` (and ``section.key: value``), every ``MSSQL2PG__...`` variable (and
``MSSQL2PG__...=value``) and every ```` ```yaml ```` block is held against the schema by loading it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from mssql2pg.config import ENV_PREFIX, Config, load_config
from mssql2pg.config.reference import BEGIN, END, documented_keys
from tests.unit.config.conftest import MINIMAL

ROOT = Path(__file__).resolve().parents[3]
PROSE = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
CONFIG_FILES = [*sorted((ROOT / "examples").glob("*.yaml")), ROOT / "compose" / "compose.yaml"]

SECTIONS = [name for name in Config.model_fields if name not in {k.name for k in documented_keys() if not k.section}]
TOP_LEVEL = [k.name for k in documented_keys() if k.section is None]
_DOTTED = re.compile(
    rf"`((?:{'|'.join(SECTIONS)})(?:\[\])?\.[a-z_]+)(?::\s*([^`]+))?`"
)  # `apply.max_batch_rows` or `log.format: json`
_FILE_NAME = re.compile(r"\.(py|ya?ml|md|sql|sh|json|toml)$")  # `pipeline.yaml`, `retry.py`: files, not keys
_VARIABLE = re.compile(rf"{ENV_PREFIX}([A-Z][A-Z0-9_]*[A-Z0-9])(?:=('[^']*'|\"[^\"]*\"|[^\s`|)]+))?")
_PLACEHOLDER = "SECTION"  # MSSQL2PG__SECTION__KEY=value explains the scheme
_YAML_BLOCK = re.compile(r"^```yaml\n(.*?)^```", re.MULTILINE | re.DOTALL)
MINIMAL_ENV = {f"{ENV_PREFIX}{section.upper()}": json.dumps(value) for section, value in MINIMAL.items()}
"""The minimal configuration as whole-section variables (JSON is a YAML flow value)."""


def _prose(path: Path) -> str:
    """The hand-written text: the generated reference (checked elsewhere; it lists removed keys) left out."""
    text = path.read_text(encoding="utf-8")
    if BEGIN in text:
        text = text[: text.index(BEGIN)] + text[text.index(END) :]
    return text


def _name(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _dotted_keys(path: Path) -> list[tuple[str, str | None]]:
    return [(m[1], m[2]) for m in _DOTTED.finditer(_prose(path)) if not _FILE_NAME.search(m[1])]


def _variables(path: Path) -> list[tuple[str, str | None]]:
    found = [(m[1], m[2]) for m in _VARIABLE.finditer(_prose(path))]
    return [(name, value) for name, value in found if _PLACEHOLDER not in name.split("__")]


def _load_with(data: dict[str, Any], tmp_path: Path) -> Config:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return load_config(path, env={})


def test_the_documents_are_found() -> None:
    assert any(_dotted_keys(path) for path in PROSE)
    assert any(_variables(path) for path in PROSE)
    assert any(_YAML_BLOCK.search(_prose(path)) for path in PROSE)


@pytest.mark.parametrize("path", PROSE, ids=_name)
def test_every_dotted_key_in_the_prose_is_a_key(path: Path) -> None:
    keys = {key.dotted for key in documented_keys()}

    unknown = sorted({key for key, _ in _dotted_keys(path) if key not in keys})

    assert not unknown, f"{_name(path)} names keys the configuration does not have: {', '.join(unknown)}"


@pytest.mark.parametrize("path", PROSE, ids=_name)
def test_every_key_value_in_the_prose_loads(path: Path, tmp_path: Path) -> None:
    for key, value in _dotted_keys(path):
        if value is None or "[]" in key:
            continue
        section, name = key.split(".")

        within = MINIMAL.get(section)  # target.protect: true keeps the minimal target's url
        config = _load_with(
            {**MINIMAL, section: {**(within if isinstance(within, dict) else {}), name: yaml.safe_load(value)}},
            tmp_path,
        )

        assert getattr(getattr(config, section), name) is not None, key


@pytest.mark.parametrize("path", PROSE + CONFIG_FILES, ids=_name)
def test_every_variable_in_the_documents_names_a_key(path: Path) -> None:
    keys = {key.env_path for key in documented_keys() if key.env_path} | {(s,) for s in SECTIONS}

    unknown = sorted({name for name, _ in _variables(path) if tuple(name.lower().split("__")) not in keys})

    assert not unknown, f"{_name(path)} names variables that set no key: {', '.join(ENV_PREFIX + n for n in unknown)}"


@pytest.mark.parametrize("path", PROSE + CONFIG_FILES, ids=_name)
def test_every_variable_setting_in_the_documents_loads(path: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("pw\n", encoding="utf-8")
    for name, value in _variables(path):
        if value is None:
            continue
        shown = value.strip("'\"")
        given = str(secret) if name.endswith("PASSWORD_FILE") else shown  # the path of a secret that exists here

        config = load_config(None, env={**MINIMAL_ENV, f"{ENV_PREFIX}{name}": given})

        assert config.tables, f"{ENV_PREFIX}{name}={shown}"


@pytest.mark.parametrize("path", PROSE, ids=_name)
def test_every_yaml_block_in_the_prose_loads(path: Path, tmp_path: Path) -> None:
    for block in _YAML_BLOCK.findall(_prose(path)):
        data = yaml.safe_load(block)
        if not isinstance(data, dict) or not set(data) & set(Config.model_fields):
            continue  # not a configuration (a Compose or Prometheus snippet)

        config = _load_with({**MINIMAL, **data}, tmp_path)

        assert config.tables
