"""Configuration: one YAML file plus ``MSSQL2PG__SECTION__KEY`` environment overrides and secret files,
validated at start-up (:func:`load_config`), and the table selection it implies (:func:`resolve_tables`).

See ``docs/configuration.md`` for every key, its default and its meaning.
"""

from __future__ import annotations

from mssql2pg.config.durations import Duration, format_duration, parse_duration
from mssql2pg.config.loading import ENV_PREFIX, load_config
from mssql2pg.config.schema import (
    ApplySettings,
    Config,
    DatabaseConfig,
    Defaults,
    DeleteMode,
    HttpSettings,
    LogSettings,
    Naming,
    PipelineSettings,
    ReaderSettings,
    RetrySettings,
    SnapshotSettings,
    SourceConfig,
    TableEntry,
    TargetConfig,
)
from mssql2pg.config.tables import TableSelection, resolve_tables, spatial_wkb_tables

__all__ = [
    "ENV_PREFIX",
    "ApplySettings",
    "Config",
    "DatabaseConfig",
    "Defaults",
    "DeleteMode",
    "Duration",
    "HttpSettings",
    "LogSettings",
    "Naming",
    "PipelineSettings",
    "ReaderSettings",
    "RetrySettings",
    "SnapshotSettings",
    "SourceConfig",
    "TableEntry",
    "TableSelection",
    "TargetConfig",
    "format_duration",
    "load_config",
    "parse_duration",
    "resolve_tables",
    "spatial_wkb_tables",
]
