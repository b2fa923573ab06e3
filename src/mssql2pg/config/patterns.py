"""Table name patterns from the ``tables:`` list: ``dbo.orders``, ``sales.*``, ``*.*``, ``[dbo].[Order Lines]``.

A name is ``schema.table`` (a bare ``table`` means ``dbo.table``, as in SQL Server). Each part may be quoted
with ``[...]`` or ``"..."`` so that names with dots, spaces or wildcard characters can be written; inside quotes
``*`` and ``?`` are ordinary characters. Outside quotes ``*`` matches any run of characters and ``?`` one
character. Matching ignores case, because SQL Server's default collations do; an explicit name that matches
one table exactly (same case) is preferred over case-insensitive matches.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mssql2pg.model import TableId

DEFAULT_SCHEMA = "dbo"


@dataclass(frozen=True, slots=True)
class NamePattern:
    """One part (schema or table) of a pattern."""

    literal: str  # the part with quotes removed; for a wildcard part, its text
    regex: re.Pattern[str]
    is_wildcard: bool

    def matches(self, name: str) -> bool:
        return self.regex.fullmatch(name) is not None


@dataclass(frozen=True, slots=True)
class TablePattern:
    """A parsed entry of ``tables:``."""

    text: str
    schema: NamePattern
    name: NamePattern

    @classmethod
    def parse(cls, text: str) -> TablePattern:
        """Parse a table name or wildcard; ``ValueError`` with the reason when it is not one."""
        parts = _split(text)
        if len(parts) == 1:
            parts = [[(DEFAULT_SCHEMA, True)], parts[0]]
        return cls(text.strip(), _compile(parts[0]), _compile(parts[1]))

    @property
    def is_wildcard(self) -> bool:
        return self.schema.is_wildcard or self.name.is_wildcard

    def matches(self, table: TableId) -> bool:
        """Case-insensitive match (the rule for wildcards and the fallback for explicit names)."""
        return self.schema.matches(table.schema) and self.name.matches(table.name)

    def matches_exactly(self, table: TableId) -> bool:
        """Same spelling, same case (explicit names only)."""
        return table.schema == self.schema.literal and table.name == self.name.literal

    def as_table_id(self) -> TableId:
        """The table an explicit (non-wildcard) pattern names, spelled as written."""
        return TableId(self.schema.literal, self.name.literal)

    def __str__(self) -> str:
        return self.text


Segment = tuple[str, bool]  # (text, quoted)


def _split(text: str) -> list[list[Segment]]:
    """Split on unquoted dots into parts; each part is a list of quoted/unquoted segments."""
    parts: list[list[Segment]] = [[]]
    buf: list[str] = []
    stripped = text.strip()
    i, n = 0, len(stripped)

    def flush(quoted: bool) -> None:
        if buf:
            parts[-1].append(("".join(buf), quoted))
            buf.clear()

    while i < n:
        ch = stripped[i]
        if ch in '["':
            flush(quoted=False)
            close = "]" if ch == "[" else '"'
            i += 1
            while True:
                if i >= n:
                    msg = f"unterminated quoted name in {text!r} (a '{ch}' is never closed)"
                    raise ValueError(msg)
                if stripped[i] == close:
                    if i + 1 < n and stripped[i + 1] == close:
                        buf.append(close)
                        i += 2
                        continue
                    break
                buf.append(stripped[i])
                i += 1
            if not buf:
                msg = f"empty quoted name in {text!r}"
                raise ValueError(msg)
            flush(quoted=True)
            i += 1
        elif ch == ".":
            flush(quoted=False)
            parts.append([])
            i += 1
        else:
            buf.append(ch)
            i += 1
    flush(quoted=False)
    if len(parts) > 2 or any(not part for part in parts):
        msg = f"not a table name: {text!r} (expected schema.table, e.g. dbo.orders, sales.* or [dbo].[Order Lines])"
        raise ValueError(msg)
    return parts


def _compile(segments: list[Segment]) -> NamePattern:
    regex: list[str] = []
    literal: list[str] = []
    wildcard = False
    for text, quoted in segments:
        literal.append(text)
        if quoted:
            regex.append(re.escape(text))
            continue
        for ch in text:
            if ch == "*":
                regex.append(".*")
                wildcard = True
            elif ch == "?":
                regex.append(".")
                wildcard = True
            else:
                regex.append(re.escape(ch))
    return NamePattern("".join(literal), re.compile("".join(regex), re.IGNORECASE | re.DOTALL), wildcard)
