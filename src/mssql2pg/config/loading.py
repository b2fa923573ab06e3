"""Building a :class:`Config` from a YAML file, environment overrides and secret files.

Precedence, lowest to highest: the schema defaults, the YAML file, ``MSSQL2PG__SECTION__KEY`` environment
variables. Secret files (``*_FILE``) are read last, after the layers are merged. Everything that is wrong is
collected and reported in one :class:`~mssql2pg.errors.ConfigError`, so a bad file is fixed in one round.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from mssql2pg.config.schema import REMOVED_KEYS, Config
from mssql2pg.errors import ConfigError
from mssql2pg.redact import redact_text

ENV_PREFIX = "MSSQL2PG__"
_RAW_KEYS = frozenset({"password", "password_file", "url"})  # never YAML-parsed: "yes" stays "yes"
_SECRET_KEYS = frozenset({"password"})
_DATABASE_SECTIONS = ("source", "target")
_HINT = "fix the keys above in the file or with MSSQL2PG__SECTION__KEY variables; see docs/configuration.md"


def load_config(path: str | Path | None, env: Mapping[str, str] = os.environ) -> Config:
    """Read ``path`` (or nothing, when ``None``), apply ``MSSQL2PG__*`` overrides from ``env``, read secret
    files, and validate. Raises one :class:`ConfigError` describing every problem."""
    origin = str(path) if path is not None else "the environment"
    layers = _Layers()
    if path is not None:
        layers.data = _read_yaml(Path(path))
    _apply_env(layers, env)
    problems: list[str] = []
    _read_secret_files(layers, problems)
    try:
        config = Config.model_validate(layers.data)
    except ValidationError as exc:
        problems.extend(_describe(error, layers) for error in exc.errors(include_url=False))
        config = None
    if problems or config is None:
        count = f"{len(problems)} problem" + ("s" if len(problems) != 1 else "")
        lines = "\n".join(f"  - {problem}" for problem in problems)
        raise ConfigError(f"invalid configuration ({origin}), {count}:\n{lines}", hint=_HINT)
    return config


@dataclass
class _Layers:
    data: dict[str, Any] = field(default_factory=dict)
    from_env: dict[tuple[str, ...], str] = field(default_factory=dict)  # key path -> variable name

    def env_var_for(self, loc: tuple[str | int, ...]) -> str | None:
        """The variable that set ``loc`` or one of its parents."""
        for end in range(len(loc), 0, -1):
            var = self.from_env.get(tuple(str(p) for p in loc[:end]))
            if var is not None:
                return var
        return None


# ---------------------------------------------------------------------------------------------- the YAML file


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"configuration file not found: {path}",
            hint="check the path, or leave it out and configure with MSSQL2PG__SECTION__KEY variables",
        ) from None
    except IsADirectoryError:
        raise ConfigError(f"configuration path is a directory, not a file: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc}") from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(
            f"configuration file {path} is not valid YAML{where}: {problem}",
            hint="check indentation and quoting there; values containing ':', '*', '[' or '#' need quotes",
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"configuration file {path} must be a mapping of sections (source:, target:, tables:, ...), "
            f"but its top level is a {_yaml_kind(data)}"
        )
    return data


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping: YAML would silently keep the last
    one, and a setting that is ignored without a word is exactly what validation is for."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str | int | float | bool) and key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping",
                    node.start_mark,
                    f"the key {key!r} appears twice (first on line {seen[key].start_mark.line + 1})",
                    key_node.start_mark,
                )
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


def _yaml_kind(value: object) -> str:
    if isinstance(value, list):
        return "list"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return type(value).__name__


# ----------------------------------------------------------------------------------------- environment overrides


def _apply_env(layers: _Layers, env: Mapping[str, str]) -> None:
    overrides = []
    for name, raw in env.items():
        if not name.upper().startswith(ENV_PREFIX):
            continue
        keys = tuple(part.lower() for part in name[len(ENV_PREFIX) :].split("__"))
        if any(not key for key in keys):
            continue  # MSSQL2PG__ alone or a doubled separator: not a key path
        overrides.append((keys, raw, name))
    # Parents before children, so MSSQL2PG__HTTP='{port: 1}' then MSSQL2PG__HTTP__HOST both apply.
    for keys, raw, name in sorted(overrides, key=lambda o: (len(o[0]), o[0])):
        _set(layers.data, keys, _env_value(keys[-1], raw))
        layers.from_env[keys] = name
        _forget_file_sibling_secret(layers, keys)


def _env_value(key: str, raw: str) -> Any:
    """YAML scalar parsing, so ``9400`` is an int and ``[a, b]`` a list, with surprises removed."""
    if key in _RAW_KEYS:
        return raw
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw  # e.g. "*.*" (an alias in YAML): the plain text is what was meant
    if isinstance(value, bool) and raw.strip().lower() not in {"true", "false"}:
        return raw  # YAML 1.1 reads yes/no/on/off as booleans; only true/false mean that here
    if value is None and raw.strip() == "":
        return None
    return value


def _set(data: dict[str, Any], keys: tuple[str, ...], value: Any) -> None:
    node = data
    for key in keys[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[keys[-1]] = value


def _forget_file_sibling_secret(layers: _Layers, keys: tuple[str, ...]) -> None:
    """An environment ``password`` beats a file ``password_file`` and vice versa: the environment wins."""
    if len(keys) != 2 or keys[1] not in {"password", "password_file"}:
        return
    sibling = "password_file" if keys[1] == "password" else "password"
    section = layers.data.get(keys[0])
    if isinstance(section, dict) and sibling in section and (keys[0], sibling) not in layers.from_env:
        del section[sibling]


# ------------------------------------------------------------------------------------------------ secret files


def _read_secret_files(layers: _Layers, problems: list[str]) -> None:
    for name in _DATABASE_SECTIONS:
        section = layers.data.get(name)
        if not isinstance(section, dict) or section.get("password_file") in (None, ""):
            continue
        where = _origin_note(layers, (name, "password_file"))
        if section.get("password") is not None:
            problems.append(
                f"{name}: both 'password' and 'password_file' are set{where}; keep one "
                "(the environment wins over the file, but here both come from the same place)"
            )
            continue
        secret_path = Path(str(section["password_file"]))
        try:
            content = secret_path.read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            problems.append(f"{name}.password_file: cannot read {secret_path}: {reason}{where}")
            continue
        secret = _strip_one_newline(content)
        if secret == "":
            problems.append(f"{name}.password_file: {secret_path} is empty{where}")
            continue
        section["password"] = secret


def _strip_one_newline(text: str) -> str:
    if text.endswith("\r\n"):
        return text[:-2]
    if text.endswith("\n"):
        return text[:-1]
    return text


# ------------------------------------------------------------------------------------------------- the message


def _describe(error: ErrorDetails, layers: _Layers) -> str:
    loc = tuple(error["loc"])
    path = ".".join(str(part) for part in loc) or "(top level)"
    where = _origin_note(layers, loc)
    kind = error["type"]
    if kind == "extra_forbidden":
        removed = REMOVED_KEYS.get(_dotted(loc))
        return (f"{path}: {removed}" if removed else _unknown_key(loc, layers)) + where
    if kind == "missing":
        return _missing(loc, path)
    message = error["msg"].removeprefix("Value error, ")
    if kind in {"model_type", "dict_type"}:
        wanted = "a table name or a mapping with 'name'" if loc[:1] == ("tables",) else "a mapping of keys (a section)"
        message = f"expected {wanted}, got a {_yaml_kind(error['input'])}"
    given = _given(loc, error.get("input"))
    if message.startswith("Input should be ") and given:
        return f"{path}: got {given}, expected {message.removeprefix('Input should be ')}{where}"
    shown = f" (given: {given})" if given and given not in message else ""
    return f"{path}: {message}{shown}{where}"


def _dotted(loc: tuple[str | int, ...]) -> str:
    """A location as the reference spells it: ``apply.staging``, ``tables[].name`` (not ``tables.0.name``)."""
    parts: list[str] = []
    for part in loc:
        if isinstance(part, int):
            parts[-1:] = [f"{parts[-1]}[]"] if parts else []
        else:
            parts.append(part)
    return ".".join(parts)


def _missing(loc: tuple[str | int, ...], path: str) -> str:
    section = _model_at(Config, loc)
    if section is None:
        env_name = ENV_PREFIX + "__".join(str(p).upper() for p in loc)
        return f"{path}: required but missing (set it in the file, or with {env_name})"
    required = [name for name, info in section.model_fields.items() if info.is_required()]
    env_names = ", ".join(ENV_PREFIX + "__".join(str(p).upper() for p in (*loc, key)) for key in required)
    return f"{path}: required section missing (needs {', '.join(required)}; in the file, or with {env_names})"


def _given(loc: tuple[str | int, ...], value: object) -> str:
    """The offending value, shown so the reader can find it; never a secret, never a whole section."""
    if isinstance(value, dict | list):
        return ""
    if any(part in _SECRET_KEYS for part in loc):
        return "***"
    return redact_text(repr(value))


def _origin_note(layers: _Layers, loc: tuple[str | int, ...]) -> str:
    var = layers.env_var_for(loc)
    return f" [from {var}]" if var else ""


def _unknown_key(loc: tuple[str | int, ...], layers: _Layers) -> str:
    key = str(loc[-1])
    parent = loc[:-1]
    model = _model_at(Config, parent)
    valid = sorted(model.model_fields) if model is not None else []
    if not parent:
        where = "at the top level"
    elif isinstance(parent[-1], int):
        where = f"in '{'.'.join(str(p) for p in parent)}'"
    else:
        where = f"in section '{'.'.join(str(p) for p in parent)}'"
    text = f"unknown key '{key}' {where}"
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    if close:
        text += f"; did you mean '{close[0]}'?"
    if valid:
        text += f" (valid keys: {', '.join(valid)})"
    return text


def _model_at(model: type[BaseModel], loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The section model at ``loc`` (list indexes skipped), for listing its valid keys."""
    current: type[BaseModel] | None = model
    for part in loc:
        if current is None:
            return None
        if isinstance(part, int):
            continue
        info = current.model_fields.get(part)
        if info is None:
            return None
        current = _model_in(info.annotation)
    return current


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


__all__ = ["ENV_PREFIX", "load_config"]
