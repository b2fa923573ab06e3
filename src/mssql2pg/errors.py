"""The error hierarchy. Drivers' exceptions are classified once, at the driver boundary.

The runner decides what to do by ``isinstance``: a :class:`TransientError` is retried with backoff and
never drops data; a :class:`TerminalError` is about data (a row goes to the dead-letter table) or about a
table (that table pauses). Every error a user can see says what to do next in ``hint``.
"""

from __future__ import annotations


class Mssql2pgError(Exception):
    """Base class. ``hint`` is the remediation shown to the operator."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint

    def __str__(self) -> str:
        base = super().__str__()
        return f"{base}\n  hint: {self.hint}" if self.hint else base

    def __reduce__(self) -> tuple[object, ...]:
        """Pickle with every attribute (hint, code, table, which side failed ...), whatever the subclass's
        constructor looks like: the source reader runs in a process of its own and sends its errors to the
        applier's process, which decides by type and fields whether to retry, pause a table or stop."""
        return (_restore, (type(self), self.args, dict(vars(self))))


def _restore(cls: type[Mssql2pgError], args: tuple[object, ...], state: dict[str, object]) -> Mssql2pgError:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class ConfigError(Mssql2pgError):
    """The configuration is invalid; the message names the key."""


class TransientError(Mssql2pgError):
    """A fault that goes away by itself: connection lost, deadlock, admin shutdown, disk full, timeout."""


RETRIED_HINT = "retried automatically with backoff; nothing is lost"
"""The hint of a transient fault that has no remedy of its own: when retries run out (``retry.max_attempts``)
the message says what to check instead, while a fault with its own hint (a refused certificate) keeps it."""


class TerminalError(Mssql2pgError):
    """A fault that retrying cannot fix: bad data, a violated constraint, an incompatible type."""


class TableFaultError(TerminalError):
    """A fault of one table (not of a row, not of the pipeline): that table pauses, the others go on.

    ``table`` is the source table (a :class:`~mssql2pg.model.TableId`), ``state`` the state it gets in
    ``mssql2pg.table_state`` (``paused`` or ``needs-resync``) and ``remediation`` what the operator runs to
    bring it back. The pipeline records the pause and rebuilds itself without the table (see
    :meth:`mssql2pg.pipeline.assembly.Pipeline.run`); every attribute survives pickling, so a fault raised in
    the reader process arrives intact.
    """

    def __init__(self, message: str, *, table: object, state: str, remediation: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.table = table
        self.state = state
        self.remediation = remediation


class ReplanError(TerminalError):
    """Not a failure: the control schema holds something the running plan does not know (a table moved into
    this pipeline's group keeps a position of its own, so the reader must be planned with it). Like a
    :class:`TableFaultError` it leaves the replication loop, and the pipeline rebuilds itself (see
    :meth:`mssql2pg.pipeline.assembly.Pipeline.run`); what it committed before is kept."""


class OwnedElsewhereError(TransientError):
    """Another process writes what this one would write (its tables' write locks are held): this process is a
    standby. The runner waits and tries again at a steady pace, without counting it as a failed attempt, and
    takes over as soon as the owner's connection ends."""


class SourceValueError(TerminalError):
    """A value read from the source that cannot be decoded to its column's type (a read-side row fault):
    the change becomes a dead letter, the rest continues."""


class IncompatibleTargetError(TerminalError):
    """An existing target table cannot hold the source table's rows."""


class TargetPrivilegeError(TerminalError):
    """The target role lacks a privilege a configured option needs (``target.protect``: TRIGGER to install its
    guard, ownership to remove it). Told before the statement that would fail, so the message names the privilege
    and the option rather than PostgreSQL's bare "permission denied"; a set-up fault (exit code 2)."""

    scope = "pipeline"


class SourceError(Mssql2pgError):
    """The source is not set up for CDC the way mssql2pg needs (CDC off, no capture instance, ...)."""
