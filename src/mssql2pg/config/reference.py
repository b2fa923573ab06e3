"""The configuration reference table, rendered from the schema's field docstrings.

``docs/configuration.md`` embeds the output between markers; ``tests/unit/config/test_docs.py`` fails when
the two differ, so a key cannot be added, renamed or re-defaulted without the documentation following.
Regenerate with ``python -m mssql2pg.config.reference --write docs/configuration.md``.
"""

from __future__ import annotations

import re
import sys
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, BeforeValidator, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from mssql2pg.config.durations import format_duration, parse_duration
from mssql2pg.config.loading import ENV_PREFIX
from mssql2pg.config.schema import REMOVED_KEYS, Config, TableEntry

BEGIN = "<!-- BEGIN GENERATED: configuration reference (python -m mssql2pg.config.reference --write) -->"
END = "<!-- END GENERATED: configuration reference -->"


@dataclass(frozen=True)
class DocumentedKey:
    """One key of the reference: ``section`` is ``None`` for a top-level key, ``tables[]`` for a key of a
    ``tables`` entry; ``model`` is the class that declares it (for code that checks how the key is used)."""

    section: str | None
    name: str
    model: type[BaseModel]
    info: FieldInfo

    @property
    def dotted(self) -> str:
        """As the reference and error messages spell it: ``apply.max_batch_rows``, ``tables[].name``."""
        return self.name if self.section is None else f"{self.section}.{self.name}"

    @property
    def env_path(self) -> tuple[str, ...] | None:
        """The parts of its ``MSSQL2PG__...`` variable; ``None`` for keys of list entries (no variable)."""
        if self.section is None:
            return (self.name,)
        return None if self.section.endswith("[]") else (self.section, self.name)


def documented_keys() -> list[DocumentedKey]:
    """Every key, in reference order: each section's keys, then the top-level keys. The one walk of the
    schema; the rendering below and the tests that hold code and documents to the schema all use it."""
    keys: list[DocumentedKey] = []
    top_level: list[DocumentedKey] = []
    for name, info in Config.model_fields.items():
        section = _section_model(info.annotation)
        if section is None:
            top_level.append(DocumentedKey(None, name, Config, info))
            continue
        prefix = f"{name}[]" if section is TableEntry else name
        keys += [DocumentedKey(prefix, key, section, sub) for key, sub in section.model_fields.items()]
    return keys + top_level


def render_reference() -> str:
    """Markdown: one table per section, a row per key with type, default, environment variable and meaning."""
    out: list[str] = []
    keys = documented_keys()
    for name, info in Config.model_fields.items():
        section = _section_model(info.annotation)
        if section is None:
            continue
        out += [f"### `{name}`", "", _clean(info.description or ""), ""]
        if section is TableEntry:
            out += [
                "A list; each entry is a string (the `name`) or a mapping with these keys. From the environment: "
                f"`{ENV_PREFIX}TABLES` as a YAML list or a comma-separated string.",
                "",
            ]
        out += _table([k for k in keys if k.section is not None and k.section.removesuffix("[]") == name])
    out += ["### Top-level keys", ""]
    out += _table([k for k in keys if k.section is None])
    out += [
        "### Removed keys",
        "",
        "Keys of earlier versions. A configuration that still sets one is refused with this message.",
        "",
    ]
    out += ["| Key | Message |", "|---|---|"]
    out += [f"| `{key}` | {_clean(message)} |" for key, message in REMOVED_KEYS.items()]
    return "\n".join(out).rstrip() + "\n"


def _table(keys: list[DocumentedKey]) -> list[str]:
    lines = ["| Key | Type | Default | Environment | Meaning |", "|---|---|---|---|---|"]
    for key in keys:
        env = f"`{ENV_PREFIX}{'__'.join(p.upper() for p in key.env_path)}`" if key.env_path else "—"
        meaning = _clean(key.info.description or "")
        lines.append(f"| `{key.dotted}` | {_type(key.info)} | {_default(key.info)} | {env} | {meaning} |")
    return [*lines, ""]


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().replace("``", "`").replace("|", "\\|")


def _is_duration(info: FieldInfo) -> bool:
    return any(isinstance(m, BeforeValidator) and m.func is parse_duration for m in info.metadata)


def _type(info: FieldInfo) -> str:
    text = "duration" if _is_duration(info) else _type_name(info.annotation)
    bounds = []
    for meta in info.metadata:
        for attr, symbol in (("gt", ">"), ("ge", "≥"), ("lt", "<"), ("le", "≤")):
            value = getattr(meta, attr, None)
            if value is not None and not callable(meta):
                bounds.append(f"{symbol} {format_duration(value) if _is_duration(info) else value}")
        if isinstance(getattr(meta, "min_length", None), int):
            bounds.append(f"at least {meta.min_length}")
    return text + (f" ({', '.join(bounds)})" if bounds else "")


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if origin is Literal:
        return " \\| ".join(f"`{a}`" for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type_name(a) for a in args)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin in (list, tuple):
        return "list"
    names = {str: "string", int: "integer", float: "number", bool: "boolean", SecretStr: "secret", Path: "path"}
    if isinstance(annotation, type) and annotation in names:
        return names[annotation]
    return getattr(annotation, "__name__", str(annotation))


def _default(info: FieldInfo) -> str:
    default = info.default
    if default is PydanticUndefined:
        return "**required**"
    if default is None:
        return "unset"
    if _is_duration(info):
        text = format_duration(float(default))
    elif isinstance(default, bool):
        text = str(default).lower()
    elif isinstance(default, str):
        text = f'"{default}"'
    else:
        text = str(default)
    return f"`{text}`"


def _section_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _section_model(arg)
        if found is not None:
            return found
    return None


def embed(document: str) -> str:
    """``document`` with the text between the markers replaced by the current reference."""
    start, end = document.index(BEGIN) + len(BEGIN), document.index(END)
    return document[:start] + "\n\n" + render_reference() + "\n" + document[end:]


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "--write":
        path = Path(argv[1])
        path.write_text(embed(path.read_text(encoding="utf-8")), encoding="utf-8")
        return 0
    sys.stdout.write(render_reference())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
