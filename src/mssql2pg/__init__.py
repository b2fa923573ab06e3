"""mssql2pg: replicate SQL Server tables into PostgreSQL from SQL Server's own Change Data Capture.

Only the version and the value types other code needs to name live here; everything else is imported
from its own module.
"""

from mssql2pg.positions import Lsn

__all__ = ["Lsn", "__version__"]
__version__ = "0.1.0"
