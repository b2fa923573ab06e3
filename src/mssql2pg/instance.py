"""Who this process is, as other processes and the servers see it: ``host:pid``.

It tells spreading processes apart (:mod:`mssql2pg.pipeline.spreading`) and is in the ``application_name`` of
every session mssql2pg opens on the target, so ``mssql2pg status`` and ``pg_stat_activity`` show which process
writes which table group.
"""

from __future__ import annotations

import os
import socket

APPLICATION = "mssql2pg"


def this_instance() -> str:
    """``host:pid`` of this process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def application_name() -> str:
    """``mssql2pg host:pid``, cut to the 63 bytes PostgreSQL keeps."""
    return f"{APPLICATION} {this_instance()}".encode()[:63].decode(errors="ignore")
