"""How a failed command is told: one line on stderr saying what went wrong, with which database, and what to
do; and the exit code. :mod:`mssql2pg.cli` catches every command's exceptions in one place and asks
:func:`explain`.

One line, because a log collector (journald, Kubernetes, Docker) keeps each line as an entry of its own, and a
person reads the last line first. Never a traceback for a failure the user can fix: a database that is down,
a wrong password, a configuration mistake. An error nobody foresaw is a bug: it also ends in one line, and
the caller logs its stack trace through the redacting logger for the bug report.

Which database failed: driver errors are classified by :func:`mssql2pg.classify.classify`, and the side is
told by how it was reached. The source is only ever reached through the SQLAlchemy engine (SQL Server with
python-tds, or the emulator with pg8000), the target only through pg8000's native API: so an error SQLAlchemy
wrapped, or a python-tds error, is the source's, and a bare pg8000 error is the target's. A TLS failure is
told by its library (:func:`mssql2pg.classify.tls_failure_side`): pyOpenSSL is the source's, ``ssl`` the
target's. An error that lost its driver exception on the way (one sent by the reader process) names every
database of the command.

Exit codes: 2 when the set-up is at fault (configuration, connection, login; the line says what to change),
1 for a fault while working (a terminal error, a refused statement, a bug).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import sqlalchemy.exc

from mssql2pg.classify import ClassifiedError, classify, classify_mssql, classify_postgres, tls_failure_side
from mssql2pg.cli.options import Database
from mssql2pg.errors import Mssql2pgError, TerminalError
from mssql2pg.redact import redact_text

SET_UP = 2
"""Exit code: the configuration, a connection or a login is wrong; the line says what to change."""
FAULT = 1
"""Exit code: a fault while working (a terminal error, a refused statement, a bug)."""


@dataclass(frozen=True)
class Failure:
    line: str
    """``error: ...``, one line, secrets removed."""
    exit_code: int
    unexpected: bool = False
    """A bug: the caller logs the stack trace."""


def explain(exc: Exception, databases: Sequence[Database]) -> Failure:
    """The line and exit code for ``exc``, which ended a command that talks to ``databases``."""
    if isinstance(exc, Mssql2pgError) and not isinstance(exc, ClassifiedError):
        return _own(exc)
    error = classify(exc)
    if not isinstance(error, ClassifiedError) or error.driver == "mssql2pg":
        return _own(error)
    if error.driver == "python":  # classify() found no driver error in it
        return Failure(_line(_message(error), error.hint), FAULT, unexpected=True)
    return _database_failure(exc, error, databases)


def _own(error: Mssql2pgError) -> Failure:
    """One of mssql2pg's errors: a set-up problem (configuration, CDC set-up, a refused request), or a terminal
    fault while working."""
    set_up = not isinstance(error, TerminalError) or getattr(error, "scope", None) == "pipeline"
    return Failure(_line(_message(error), error.hint), SET_UP if set_up else FAULT)


def _database_failure(exc: Exception, error: ClassifiedError, databases: Sequence[Database]) -> Failure:
    origin = _origin(exc)
    involved = _involved(origin, databases)
    who = " or ".join(f"the {d.role} database {d.url}" for d in involved) or "the database"
    settings = ", ".join(d.setting for d in involved)
    message = _message(error)
    if error.scope == "connection" and tls_failure_side(exc) is not None:  # reachable, but not trusted
        return Failure(_line(f"cannot connect securely to {who}: {message}", error.hint), SET_UP)
    if error.scope == "connection":
        where = f" ({settings}: host and port; the network; the firewall)" if settings else ""
        return Failure(
            _line(
                f"cannot connect to {who}: {message}",
                f"check that {'it is' if len(involved) < 2 else 'they are'} running and reachable from here{where}, "
                "then run the command again",
            ),
            SET_UP,
        )
    if error.scope == "pipeline":  # login refused, no such database, ...
        return Failure(_line(f"{who} refused the connection: {message}", _login_hint(error, involved)), SET_UP)
    return Failure(_line(f"{who}: {message}", error.hint), FAULT)


def _origin(exc: BaseException) -> str | None:
    """``source`` or ``target``: the side whose driver raised ``exc`` (see the module docstring)."""
    side = tls_failure_side(exc)
    if side is not None:
        return side
    for candidate in _chain(exc):
        if isinstance(candidate, sqlalchemy.exc.SQLAlchemyError) or classify_mssql(candidate) is not None:
            return "source"
        if classify_postgres(candidate) is not None:
            return "target"
    return None


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _involved(origin: str | None, databases: Sequence[Database]) -> list[Database]:
    if len(databases) == 1:
        return list(databases)
    named = [d for d in databases if d.role == origin]
    return named or list(databases)


def _login_hint(error: ClassifiedError, involved: Sequence[Database]) -> str | None:
    """The classifier's hint is written for the side a driver usually serves (PostgreSQL codes for the target,
    SQL Server numbers for the source); for the emulator as source, or any other database, say it plainly."""
    roles = {d.role for d in involved}
    if (error.driver == "pg8000" and roles == {"target"}) or (error.driver == "python-tds" and roles == {"source"}):
        return error.hint
    if len(involved) == 1 and involved[0].role in {"source", "target"}:
        variable = f"MSSQL2PG__{involved[0].role.upper()}__PASSWORD"
        return f"check the user and database in {involved[0].setting} and the password ({variable} or {variable}_FILE)"
    where = ", ".join(d.setting for d in involved) or "the URL"
    return f"check the user, the password and the database in {where}"


def _message(error: BaseException) -> str:
    """The message without the hint (``str()`` of an :class:`Mssql2pgError` appends it)."""
    return str(error.args[0]) if error.args else type(error).__name__


def _line(message: str, hint: str | None) -> str:
    text = f"error: {_flatten(message)}"
    if hint:
        text += f" -> {_flatten(hint)}"
    return redact_text(text)


def _flatten(text: str) -> str:
    """One line out of several: a list's items (``  - item``) joined by ``;``, after a ``:`` by a space."""
    out = ""
    for raw in text.splitlines():
        line = raw.strip().removeprefix("- ").strip()
        if not line:
            continue
        out = line if not out else out + (" " if out.endswith(":") else "; ") + line
    return out
