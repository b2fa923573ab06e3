"""Which metric names a PromQL expression reads: enough of PromQL for our rules and dashboards.

No Python PromQL parser is available under our licence rules, so this strips what cannot be a metric name
(strings, label matchers, range selectors, grouping clauses, function calls, keywords, numbers) and keeps the
remaining identifiers. ``promtool check rules`` separately proves the expressions parse.
"""

from __future__ import annotations

import re

_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "or", "and", "unless", "bool", "offset"}
)
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_STRINGS = re.compile(r"\"(?:\\.|[^\"\\])*\"|'(?:\\.|[^'\\])*'|`[^`]*`")
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_IDENT = re.compile(r"(?<![\w:.])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])(?!\s*\()")
_DURATION_OR_NUMBER = re.compile(r"^(?:\d.*|inf|nan|Inf|NaN)$")


def metric_names(expr: str) -> set[str]:
    text = _STRINGS.sub(" ", expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGES.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    text = re.sub(r"\b\d+(?:\.\d+)?(?:e[+-]?\d+)?\b", " ", text)
    names = set()
    for match in _IDENT.finditer(text):
        word = match.group(1)
        if word in _KEYWORDS or _DURATION_OR_NUMBER.match(word):
            continue
        names.add(word)
    return names
