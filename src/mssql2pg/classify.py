"""Driver exceptions → :class:`~mssql2pg.errors.TransientError` or :class:`~mssql2pg.errors.TerminalError`.

This is the one place that knows driver error codes. Everything downstream decides by ``isinstance``: the
runner retries a transient error with backoff from the last checkpoint (nothing is lost, nothing repeated)
and stops on a terminal one; the applier isolates the offending row of a terminal error whose ``scope`` is
``row`` and sends it to the dead-letter table, pauses a table for ``table``, and stops for ``pipeline``.

The decision is made from codes, never from message text: PostgreSQL's SQLSTATE (pg8000 puts the server's
error fields in ``args[0]``, a dict with the SQLSTATE under ``"C"``) and SQL Server's error number (python-tds
sets ``.number`` and ``.severity`` on :class:`pytds.tds_base.DatabaseError`). When the number is unknown,
PostgreSQL's SQLSTATE *class* and SQL Server's *severity* (17 and above: resources and fatal errors) decide.
Lost connections show up as ``OSError`` (refused, reset, broken pipe, timeout, DNS), pg8000
``InterfaceError``, python-tds ``ClosedConnectionError``; they are transient. A driver exception that
SQLAlchemy wrapped is unwrapped first. ``docs/errors.md`` has the tables with what the pipeline does.

The other facts the pipeline needs from a driver error are read here too, one function each, so that no other
module looks inside a driver exception: :func:`sqlstate`, :func:`mssql_number`, :func:`server_fields`,
:func:`server_message`, :func:`is_undefined_column`, :func:`is_undefined_object` and
:func:`copy_error_position` (the one fact PostgreSQL only gives as text; it is parsed from the structured
context field, never from the message).

Driver messages can contain a DSN, so every message goes through :func:`scrub` (the shared redactor of
:mod:`mssql2pg.redact`) before it is kept.
"""

from __future__ import annotations

import re
import socket
import ssl
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

import OpenSSL.SSL
import pg8000.exceptions
import pytds.tds_base as tds
import sqlalchemy.exc

from mssql2pg.errors import RETRIED_HINT, Mssql2pgError, TerminalError, TransientError
from mssql2pg.redact import redact_text

scrub = redact_text
"""The shared redactor, :func:`mssql2pg.redact.redact_text`, under the name callers of this module import
(``sink/deadletters.py`` and the tests of this module)."""

Scope = Literal["connection", "row", "table", "pipeline"]
"""What a fault is about. ``connection``: transient, retry. ``row``: that row's data (dead-letter it).
``table``: the table's definition or permissions (pause the table). ``pipeline``: the whole process cannot
work (login, missing database): stop with the hint."""

# ------------------------------------------------------------------------------------------ the result types


class ClassifiedError(Mssql2pgError):
    """Mixin data of a classified driver error: which driver, which code, what it is about."""

    code: str | int | None
    driver: str
    scope: Scope

    def __init__(
        self, message: str, *, code: str | int | None, driver: str, scope: Scope, hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.code = code
        self.driver = driver
        self.scope = scope


class ClassifiedTransientError(ClassifiedError, TransientError):
    """A transient driver error (retry from the checkpoint)."""


class ClassifiedTerminalError(ClassifiedError, TerminalError):
    """A terminal driver error; ``scope`` says whether a row, a table or the pipeline is affected."""


Classified = ClassifiedTransientError | ClassifiedTerminalError


@dataclass(frozen=True, slots=True)
class Rule:
    """What one code means."""

    transient: bool
    scope: Scope
    name: str
    hint: str | None = None


def _t(name: str, hint: str | None = None) -> Rule:
    return Rule(transient=True, scope="connection", name=name, hint=hint)


def _row(name: str, hint: str | None = None) -> Rule:
    return Rule(transient=False, scope="row", name=name, hint=hint or _ROW_HINT)


def _table(name: str, hint: str | None = None) -> Rule:
    return Rule(transient=False, scope="table", name=name, hint=hint)


def _pipeline(name: str, hint: str | None = None) -> Rule:
    return Rule(transient=False, scope="pipeline", name=name, hint=hint)


_ROW_HINT = "the row goes to the dead-letter table; inspect it with 'mssql2pg dlq list'"
_RETRY_HINT = RETRIED_HINT
_CERT_HINT = (
    "check target.sslrootcert (the CA the server's certificate must chain to), target.sslmode, and that the "
    "certificate names the host in target.url (verify-full)"
)
_MSSQL_CERT_HINT = (
    "check source.ca_file (the CA SQL Server's certificate must chain to) and that the certificate names the host "
    "in source.url (source.check_hostname)"
)
_TARGET_PERMISSION = "grant the target user the privileges listed in docs/configuration.md"

# ------------------------------------------------------------------------------------- PostgreSQL (pg8000)

POSTGRES_CODES: dict[str, Rule] = {
    # transient: connection, concurrency, server shutting down or starting, resources, I/O
    "08000": _t("connection_exception"),
    "08001": _t("sqlclient_unable_to_establish_sqlconnection"),
    "08003": _t("connection_does_not_exist"),
    "08004": _t("sqlserver_rejected_establishment_of_sqlconnection"),
    "08006": _t("connection_failure"),
    "08007": _t("transaction_resolution_unknown"),
    "08P01": _t("protocol_violation"),
    "25006": _t("read_only_sql_transaction", "the target is read-only (a standby during failover?); retrying"),
    "25P02": _t("in_failed_sql_transaction", "an earlier statement failed; the transaction is rerun"),
    "40000": _t("transaction_rollback"),
    "40001": _t("serialization_failure"),
    "40003": _t("statement_completion_unknown"),
    "40P01": _t("deadlock_detected"),
    "53000": _t("insufficient_resources"),
    "53100": _t("disk_full", "free disk space on the target; replication resumes by itself"),
    "53200": _t("out_of_memory"),
    "53300": _t("too_many_connections", "raise max_connections on the target or close idle sessions"),
    "53400": _t("configuration_limit_exceeded"),
    "55006": _t("object_in_use"),
    "55P03": _t("lock_not_available"),
    "57000": _t("operator_intervention"),
    "57014": _t("query_canceled", "a statement timeout or a cancel; the transaction is rerun"),
    "57P01": _t("admin_shutdown"),
    "57P02": _t("crash_shutdown"),
    "57P03": _t("cannot_connect_now", "the target is starting up or in recovery"),
    "57P05": _t("idle_session_timeout"),
    "58000": _t("system_error"),
    "58030": _t("io_error"),
    "72000": _t("snapshot_too_old"),
    # terminal, about one row's data
    "22001": _row("string_data_right_truncation"),
    "22003": _row("numeric_value_out_of_range"),
    "22007": _row("invalid_datetime_format"),
    "22008": _row("datetime_field_overflow"),
    "22012": _row("division_by_zero"),
    "22021": _row("character_not_in_repertoire"),
    "22P02": _row("invalid_text_representation"),
    "22P05": _row("untranslatable_character"),
    "23502": _row("not_null_violation"),
    "23503": _row("foreign_key_violation"),
    "23505": _row("unique_violation"),
    "23514": _row("check_violation"),
    "23P01": _row("exclusion_violation"),
    "40002": _row("transaction_integrity_constraint_violation"),
    # terminal, about a table's definition or rights
    "0A000": _table("feature_not_supported"),
    "2F005": _table("function_executed_no_return_statement"),
    "42501": _table("insufficient_privilege", _TARGET_PERMISSION),
    "42601": _table("syntax_error"),
    "42703": _table("undefined_column", "the target table does not match the source; see 'mssql2pg schema list'"),
    "42804": _table("datatype_mismatch", "the target column type cannot hold the source type"),
    "42883": _table("undefined_function"),
    "42P01": _table("undefined_table", "the target table is missing; 'mssql2pg resync <table>' recreates it"),
    "42P07": _table("duplicate_table"),
    "54000": _table("program_limit_exceeded"),
    "54001": _table("statement_too_complex"),
    "54011": _table("too_many_columns"),
    "55000": _table("object_not_in_prerequisite_state"),
    # terminal, the pipeline cannot work at all
    "28000": _pipeline("invalid_authorization_specification", "check the target user in target.url"),
    "28P01": _pipeline(
        "invalid_password", "check the password (MSSQL2PG__TARGET__PASSWORD or MSSQL2PG__TARGET__PASSWORD_FILE)"
    ),
    "3D000": _pipeline("invalid_catalog_name", "the database in target.url does not exist; create it first"),
    "57P04": _pipeline("database_dropped"),
    "XX001": _pipeline("data_corrupted", "the target reports corrupted data; restore it before continuing"),
    "XX002": _pipeline("index_corrupted", "REINDEX the index named in the message"),
}

POSTGRES_TRANSIENT_CLASSES = frozenset({"08", "40", "53", "57", "58"})
"""SQLSTATE classes whose unlisted codes are transient too (40002 and 57P04 above are the exceptions)."""
_SERVER_HINTED = frozenset({"42501"})
"""Codes whose server-given HINT replaces the rule's hint: a refusal raised with a HINT of its own (the
``target.protect`` guard's trigger raises insufficient_privilege saying which configuration writes through it)
knows better than the generic "grant the privileges" what to do; PostgreSQL's own permission errors carry none."""

_POSTGRES_ROW_CLASSES = frozenset({"22", "23"})
_POSTGRES_PIPELINE_CLASSES = frozenset({"28", "3D"})


def classify_postgres(exc: BaseException) -> Classified | None:
    """Classify a pg8000 exception; ``None`` when ``exc`` is not one."""
    if isinstance(exc, pg8000.exceptions.DatabaseError):
        fields = _own_fields(exc) or {}
        code = str(fields.get("C", "")) or None
        rule = _postgres_rule(code)
        text = str(fields.get("M", "")) or (str(exc.args[0]) if exc.args else type(exc).__name__)
        if fields.get("D"):
            text += f" ({fields['D']})"
        label = f"PostgreSQL error {code} ({rule.name})" if code else "PostgreSQL error"
        server_hint = str(fields.get("H", "")) or None
        if code in _SERVER_HINTED and server_hint is not None:
            rule = Rule(rule.transient, rule.scope, rule.name, redact_text(server_hint))
        return _build(rule, f"{label}: {text}", code, "pg8000")
    if isinstance(exc, pg8000.exceptions.InterfaceError):
        # "network error", "connection is closed", "communication error": the connection is gone. pg8000 also
        # uses InterfaceError for misuse; retrying that is harmless (it fails again, and keeps failing loudly).
        message = str(exc.args[0]) if exc.args else "interface error"
        return _build(_t("connection_lost"), f"PostgreSQL connection error: {message}", None, "pg8000")
    if isinstance(exc, pg8000.exceptions.Error):
        return _build(_table("driver_error"), f"PostgreSQL driver error: {exc}", None, "pg8000")
    return None


def _postgres_rule(code: str | None) -> Rule:
    if code is None:
        return _table("unknown")
    rule = POSTGRES_CODES.get(code)
    if rule is not None:
        return rule
    klass = code[:2]
    if klass in POSTGRES_TRANSIENT_CLASSES:
        return _t(f"class {klass}")
    if klass in _POSTGRES_ROW_CLASSES:
        return _row(f"class {klass}")
    if klass in _POSTGRES_PIPELINE_CLASSES:
        return _pipeline(f"class {klass}")
    return _table(f"class {klass}")


# ------------------------------------------------------------------------------------- SQL Server (python-tds)

_SOURCE_PERMISSION = (
    "grant the source login SELECT on the cdc schema (or membership of the capture instance's gating role); "
    "see docs/configuration.md"
)

MSSQL_NUMBERS: dict[int, Rule] = {
    # transient
    -2: _t("timeout"),
    64: _t("connection dropped (transport)"),
    233: _t("no process on the other end of the pipe (transport)"),
    701: _t("insufficient system memory"),
    1105: _t("filegroup full", "free space in the source database's filegroup"),
    1205: _t("deadlock victim"),
    1222: _t("lock request timeout"),
    3960: _t("snapshot isolation update conflict"),
    4060: _t("cannot open database (unavailable, restoring or failing over)"),
    8645: _t("timeout waiting for memory resources"),
    9002: _t("transaction log full", "the source's transaction log is full; back it up or grow it"),
    10053: _t("connection aborted (transport)"),
    10054: _t("connection reset by peer (transport)"),
    10060: _t("connection timed out (transport)"),
    10061: _t("connection refused (transport)"),
    17142: _t("server paused"),
    17187: _t("server not ready to accept connections"),
    40197: _t("Azure: service error processing the request"),
    40501: _t("Azure: service busy"),
    40613: _t("Azure: database not currently available"),
    49918: _t("Azure: not enough resources"),
    49919: _t("Azure: too many operations in progress"),
    49920: _t("Azure: service busy, too many operations"),
    # terminal, a row's data
    241: _row("date/time conversion failed"),
    245: _row("conversion failed"),
    515: _row("cannot insert NULL"),
    547: _row("constraint conflict"),
    2601: _row("duplicate key (unique index)"),
    2627: _row("duplicate key (constraint)"),
    2628: _row("string or binary data would be truncated"),
    8114: _row("error converting data type"),
    8115: _row("arithmetic overflow"),
    8152: _row("string or binary data would be truncated"),
    # terminal, a table
    207: _table("invalid column name", "the capture instance no longer matches; see 'mssql2pg schema list'"),
    208: _table("invalid object name", "the table or its capture instance is gone; check CDC on the source table"),
    229: _table("permission denied on object", _SOURCE_PERMISSION),
    230: _table("permission denied on column", _SOURCE_PERMISSION),
    313: _table(
        "CDC function refused the LSN range (its 'insufficient number of arguments' error)",
        "the checkpoint is outside the capture instance's retained range (cleanup ran ahead?); "
        "'mssql2pg resync <table>' starts the table again from a snapshot",
    ),
    # terminal, the pipeline
    18456: _pipeline(
        "login failed",
        "check the user in source.url and the password (MSSQL2PG__SOURCE__PASSWORD or "
        "MSSQL2PG__SOURCE__PASSWORD_FILE), and that the login is enabled and has access to the database",
    ),
    18486: _pipeline("login locked out", "unlock the SQL Server login (ALTER LOGIN ... UNLOCK)"),
    18487: _pipeline("password expired", "renew the SQL Server login's password"),
    18488: _pipeline("password must be changed", "change the SQL Server login's password"),
}

MSSQL_TRANSIENT_SEVERITY = 17
"""Severity 17-19 are resource and software limits, 20-25 fatal errors that end the connection: all worth a
retry. Below 17 the statement itself is at fault."""


def classify_mssql(exc: BaseException) -> Classified | None:
    """Classify a python-tds exception; ``None`` when ``exc`` is not one."""
    if isinstance(exc, tds.ClosedConnectionError):
        return _build(_t("connection closed by server"), "SQL Server closed the connection", None, "python-tds")
    if isinstance(exc, tds.DatabaseError) and exc.number:
        number = int(exc.number)
        severity = int(getattr(exc, "severity", 0) or 0)
        rule = MSSQL_NUMBERS.get(number) or (
            _t(f"severity {severity}") if severity >= MSSQL_TRANSIENT_SEVERITY else _table(f"severity {severity}")
        )
        text = str(getattr(exc, "text", "") or (exc.args[0] if exc.args else ""))
        return _build(rule, f"SQL Server error {number} ({rule.name}): {text}", number, "python-tds")
    if isinstance(exc, tds.DataError):
        text = exc.args[0] if exc.args else "data error"
        return _build(_row("client-side conversion"), f"SQL Server data error: {text}", None, "python-tds")
    if isinstance(exc, tds.InterfaceError | tds.OperationalError):
        text = exc.args[0] if exc.args else type(exc).__name__
        return _build(_t("connection error"), f"SQL Server connection error: {text}", None, "python-tds")
    if isinstance(exc, tds.Error):
        text = exc.args[0] if exc.args else type(exc).__name__
        return _build(_table("driver error"), f"SQL Server driver error: {text}", None, "python-tds")
    return None


# ------------------------------------------------------------------------------------------------ entry point


def classify(exc: BaseException) -> TransientError | TerminalError:
    """Classify any exception. Already-classified errors pass through unchanged; the result of a new
    classification chains ``exc`` as ``__cause__`` and carries ``.code`` / ``.driver`` / ``.scope``."""
    if isinstance(exc, TransientError | TerminalError):
        return exc
    if isinstance(exc, Mssql2pgError):  # ConfigError, SourceError: a setup problem, not a driver fault
        message = redact_text(str(exc.args[0]) if exc.args else type(exc).__name__)
        error = ClassifiedTerminalError(message, code=None, driver="mssql2pg", scope="pipeline", hint=exc.hint)
        error.__cause__ = exc
        return error
    for candidate in _causes(exc):
        found = (
            _classify_tls(candidate)
            or classify_postgres(candidate)
            or classify_mssql(candidate)
            or _classify_generic(candidate)
        )
        if found is not None:
            found.__cause__ = exc
            return found
    message = redact_text(f"{type(exc).__name__}: {exc}")
    error = ClassifiedTerminalError(
        f"unexpected error: {message}",
        code=None,
        driver="python",
        scope="pipeline",
        hint="this is probably a bug in mssql2pg; please report it with the log",
    )
    error.__cause__ = exc
    return error


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, the driver error inside a SQLAlchemy wrapper, then the explicit ``__cause__`` chain."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None) if isinstance(current, sqlalchemy.exc.DBAPIError) else None
        if isinstance(orig, BaseException) and id(orig) not in seen:
            yield orig
            seen.add(id(orig))
        current = current.__cause__


# ------------------------------------------------------------------------------------ facts of a driver error


def postgres_error(exc: BaseException) -> pg8000.exceptions.DatabaseError | None:
    """The PostgreSQL server error behind ``exc``: ``exc`` itself, the driver error SQLAlchemy wrapped, or the
    first one along the ``__cause__`` chain (``raise ... from exc``). ``None`` when PostgreSQL reported none."""
    for candidate in _causes(exc):
        if isinstance(candidate, pg8000.exceptions.DatabaseError) and _own_fields(candidate) is not None:
            return candidate
    return None


def server_fields(exc: BaseException) -> Mapping[str, str] | None:
    """PostgreSQL's error fields behind ``exc``, keyed by the protocol's one-letter codes (``C`` SQLSTATE,
    ``M`` message, ``D`` detail, ``W`` where/context, ``c`` column name, ...), as pg8000 received them."""
    error = postgres_error(exc)
    return _own_fields(error) if error is not None else None


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of the PostgreSQL error behind ``exc``."""
    fields = server_fields(exc)
    return (fields.get("C") or None) if fields is not None else None


def mssql_number(exc: BaseException) -> int | None:
    """The SQL Server error number behind ``exc`` (python-tds sets ``number`` from the server's message; it
    stays 0 on errors the driver raises itself)."""
    for candidate in _causes(exc):
        if isinstance(candidate, tds.DatabaseError) and candidate.number:
            return int(candidate.number)
    return None


def server_message(exc: BaseException) -> str | None:
    """The database server's own message behind ``exc`` (PostgreSQL's ``M`` field, SQL Server's message text),
    without the driver's decoration; ``None`` when no server reported an error."""
    fields = server_fields(exc)
    if fields is not None:
        return fields.get("M", "")
    for candidate in _causes(exc):
        if isinstance(candidate, tds.DatabaseError) and candidate.number:
            return str(candidate.text)
    return None


_DISK_FULL_SQLSTATES = frozenset({"53100"})  # disk_full (ENOSPC while extending a file)


def is_disk_full(exc: BaseException) -> bool:
    """Whether PostgreSQL refused a write because its disk (or the tablespace's filesystem) is full. Transient:
    nothing was written (the transaction rolled back), and the write succeeds once space is freed, so the
    pipeline retries; the operator needs to be told what to do, which a generic retry line does not say."""
    return sqlstate(exc) in _DISK_FULL_SQLSTATES


_UNDEFINED_COLUMN_SQLSTATES = frozenset({"42703"})  # undefined_column
_UNDEFINED_COLUMN_NUMBERS = frozenset({207})  # Invalid column name
_UNDEFINED_OBJECT_SQLSTATES = frozenset({"42P01", "3F000"})  # undefined_table, invalid_schema_name
_UNDEFINED_OBJECT_NUMBERS = frozenset({208})  # Invalid object name


_PG8000_TLS_REFUSED = "Server refuses SSL"  # pg8000's InterfaceError when the server answers the TLS request "N"


def server_refuses_tls(exc: BaseException) -> bool:
    """The PostgreSQL server answered our TLS request with "no" (it has ``ssl = off``). pg8000 reports that
    only as the text of an ``InterfaceError``, so it is recognised here, the one place that reads driver
    errors."""
    return any(
        isinstance(c, pg8000.exceptions.InterfaceError) and c.args == (_PG8000_TLS_REFUSED,) for c in _causes(exc)
    )


def is_undefined_column(exc: BaseException) -> bool:
    """The statement names a column the table does not have (PostgreSQL 42703, SQL Server 207)."""
    return sqlstate(exc) in _UNDEFINED_COLUMN_SQLSTATES or mssql_number(exc) in _UNDEFINED_COLUMN_NUMBERS


def is_undefined_object(exc: BaseException) -> bool:
    """The statement names a table (or a schema) the database does not have: PostgreSQL 42P01 undefined_table,
    or 3F000 invalid_schema_name where a missing schema is named; SQL Server 208 invalid object name."""
    return sqlstate(exc) in _UNDEFINED_OBJECT_SQLSTATES or mssql_number(exc) in _UNDEFINED_OBJECT_NUMBERS


def is_permission_denied(exc: BaseException) -> bool:
    """The login lacks a permission on the object the statement names: SQL Server 229 (permission denied on an
    object), PostgreSQL 42501 insufficient_privilege. ``mssql2pg check`` turns it into the GRANT to run."""
    return mssql_number(exc) == 229 or sqlstate(exc) == "42501"


@dataclass(frozen=True, slots=True)
class CopyErrorPosition:
    """Where in a COPY's data PostgreSQL refused a row: the 1-based ``line`` of the data sent, and the
    ``column`` (of the table copied into) when the server names one."""

    line: int
    column: str | None


# PostgreSQL's CopyFromErrorCallback writes one of: "COPY t, line N, column c: \"value\"", "... column c: null
# input", "... column c", "COPY t, line N: \"line text\"", "COPY t, line N". Names are not quoted; the value can
# hold anything, newlines included, and ends the field. Context lines of inner calls (a trigger) come first.
_COPY_CONTEXT = re.compile(
    r'^COPY [^\n]+?, line (?P<line>\d+)(?:, column (?P<column>[^\n]+?))?(?:: (?:".*"|null input))?\Z',
    re.MULTILINE | re.DOTALL,
)


def copy_error_position(exc: BaseException) -> CopyErrorPosition | None:
    """The row and column a COPY data error points at; ``None`` unless ``exc`` is a data error (SQLSTATE class
    22 or 23) raised while PostgreSQL read a COPY's data.

    Only text carries this: PostgreSQL has no protocol field for the line of a COPY. It is parsed from the
    context field (``W``, the structured "where"), which PostgreSQL writes in a fixed form, never from the
    message. A constraint error's context names no column; the structured ``column_name`` field (``c``)
    does when the server sends it. The context is written in the server's ``lc_messages`` language: in another
    language than English it is not recognised, ``None`` is returned, and the applier finds the row by
    bisection instead."""
    fields = server_fields(exc)
    if fields is None or fields.get("C", "")[:2] not in _POSTGRES_ROW_CLASSES:
        return None
    match = _COPY_CONTEXT.search(fields.get("W", ""))
    if match is None:
        return None
    return CopyErrorPosition(int(match["line"]), match["column"] or fields.get("c") or None)


def _own_fields(exc: BaseException) -> dict[str, str] | None:
    """pg8000 raises ``DatabaseError(fields)`` for a server error: the ErrorResponse fields in ``args[0]``."""
    arg = exc.args[0] if exc.args else None
    return arg if isinstance(arg, dict) else None


def _classify_tls(exc: BaseException) -> Classified | None:
    """A certificate the client refused, or a TLS handshake that failed: transient like any connection fault
    (a certificate being renewed, a proxy in the way), with the reason in one line and what to check."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = exc.verify_message or exc.reason or str(exc)
        message = f"TLS: the database server's certificate was refused: {reason}"
        return _build(_t("certificate refused", _CERT_HINT), message, None, "ssl")
    if isinstance(exc, ssl.SSLError):
        message = f"TLS handshake with the database server failed: {exc.reason or exc}"
        return _build(_t("TLS handshake failed", _CERT_HINT), message, None, "ssl")
    if isinstance(exc, OpenSSL.SSL.Error):  # python-tds's handshake (pyOpenSSL): args[0] lists the reasons
        reasons = [entry[-1] for entry in (exc.args[0] if exc.args else []) if isinstance(entry, tuple)]
        message = f"TLS handshake with SQL Server failed: {'; '.join(reasons) or exc}"
        return _build(_t("TLS handshake failed", _MSSQL_CERT_HINT), message, None, "python-tds")
    if isinstance(exc, tds.Error) and not isinstance(exc, tds.DatabaseError) and _is_tds_host_mismatch(exc):
        message = f"TLS: SQL Server's certificate was refused: {exc.args[0]}"
        return _build(_t("certificate refused", _MSSQL_CERT_HINT), message, None, "python-tds")
    if server_refuses_tls(exc):
        message = "TLS: the database server does not offer TLS (ssl = off) but sslmode requires it"
        return _build(_t("TLS refused", "enable ssl on the server, or lower target.sslmode"), message, None, "pg8000")
    return None


def tls_failure_side(exc: BaseException) -> Literal["source", "target"] | None:
    """Which connection a TLS failure in ``exc``'s chain belongs to, told by the library that raised it: the
    target's TLS is the ``ssl`` module's (pg8000 lets its errors through unwrapped), SQL Server's is pyOpenSSL's
    (python-tds). ``None`` when ``exc`` is no TLS failure."""
    for candidate in _causes(exc):
        found = _classify_tls(candidate)
        if found is not None:
            return "source" if found.driver == "python-tds" else "target"
    return None


def _is_tds_host_mismatch(exc: BaseException) -> bool:
    """python-tds reports a certificate for another host only as the text of a plain ``Error``."""
    return bool(exc.args) and str(exc.args[0]).startswith("Certificate does not match host name")


def _classify_generic(exc: BaseException) -> Classified | None:
    if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated:
        return _build(_t("connection invalidated"), f"connection lost: {exc.orig}", None, "sqlalchemy")
    if isinstance(exc, sqlalchemy.exc.TimeoutError | sqlalchemy.exc.DisconnectionError):
        return _build(_t("pool"), f"connection pool: {exc}", None, "sqlalchemy")
    if isinstance(exc, socket.gaierror):
        return _build(_t("name resolution"), f"cannot resolve the database host: {exc}", None, "socket")
    if isinstance(exc, OSError | EOFError):
        return _build(_t("network"), f"network error: {type(exc).__name__}: {exc}", None, "socket")
    return None


def _build(rule: Rule, message: str, code: str | int | None, driver: str) -> Classified:
    hint = rule.hint if rule.hint is not None or not rule.transient else _RETRY_HINT
    if rule.transient:
        return ClassifiedTransientError(redact_text(message), code=code, driver=driver, scope=rule.scope, hint=hint)
    return ClassifiedTerminalError(redact_text(message), code=code, driver=driver, scope=rule.scope, hint=hint)


# ---------------------------------------------------------------------------------------------- documentation

ACTIONS: dict[Scope, str] = {
    "connection": "retry from the checkpoint with backoff",
    "row": "row to the dead-letter table; the rest continues",
    "table": "table paused with the reason; others continue",
    "pipeline": "stop with the hint",
}
DOC_BEGIN = "<!-- BEGIN GENERATED: error tables (python -m mssql2pg.classify --write docs/errors.md) -->"
DOC_END = "<!-- END GENERATED: error tables -->"


def render_error_tables() -> str:
    """The two code tables of ``docs/errors.md`` (a test keeps the document equal to this)."""
    out = ["### PostgreSQL (SQLSTATE, pg8000)", ""]
    out += _rows("SQLSTATE", sorted(POSTGRES_CODES.items(), key=lambda item: (not item[1].transient, item[0])))
    out += [
        "",
        f"Unlisted codes go by class: {', '.join(sorted(POSTGRES_TRANSIENT_CLASSES))} transient; 22 and 23 "
        "terminal (row); 28 and 3D terminal (pipeline); anything else terminal (table).",
        "",
        "### SQL Server (error number, python-tds)",
        "",
    ]
    out += _rows("Number", sorted(MSSQL_NUMBERS.items(), key=lambda item: (not item[1].transient, item[0])))
    out += [
        "",
        f"Unlisted numbers go by severity: {MSSQL_TRANSIENT_SEVERITY} and above (resources, fatal errors that "
        "end the connection) transient; below that terminal (table).",
    ]
    return "\n".join(out) + "\n"


def _rows(label: str, rules: list[tuple[str, Rule]] | list[tuple[int, Rule]]) -> list[str]:
    lines = [f"| {label} | Meaning | Class | What the pipeline does |", "|---|---|---|---|"]
    for code, rule in rules:
        kind = "transient" if rule.transient else f"terminal ({rule.scope})"
        action = ACTIONS[rule.scope] + (f"; {rule.hint}" if rule.hint else "")
        lines.append(f"| `{code}` | {rule.name.replace('_', ' ')} | {kind} | {action} |")
    return lines


def _write_doc(path: str) -> None:
    from pathlib import Path  # noqa: PLC0415 - only for the documentation command

    doc = Path(path)
    text = doc.read_text(encoding="utf-8")
    start, end = text.index(DOC_BEGIN) + len(DOC_BEGIN), text.index(DOC_END)
    doc.write_text(text[:start] + "\n\n" + render_error_tables() + "\n" + text[end:], encoding="utf-8")


__all__ = [
    "MSSQL_NUMBERS",
    "POSTGRES_CODES",
    "Classified",
    "ClassifiedError",
    "ClassifiedTerminalError",
    "ClassifiedTransientError",
    "CopyErrorPosition",
    "Rule",
    "Scope",
    "classify",
    "classify_mssql",
    "classify_postgres",
    "copy_error_position",
    "is_undefined_column",
    "is_undefined_object",
    "mssql_number",
    "postgres_error",
    "scrub",
    "server_fields",
    "server_message",
    "server_refuses_tls",
    "sqlstate",
    "tls_failure_side",
]

if __name__ == "__main__":
    import sys

    if len(sys.argv) == 3 and sys.argv[1] == "--write":
        _write_doc(sys.argv[2])
    else:
        sys.stdout.write(render_error_tables())
