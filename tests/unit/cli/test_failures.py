"""How a failed command is told: one line, the database named, what to do, the right exit code."""

from __future__ import annotations

import ssl
from collections.abc import Iterator

import OpenSSL.SSL
import pg8000.exceptions
import pytds.tds_base as tds
import pytest
import sqlalchemy.exc

from mssql2pg.classify import classify
from mssql2pg.cli.failures import explain
from mssql2pg.cli.options import Database
from mssql2pg.errors import ConfigError, TerminalError
from mssql2pg.observability.logging import clear_registered_secrets, register_secret

SOURCE = Database("source", "postgresql+pg8000://cdc:***@127.0.0.1:1111/shop", "source.url")
TARGET = Database("target", "postgresql://dw:***@127.0.0.1:2222/dw", "target.url")
EMULATOR = Database("emulator", "postgresql://u:***@127.0.0.1:3333/x", "--url")
REFUSED = "Can't create a connection to host 127.0.0.1 and port 2222 (timeout is 10.0 and source_address is None)."


@pytest.fixture(autouse=True)
def _no_secrets() -> Iterator[None]:
    yield
    clear_registered_secrets()


def _one_line(text: str) -> str:
    assert "\n" not in text
    assert text.startswith("error: ")
    return text


def test_a_bare_pg8000_connection_error_is_the_targets() -> None:
    failure = explain(pg8000.exceptions.InterfaceError(REFUSED), [SOURCE, TARGET])

    line = _one_line(failure.line)
    assert failure.exit_code == 2
    assert f"cannot connect to the target database {TARGET.url}" in line
    assert "port 2222" in line  # the driver's own words
    assert "target.url" in line
    assert SOURCE.url not in line
    assert not failure.unexpected


def test_an_error_of_the_sqlalchemy_engine_is_the_sources() -> None:
    wrapped = sqlalchemy.exc.InterfaceError(None, None, pg8000.exceptions.InterfaceError(REFUSED))

    failure = explain(wrapped, [SOURCE, TARGET])

    line = _one_line(failure.line)
    assert failure.exit_code == 2
    assert f"cannot connect to the source database {SOURCE.url}" in line
    assert "source.url" in line
    assert "sqlalche.me" not in line  # SQLAlchemy's background link is noise here


def test_a_python_tds_error_is_the_sources() -> None:
    failure = explain(tds.OperationalError("Cannot connect to server: Connection refused"), [SOURCE, TARGET])

    assert f"cannot connect to the source database {SOURCE.url}" in _one_line(failure.line)
    assert failure.exit_code == 2


def _certificate_refused(reason: str) -> ssl.SSLCertVerificationError:
    exc = ssl.SSLCertVerificationError(1, f"[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: {reason}")
    exc.verify_message = reason
    return exc


def test_a_certificate_the_target_connector_refused_names_the_target_and_the_tls_settings() -> None:
    """pg8000 lets the ``ssl`` module's error through unwrapped; only the target is connected with it (the
    source's SQL Server TLS is pyOpenSSL's, the emulator is reached through SQLAlchemy)."""
    failure = explain(_certificate_refused("unable to get local issuer certificate"), [SOURCE, TARGET])

    line = _one_line(failure.line)
    assert failure.exit_code == 2
    assert f"the target database {TARGET.url}" in line
    assert SOURCE.url not in line
    assert "certificate was refused: unable to get local issuer certificate" in line
    assert "target.sslrootcert" in line  # what to check: the TLS settings, not "is it running"
    assert "running and reachable" not in line


def test_a_certificate_python_tds_refused_names_the_source_and_its_tls_settings() -> None:
    exc = OpenSSL.SSL.Error([("SSL routines", "", "certificate verify failed")])

    failure = explain(exc, [SOURCE, TARGET])

    line = _one_line(failure.line)
    assert failure.exit_code == 2
    assert f"the source database {SOURCE.url}" in line
    assert TARGET.url not in line
    assert "certificate verify failed" in line
    assert "source.ca_file" in line
    assert "running and reachable" not in line


def test_a_classified_error_without_its_driver_exception_names_every_database() -> None:
    """An error that crossed the reader process's pipe no longer says which driver raised it."""
    transported = classify(pg8000.exceptions.InterfaceError(REFUSED))
    transported.__cause__ = None

    failure = explain(transported, [SOURCE, TARGET])

    line = _one_line(failure.line)
    assert failure.exit_code == 2
    assert SOURCE.url in line
    assert TARGET.url in line


def test_a_refused_login_says_so_with_the_password_variable_of_that_side() -> None:
    login = pg8000.exceptions.DatabaseError(
        {"S": "FATAL", "C": "28P01", "M": 'password authentication failed for user "dw"'}
    )

    target = explain(login, [SOURCE, TARGET])
    source = explain(sqlalchemy.exc.DatabaseError(None, None, login), [SOURCE, TARGET])

    assert f"the target database {TARGET.url} refused the connection" in _one_line(target.line)
    assert "MSSQL2PG__TARGET__PASSWORD" in target.line
    assert f"the source database {SOURCE.url} refused the connection" in _one_line(source.line)
    assert "MSSQL2PG__SOURCE__PASSWORD" in source.line
    assert "MSSQL2PG__TARGET__PASSWORD" not in source.line
    assert target.exit_code == source.exit_code == 2


def test_the_only_database_of_a_command_is_the_one_named() -> None:
    failure = explain(pg8000.exceptions.InterfaceError(REFUSED), [EMULATOR])

    line = _one_line(failure.line)
    assert f"cannot connect to the emulator database {EMULATOR.url}" in line
    assert "--url" in line


def test_a_connection_error_before_any_database_is_known_still_is_one_line() -> None:
    failure = explain(ConnectionRefusedError(111, "Connection refused"), [])

    assert "cannot connect" in _one_line(failure.line)
    assert failure.exit_code == 2


def test_a_config_error_of_several_problems_is_one_line_with_every_problem_and_the_hint() -> None:
    error = ConfigError(
        "invalid configuration (p.yaml), 2 problems:\n  - target: required section missing\n  - unknown key 'foo'",
        hint="fix the keys above; see docs/configuration.md",
    )

    failure = explain(error, [])

    line = _one_line(failure.line)
    assert failure.exit_code == 2
    assert "invalid configuration (p.yaml), 2 problems: target: required section missing; unknown key 'foo'" in line
    assert "see docs/configuration.md" in line


def test_a_terminal_fault_exits_1() -> None:
    failure = explain(TerminalError("the target refused the batch", hint="see the log"), [SOURCE, TARGET])

    assert failure.exit_code == 1
    assert "the target refused the batch" in _one_line(failure.line)


def test_a_query_error_of_a_database_names_it_and_exits_1() -> None:
    missing = pg8000.exceptions.DatabaseError({"S": "ERROR", "C": "42P01", "M": 'relation "x" does not exist'})

    failure = explain(missing, [SOURCE, TARGET])

    assert failure.exit_code == 1
    line = _one_line(failure.line)
    assert TARGET.url in line
    assert "42P01" in line


def test_an_unexpected_error_is_one_line_marked_as_a_bug_without_secrets() -> None:
    register_secret("hunter2-secret")
    failure = explain(ValueError("boom at postgresql://u:pw1234@h/db with hunter2-secret"), [SOURCE, TARGET])

    line = _one_line(failure.line)
    assert failure.unexpected
    assert failure.exit_code == 1
    assert "bug" in line
    assert "pw1234" not in line
    assert "hunter2-secret" not in line
