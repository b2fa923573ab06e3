"""The source reader: SQL Server CDC change tables → whole source transactions (see ``reader``).

Modules: ``statements`` (all SQL sent to the source), ``catalog`` (capture instances), ``values`` (driver value →
canonical value), ``reader`` (windows, merge, chunking, polling), ``errors`` (``LsnGapError``).
"""

from mssql2pg.source.catalog import load_capture_instances, select_instances
from mssql2pg.source.errors import LsnGapError
from mssql2pg.source.reader import Reader, ReaderSettings, Window, WindowStatus

__all__ = [
    "LsnGapError",
    "Reader",
    "ReaderSettings",
    "Window",
    "WindowStatus",
    "load_capture_instances",
    "select_instances",
]
