"""The PostgreSQL sink: type mapping, target tables and the transaction-atomic applier (the control schema it
writes its checkpoints and dead letters to is :mod:`mssql2pg.control`).

Public API (everything else is internal):

* :func:`mssql2pg.sink.schema.build_target_table` + :class:`mssql2pg.sink.schema.TableOptions` → a
  :class:`mssql2pg.sink.schema.TargetTable` describing where and how one source table lands, fed by each of
  its capture instances through an encoder of its own (:mod:`mssql2pg.sink.encoders`);
* :class:`mssql2pg.sink.applier.Applier` with :class:`mssql2pg.sink.applier.ApplySettings`: ``start()`` (DDL,
  returns the checkpoint), ``offer(item)``, ``tick()``, ``flush()``, ``abandon()``, ``close()``, ``stats``, and
  between source transactions ``apply_plan(tables)`` / ``add_table`` / ``retire_table`` / ``add_instance`` /
  ``retire_instance``;
* :class:`mssql2pg.sink.errors.UnknownCaptureInstanceError`: a change of an applied table from a capture
  instance the plan does not have (that table pauses);
* :class:`mssql2pg.sink.types.UnstorableValueError`: a row PostgreSQL cannot hold (names table, column, row).

The ``connect`` factory the applier takes comes from :func:`mssql2pg.pipeline.connections.target_connector`.
"""

from mssql2pg.sink.applier import Applier, ApplySettings, ApplyStats
from mssql2pg.sink.schema import TableOptions, TargetTable, build_target_table
from mssql2pg.sink.types import UnstorableValueError, UnsupportedTypeError

__all__ = [
    "Applier",
    "ApplySettings",
    "ApplyStats",
    "TableOptions",
    "TargetTable",
    "UnstorableValueError",
    "UnsupportedTypeError",
    "build_target_table",
]
