"""From the ``tables:`` list to the concrete tables to replicate.

Wildcards can only be expanded against what the source offers, so this runs after connecting: the reader
lists the tables that have CDC enabled, and :func:`resolve_tables` picks from them. The rules:

* entries are taken in config order; the tables a wildcard matches come sorted by schema and name;
* an explicit name claims its table before any wildcard does, so ``["sales.*", {name: sales.big, ...}]``
  gives ``sales.big`` its own options; among wildcards the first match wins;
* an explicit name that matches no CDC-enabled table is an error (listing the ones that are), as is an
  explicit name given twice; a wildcard that matches nothing is fine unless nothing at all is selected;
* every target name must be unique and fit in a PostgreSQL identifier, and no table may land in the control
  schema ``mssql2pg``; where the name is the source's own (tables whose names differ only in case under
  ``naming: lower``, a name longer than 63 bytes), that is not an error here: the pipeline pauses those tables
  and replicates the others (:func:`mssql2pg.pipeline.plan.usable_selections`).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from mssql2pg.config.patterns import TablePattern
from mssql2pg.config.schema import Config, DeleteMode, Naming, OnTargetConflict, Spatial, TableEntry
from mssql2pg.control.statements import CONTROL_SCHEMA
from mssql2pg.errors import ConfigError
from mssql2pg.identifiers import quote_ident
from mssql2pg.model import TableId

log = structlog.get_logger(component="config")
_LISTED = 30  # how many available tables an error message lists


@dataclass(frozen=True, slots=True)
class TableSelection:
    """One source table to replicate, with where it goes and how."""

    source: TableId
    """The source table, spelled as SQL Server spells it."""
    target: TableId
    """The target table, spelled as it is created in PostgreSQL (already lower-cased under naming lower)."""
    delete_mode: DeleteMode
    naming: Naming
    """Also applies to the table's column names."""
    group: str
    entry: str
    """The ``tables:`` entry that selected it (for messages)."""
    spatial: Spatial = "native"
    """How its ``geography``/``geometry`` columns are read (``defaults.spatial``)."""
    on_target_conflict: OnTargetConflict = "source-wins"
    """What a change that meets a row written in the target by someone else does (``defaults.on_target_conflict``)."""


def resolve_tables(config: Config, available: Sequence[TableId]) -> list[TableSelection]:
    """Expand ``config.tables`` against the CDC-enabled ``available`` tables. Raises one :class:`ConfigError`
    listing every problem."""
    problems: list[str] = []
    entries = [(index, entry, entry.pattern) for index, entry in enumerate(config.tables)]
    claimed: dict[TableId, tuple[int, TableEntry]] = {}

    for index, entry, pattern in entries:
        if pattern.is_wildcard:
            continue
        table = _find_explicit(pattern, available, problems)
        if table is None:
            continue
        if table in claimed:
            first = claimed[table][1].name
            problems.append(f"tables.{index}: {table} is listed more than once ({first!r} and {entry.name!r})")
            continue
        claimed[table] = (index, entry)

    for index, entry, pattern in entries:
        if not pattern.is_wildcard:
            continue
        matches = sorted((t for t in available if pattern.matches(t)), key=_sort_key)
        if not matches:
            log.warning("wildcard matches no CDC-enabled table", entry=entry.name)
        for table in matches:
            claimed.setdefault(table, (index, entry))

    if not claimed and not problems:
        problems.append(
            "no table selected: "
            + ", ".join(repr(e.name) for e in config.tables)
            + f" matched none of the CDC-enabled tables{_available(available)}"
        )

    ordered = sorted(claimed.items(), key=lambda item: (item[1][0], _sort_key(item[0])))
    selections = [_select(config, table, entry) for table, (_, entry) in ordered]
    _check_targets(selections, problems)
    if problems:
        count = f"{len(problems)} problem" + ("s" if len(problems) != 1 else "")
        lines = "\n".join(f"  - {p}" for p in problems)
        raise ConfigError(
            f"the 'tables' configuration does not fit the source, {count}:\n{lines}",
            hint="only tables with CDC enabled can be replicated: enable it with sys.sp_cdc_enable_table, "
            "or fix the names in 'tables'",
        )
    return selections


def spatial_wkb_tables(config: Config, tables: Sequence[TableId]) -> frozenset[TableId]:
    """Which of ``tables`` (already selected) read their spatial columns as WKB: the option of the entry that
    selects each one, by the precedence of :func:`resolve_tables` (an explicit entry before wildcards, the
    first matching wildcard otherwise). Every reader of a table (streaming, catch-up, resync) asks this, so a
    table never mixes the two representations."""
    chosen: set[TableId] = set()
    for table in tables:
        entry = _entry_of(config, table)
        if (entry.spatial if entry is not None and entry.spatial else config.defaults.spatial) == "wkb":
            chosen.add(table)
    return frozenset(chosen)


def _entry_of(config: Config, table: TableId) -> TableEntry | None:
    explicit = [e for e in config.tables if not e.pattern.is_wildcard]
    for entry in explicit:
        if entry.pattern.matches_exactly(table):
            return entry
    for entry in explicit:
        if entry.pattern.matches(table):
            return entry
    return next((e for e in config.tables if e.pattern.is_wildcard and e.pattern.matches(table)), None)


def _find_explicit(pattern: TablePattern, available: Sequence[TableId], problems: list[str]) -> TableId | None:
    exact = [t for t in available if pattern.matches_exactly(t)]
    if exact:
        return exact[0]
    loose = [t for t in available if pattern.matches(t)]
    if len(loose) == 1:
        return loose[0]
    if len(loose) > 1:
        names = ", ".join(str(t) for t in sorted(loose))
        problems.append(f"{pattern.text!r} matches several tables that differ only in case ({names}); spell it exactly")
        return None
    wanted = str(pattern.as_table_id())
    close = difflib.get_close_matches(wanted.lower(), [str(t).lower() for t in available], n=1, cutoff=0.6)
    suggestion = ""
    if close:
        original = next(t for t in available if str(t).lower() == close[0])
        suggestion = f"; did you mean '{original}'?"
    problems.append(f"{pattern.text!r} is not a CDC-enabled table in the source{suggestion}{_available(available)}")
    return None


def _available(available: Sequence[TableId]) -> str:
    if not available:
        return " (the source has no CDC-enabled tables at all)"
    names = [str(t) for t in sorted(available, key=_sort_key)]
    shown = ", ".join(names[:_LISTED])
    more = f" and {len(names) - _LISTED} more" if len(names) > _LISTED else ""
    return f" (CDC-enabled tables: {shown}{more})"


def _select(config: Config, table: TableId, entry: TableEntry) -> TableSelection:
    defaults = config.defaults
    naming: Naming = entry.naming or defaults.naming
    if entry.target is not None:
        written = TablePattern.parse(entry.target)
        target_schema = written.schema.literal if "." in _unquoted(entry.target) else None
        target = TableId(target_schema or _default_schema(config, entry, table, naming), written.name.literal)
    else:
        target = TableId(_default_schema(config, entry, table, naming), _cased(table.name, naming))
    return TableSelection(
        source=table,
        target=target,
        delete_mode=entry.delete_mode or defaults.delete_mode,
        naming=naming,
        group=entry.group or defaults.group,
        entry=entry.name,
        spatial=entry.spatial or defaults.spatial,
        on_target_conflict=entry.on_target_conflict or defaults.on_target_conflict,
    )


def _default_schema(config: Config, entry: TableEntry, table: TableId, naming: Naming) -> str:
    explicit = entry.target_schema or config.defaults.target_schema
    return explicit if explicit is not None else _cased(table.schema, naming)


def _unquoted(text: str) -> str:
    """``text`` with quoted parts blanked, to see whether a target names its schema."""
    out: list[str] = []
    close: str | None = None
    for ch in text:
        if close is None and ch in '["':
            close = "]" if ch == "[" else '"'
        elif ch == close:
            close = None
        elif close is None:
            out.append(ch)
    return "".join(out)


def _cased(name: str, naming: Naming) -> str:
    return name.lower() if naming == "lower" else name


def _sort_key(table: TableId) -> tuple[str, str, str, str]:
    return (table.schema.lower(), table.name.lower(), table.schema, table.name)


def _check_targets(selections: Sequence[TableSelection], problems: list[str]) -> None:
    by_target: dict[TableId, list[TableSelection]] = {}
    for selection in selections:
        by_target.setdefault(selection.target, []).append(selection)
        if selection.target.schema == CONTROL_SCHEMA:
            problems.append(
                f"{selection.source} would be replicated into the schema {CONTROL_SCHEMA!r}, which holds "
                "mssql2pg's own control tables; choose another target schema"
            )
        derived = (_cased(selection.source.schema, selection.naming), _cased(selection.source.name, selection.naming))
        for part, own in zip((selection.target.schema, selection.target.name), derived, strict=True):
            if part == own:
                continue  # the source's own name: a table that cannot hold it is paused, not every table stopped
            try:
                quote_ident(part)
            except ValueError as exc:
                problems.append(f"{selection.source}: target name {part!r}: {exc}")
    for target, sources in by_target.items():
        if len(sources) > 1 and len({str(s.source).lower() for s in sources}) > 1:
            names = ", ".join(str(s.source) for s in sources)
            problems.append(
                f"target {target} would receive more than one source table: {names} (give each a different 'target')"
            )
        # names that differ only in case and meet under naming 'lower' are source facts, not a configuration
        # mistake: pipeline.plan.usable_selections pauses those tables and the others replicate (issue 15)


__all__ = ["TableSelection", "resolve_tables"]
