# ruff: noqa: S105 - fake passwords are the subject of the scrubbing tests
from __future__ import annotations

import socket
import ssl
from pathlib import Path

import OpenSSL.SSL
import pg8000.exceptions
import pytds.tds_base as tds
import pytest
import sqlalchemy.exc

from mssql2pg.classify import (
    DOC_BEGIN,
    DOC_END,
    ClassifiedError,
    classify,
    classify_mssql,
    classify_postgres,
    render_error_tables,
    scrub,
)
from mssql2pg.errors import TerminalError, TransientError
from tests.fixtures.driver_errors import mssql_error


def pg_error(code: str, message: str = "boom", **fields: str) -> pg8000.exceptions.DatabaseError:
    return pg8000.exceptions.DatabaseError({"S": "ERROR", "V": "ERROR", "C": code, "M": message, **fields})


def tds_error(number: int, severity: int = 16, cls: type[tds.DatabaseError] = tds.OperationalError) -> Exception:
    error = cls(f"SQL Server says {number}")
    error.number = number
    error.msg_no = number
    error.severity = severity
    return error


TRANSIENT_SQLSTATES = [
    "08000", "08003", "08006", "08001", "08004", "08P01",
    "40001", "40P01", "40000", "40003",
    "57P01", "57P02", "57P03", "57014",
    "53000", "53100", "53200", "53300", "53400",
    "55P03", "58000", "58030", "25006",
]  # fmt: skip
TERMINAL_SQLSTATES = [
    "22001", "22003", "22007", "22012", "22P02", "22021",
    "23502", "23503", "23505", "23514", "23P01",
    "42601", "42P01", "42703", "42501", "42883",
    "2F005", "0A000", "3D000", "28P01", "28000", "XX000", "P0001",
]  # fmt: skip


@pytest.mark.parametrize("code", TRANSIENT_SQLSTATES)
def test_transient_sqlstates(code: str) -> None:
    result = classify(pg_error(code))

    assert isinstance(result, TransientError)
    assert isinstance(result, ClassifiedError)
    assert result.code == code


@pytest.mark.parametrize("code", TERMINAL_SQLSTATES)
def test_terminal_sqlstates(code: str) -> None:
    result = classify(pg_error(code))

    assert isinstance(result, TerminalError)
    assert result.code == code


@pytest.mark.parametrize(
    ("code", "scope"),
    [("23505", "row"), ("22012", "row"), ("42P01", "table"), ("28P01", "pipeline"), ("3D000", "pipeline")],
)
def test_terminal_scope_says_what_to_stop(code: str, scope: str) -> None:
    result = classify(pg_error(code))

    assert isinstance(result, ClassifiedError)
    assert result.scope == scope


def test_unknown_sqlstate_in_a_transient_class_is_transient() -> None:
    assert isinstance(classify(pg_error("08XYZ")), TransientError)
    assert isinstance(classify(pg_error("58P99")), TransientError)


def test_unknown_sqlstate_elsewhere_is_terminal() -> None:
    assert isinstance(classify(pg_error("ZZ999")), TerminalError)


def test_result_chains_the_driver_exception_and_keeps_the_message() -> None:
    original = pg_error("23505", 'duplicate key value violates unique constraint "t_pkey"', D="Key (id)=(1) exists.")

    result = classify(original)

    assert result.__cause__ is original
    assert "23505" in str(result)
    assert "unique_violation" in str(result)
    assert "t_pkey" in str(result)
    assert "Key (id)=(1) exists." in str(result)
    assert result.driver == "pg8000"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "exc",
    [
        pg8000.exceptions.InterfaceError("network error"),
        pg8000.exceptions.InterfaceError("connection is closed"),
        ConnectionRefusedError(111, "Connection refused"),
        ConnectionResetError(104, "Connection reset by peer"),
        BrokenPipeError(32, "Broken pipe"),
        TimeoutError("timed out"),
        socket.gaierror(-2, "Name or service not known"),
        EOFError(),
    ],
)
def test_lost_connections_are_transient(exc: BaseException) -> None:
    result = classify(exc)

    assert isinstance(result, TransientError)
    assert result.__cause__ is exc


def test_interface_error_caused_by_a_socket_error_is_transient() -> None:
    error = pg8000.exceptions.InterfaceError("network error")
    error.__cause__ = ConnectionResetError(104, "reset")

    assert isinstance(classify(error), TransientError)


@pytest.mark.parametrize(
    "number",
    [1205, 1222, -2, 233, 10053, 10054, 10060, 10061, 64, 4060, 40197, 40501, 40613, 49918, 49919, 49920,
     9002, 1105, 701, 8645, 3960, 17142, 17187],
)  # fmt: skip
def test_transient_sql_server_numbers(number: int) -> None:
    result = classify(tds_error(number))

    assert isinstance(result, TransientError)
    assert result.code == number  # type: ignore[union-attr]
    assert result.driver == "python-tds"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("number", "scope"),
    [(2627, "row"), (2601, "row"), (547, "row"), (8152, "row"), (2628, "row"), (245, "row"), (8114, "row"),
     (208, "table"), (229, "table"), (230, "table"), (18456, "pipeline")],
)  # fmt: skip
def test_terminal_sql_server_numbers(number: int, scope: str) -> None:
    result = classify(
        tds_error(number, cls=tds.IntegrityError if number in (2627, 2601, 547) else tds.OperationalError)
    )

    assert isinstance(result, TerminalError)
    assert result.code == number  # type: ignore[union-attr]
    assert result.scope == scope  # type: ignore[union-attr]


def test_login_failed_has_a_hint() -> None:
    result = classify(tds_error(18456, severity=14, cls=tds.LoginError))

    assert isinstance(result, TerminalError)
    assert result.hint is not None
    assert "MSSQL2PG__SOURCE__PASSWORD" in result.hint


@pytest.mark.parametrize(("severity", "kind"), [(16, TerminalError), (17, TransientError), (20, TransientError)])
def test_unknown_sql_server_number_falls_back_to_severity(severity: int, kind: type[Exception]) -> None:
    assert isinstance(classify(tds_error(99999, severity=severity)), kind)


def test_pytds_closed_connection_and_timeout_are_transient() -> None:
    assert isinstance(classify(tds.ClosedConnectionError()), TransientError)
    assert isinstance(classify(tds.TimeoutError()), TransientError)


def test_pytds_client_side_data_error_is_terminal_row() -> None:
    result = classify(tds.DataError("cannot convert"))

    assert isinstance(result, TerminalError)
    assert result.scope == "row"  # type: ignore[union-attr]


def test_sqlalchemy_wrapped_errors_are_unwrapped() -> None:
    driver_error = tds_error(1205, severity=13)
    wrapped = sqlalchemy.exc.OperationalError("SELECT 1", {}, driver_error)

    result = classify(wrapped)

    assert isinstance(result, TransientError)
    assert result.code == 1205  # type: ignore[union-attr]
    assert result.__cause__ is wrapped


def test_sqlalchemy_pool_timeout_is_transient() -> None:
    assert isinstance(classify(sqlalchemy.exc.TimeoutError("QueuePool limit reached")), TransientError)


def test_errors_already_classified_pass_through() -> None:
    transient = TransientError("x")
    terminal = TerminalError("y")

    assert classify(transient) is transient
    assert classify(terminal) is terminal


def test_unknown_python_errors_are_terminal() -> None:
    result = classify(ZeroDivisionError("bug"))

    assert isinstance(result, TerminalError)
    assert result.__cause__ is not None


def test_driver_specific_functions_refuse_foreign_exceptions() -> None:
    assert classify_postgres(tds_error(1205)) is None
    assert classify_mssql(pg_error("40P01")) is None


SECRET = "hunter2-Secret"


@pytest.mark.parametrize(
    "message",
    [
        f"could not connect to postgresql://warehouse:{SECRET}@pg:5432/dw",
        f"connect failed: host=pg user=w password={SECRET} dbname=dw",
        f"Server=sql;Database=shop;User Id=sa;Password={SECRET};",
        f"password='{SECRET}'",
        f'PWD="{SECRET}"',
    ],
)
def test_messages_never_carry_credentials(message: str) -> None:
    for exc in (pg8000.exceptions.InterfaceError(message), tds_error(18456), pg_error("28P01", message)):
        if isinstance(exc, tds.DatabaseError):
            exc.args = (message,)
            exc.text = message
        result = classify(exc)
        assert SECRET not in str(result)
        assert SECRET not in repr(result)
    assert SECRET not in scrub(message)


def test_docs_errors_tables_are_current() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "errors.md").read_text(encoding="utf-8")
    generated = text[text.index(DOC_BEGIN) + len(DOC_BEGIN) : text.index(DOC_END)].strip()

    assert generated == render_error_tables().strip(), "run: python -m mssql2pg.classify --write docs/errors.md"


@pytest.mark.parametrize("code", ["23505", "40P01", "57P01", "53100"])
def test_docs_errors_lists_the_codes_the_brief_names(code: str) -> None:
    assert f"| `{code}` |" in render_error_tables()


@pytest.mark.parametrize(
    ("number", "severity", "kind", "driver_class"),
    [
        (2627, 14, TerminalError, tds.IntegrityError),
        (1205, 13, TransientError, tds.OperationalError),
        (208, 16, TerminalError, tds.ProgrammingError),
        (9002, 17, TransientError, tds.OperationalError),
    ],
)
def test_exceptions_built_the_way_python_tds_builds_them(
    number: int, severity: int, kind: type[Exception], driver_class: type[Exception]
) -> None:
    """python-tds turns a server ERROR token into an exception with this function: use it, not a guess."""
    exc = mssql_error(number, f"message {number}", severity)

    result = classify(exc)

    assert isinstance(exc, driver_class)
    assert isinstance(result, kind)
    assert result.code == number  # type: ignore[attr-defined]
    assert f"message {number}" in str(result)


def test_setup_errors_are_terminal_for_the_pipeline_and_keep_their_hint() -> None:
    from mssql2pg.errors import SourceError  # noqa: PLC0415

    original = SourceError("CDC is not enabled on database shop", hint="run sys.sp_cdc_enable_db")

    result = classify(original)

    assert isinstance(result, TerminalError)
    assert result.scope == "pipeline"  # type: ignore[attr-defined]
    assert result.hint == "run sys.sp_cdc_enable_db"
    assert "CDC is not enabled" in str(result)
    assert result.__cause__ is original


def test_a_refused_certificate_is_transient_and_named_in_one_line() -> None:
    """``ssl.SSLCertVerificationError`` is an ``OSError``; it gets its own message, not "network error"."""
    exc = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    exc.verify_message = "self-signed certificate in certificate chain"

    error = classify(exc)

    assert isinstance(error, TransientError)
    assert error.args[0] == (
        "TLS: the database server's certificate was refused: self-signed certificate in certificate chain"
    )
    assert error.hint is not None
    assert "sslrootcert" in error.hint


def test_a_server_without_tls_asked_for_tls_is_named() -> None:
    error = classify(pg8000.exceptions.InterfaceError("Server refuses SSL"))

    assert isinstance(error, TransientError)
    assert "does not offer TLS" in error.args[0]


def test_a_failed_sql_server_handshake_is_transient_with_the_reason() -> None:
    exc = OpenSSL.SSL.Error([("SSL routines", "", "certificate verify failed")])

    error = classify(exc)

    assert isinstance(error, TransientError)
    assert error.args[0] == "TLS handshake with SQL Server failed: certificate verify failed"


def test_a_sql_server_certificate_for_another_host_is_transient_and_named() -> None:
    error = classify(tds.Error("Certificate does not match host name 'mssql.example'"))

    assert isinstance(error, TransientError)
    assert "certificate was refused" in error.args[0]
    assert "mssql.example" in error.args[0]


def test_a_refusal_with_a_hint_of_its_own_keeps_it() -> None:
    """The ``target.protect`` guard raises insufficient_privilege with a HINT saying which configuration writes
    through it: that, not the generic "grant the privileges", is what the user must read."""
    guarded = classify(pg_error("42501", "dbo.t is replicated by mssql2pg", H="use target.protect: true"))
    assert guarded.hint == "use target.protect: true"
    assert "privileges listed" in str(classify(pg_error("42501", "permission denied for table t")).hint)
    assert classify(pg_error("23505", "duplicate", H="server hint")).hint != "server hint"  # only where it knows
