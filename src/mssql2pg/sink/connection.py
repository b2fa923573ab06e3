"""Turning a target URL into the ``connect`` callable the :class:`~mssql2pg.sink.applier.Applier` takes.

The applier talks to pg8000's native API directly (COPY streaming, one connection it owns), so it needs a
factory rather than an SQLAlchemy engine. The URL is parsed with SQLAlchemy's URL parser so that both
``postgresql://`` and ``postgresql+pg8000://`` spellings, percent-encoded passwords and query options work the
same way everywhere in mssql2pg.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any

import pg8000.native
from sqlalchemy.engine import make_url

from mssql2pg.errors import ConfigError

APPLICATION_NAME = "mssql2pg-applier"
_SSL_MODES = {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}


def connector_from_url(url: str, *, timeout: float = 30.0) -> Callable[[], pg8000.native.Connection]:
    """A function that opens a new pg8000 native connection to ``url`` each time it is called.

    Supported query option: ``sslmode`` (``disable``/``prefer`` plain, ``require`` TLS without verification,
    ``verify-ca``/``verify-full`` TLS with the system trust store).
    """
    parsed = make_url(url)
    if parsed.get_backend_name() not in ("postgresql", "postgres"):
        msg = f"the target URL must be a postgresql:// URL, got {parsed.get_backend_name()}://"
        raise ConfigError(msg, hint="write it as postgresql://user:password@host:5432/database")
    if not parsed.database:
        msg = "the target URL names no database"
        raise ConfigError(msg, hint="append /<database> to the target URL")
    sslmode = str(parsed.query.get("sslmode", "prefer"))
    if sslmode not in _SSL_MODES:
        msg = f"unknown sslmode {sslmode!r} in the target URL"
        raise ConfigError(msg, hint=f"use one of {sorted(_SSL_MODES)}")
    kwargs: dict[str, Any] = {
        "user": parsed.username or "postgres",
        "password": parsed.password,
        "host": parsed.host or "127.0.0.1",
        "port": parsed.port or 5432,
        "database": parsed.database,
        "application_name": APPLICATION_NAME,
        "timeout": timeout,
    }
    if sslmode in ("require", "verify-ca", "verify-full"):
        context = ssl.create_default_context()
        if sslmode == "require":
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        elif sslmode == "verify-ca":
            context.check_hostname = False
        kwargs["ssl_context"] = context

    def connect() -> pg8000.native.Connection:
        return pg8000.native.Connection(**kwargs)

    return connect
