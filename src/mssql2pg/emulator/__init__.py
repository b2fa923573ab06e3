"""A SQL Server CDC emulator hosted in PostgreSQL (see docs/emulator.md).

``install(url)`` puts SQL Server's CDC surface into a PostgreSQL database: schemas ``cdc`` and ``sys``, the
catalog tables with SQL Server's column names and order, ``cdc.<ci>_CT`` change tables, the ``sys.sp_cdc_*``
procedures and ``sys.fn_cdc_*`` / ``cdc.fn_cdc_get_*_changes_<ci>`` functions with T-SQL names and parameter
names. Capture is done by triggers; commit LSNs are assigned at commit under a lock, so commit order equals
LSN order. ``scan(url)`` runs one capture scan (agent mode); :mod:`mssql2pg.emulator.agent` loops it.
"""

from mssql2pg.emulator.install import connect, install, scan, set_capture_mode, set_clock_offset

__all__ = ["connect", "install", "scan", "set_capture_mode", "set_clock_offset"]
