"""The facts ``classify`` reads from a driver error, from exceptions built the way the drivers build them.

pg8000 raises ``pg8000.exceptions.DatabaseError(fields)`` for every server error, ``fields`` being the server's
ErrorResponse fields keyed by their one-letter codes (the dicts below were captured from PostgreSQL 15).
python-tds builds its exceptions with ``tds_base._create_exception_by_message``, which sets ``number``.
SQLAlchemy wraps either in a ``DBAPIError`` whose ``orig`` is the driver's exception.
"""

from __future__ import annotations

import pg8000.exceptions
import pytds.tds_base as tds
import pytest
import sqlalchemy.exc

from mssql2pg.classify import (
    CopyErrorPosition,
    copy_error_position,
    is_undefined_column,
    is_undefined_object,
    mssql_number,
    postgres_error,
    server_fields,
    server_message,
    sqlstate,
)
from tests.fixtures.driver_errors import mssql_error


def pg(**fields: str) -> pg8000.exceptions.DatabaseError:
    return pg8000.exceptions.DatabaseError({"S": "ERROR", "V": "ERROR", **fields})


def wrapped(exc: Exception) -> sqlalchemy.exc.DBAPIError:
    """``exc`` as SQLAlchemy hands it to us (its dialect passes the driver's DB-API ``Error`` base class)."""
    dbapi_error = pg8000.exceptions.Error if isinstance(exc, pg8000.exceptions.Error) else tds.Error
    error = sqlalchemy.exc.DBAPIError.instance("SELECT 1", None, exc, dbapi_error)
    assert isinstance(error, sqlalchemy.exc.DBAPIError)
    assert error.orig is exc
    return error


def caused(exc: Exception) -> RuntimeError:
    """``exc`` behind ``raise ... from exc``."""
    outer = RuntimeError("while applying")
    outer.__cause__ = exc
    return outer


UNDEFINED_COLUMN = pg(C="42703", M='column "nope" does not exist', P="8")
UNDEFINED_TABLE = pg(C="42P01", M='relation "cdc.change_tables" does not exist', P="15")
UNDEFINED_SCHEMA = pg(C="3F000", M='schema "cdc" does not exist', P="8")
BAD_INTEGER = pg(C="22P02", M='invalid input syntax for type integer: "zz"', W='COPY t, line 2, column qty: "zz"')


# --- where the driver error is ----------------------------------------------------------------------------------


@pytest.mark.parametrize("outer", [lambda e: e, wrapped, caused, lambda e: caused(wrapped(e))])
def test_the_postgres_error_is_found_directly_inside_sqlalchemy_and_behind_a_cause(outer: object) -> None:
    exc = outer(UNDEFINED_COLUMN)  # type: ignore[operator]

    assert postgres_error(exc) is UNDEFINED_COLUMN
    assert sqlstate(exc) == "42703"
    assert server_fields(exc) == {
        "S": "ERROR",
        "V": "ERROR",
        "C": "42703",
        "M": 'column "nope" does not exist',
        "P": "8",
    }


@pytest.mark.parametrize("outer", [lambda e: e, wrapped, caused])
def test_the_sql_server_number_is_found_directly_inside_sqlalchemy_and_behind_a_cause(outer: object) -> None:
    exc = outer(mssql_error(207, "Invalid column name 'qty'."))  # type: ignore[operator]

    assert mssql_number(exc) == 207
    assert sqlstate(exc) is None


def test_an_error_shaped_like_a_driver_error_is_not_one() -> None:
    """The fields are read from the drivers' own classes, not from anything that happens to hold a dict."""

    class LookalikeError(Exception):
        pass

    fake = LookalikeError({"C": "42703", "M": "column qty does not exist"})
    fake.number = 207  # type: ignore[attr-defined]

    assert postgres_error(fake) is None
    assert server_fields(fake) is None
    assert sqlstate(fake) is None
    assert mssql_number(fake) is None
    assert not is_undefined_column(fake)


def test_client_side_driver_errors_carry_no_server_facts() -> None:
    """pg8000's InterfaceError (connection lost) has no fields; a python-tds error without a number is not a
    server error (python-tds uses 0 until a server message sets it)."""
    assert server_fields(pg8000.exceptions.InterfaceError("network error")) is None
    assert mssql_number(tds.OperationalError("Cannot connect to server")) is None
    assert server_message(pg8000.exceptions.InterfaceError("network error")) is None


def test_server_message_is_the_servers_own_text_not_the_drivers_wrapping() -> None:
    assert server_message(wrapped(UNDEFINED_COLUMN)) == 'column "nope" does not exist'
    sql_server = mssql_error(207, "Invalid column name 'qty'.")
    assert "SQL Server message 207" in sql_server.message  # python-tds' decorated form ...
    assert server_message(wrapped(sql_server)) == "Invalid column name 'qty'."  # ... is not what we report


# --- undefined column / object ----------------------------------------------------------------------------------


def test_undefined_column_by_sqlstate_42703_and_sql_server_207() -> None:
    assert is_undefined_column(wrapped(UNDEFINED_COLUMN))
    assert is_undefined_column(wrapped(mssql_error(207, "Invalid column name 'qty'.")))
    assert not is_undefined_column(UNDEFINED_TABLE)
    assert not is_undefined_column(mssql_error(208, "Invalid object name 'cdc.change_tables'."))


def test_undefined_column_is_decided_by_code_never_by_message_text() -> None:
    assert not is_undefined_column(RuntimeError("Invalid column name 'qty'."))
    assert not is_undefined_column(pg(C="42P01", M='column "qty" does not exist'))
    assert is_undefined_column(pg(C="42703", M="any text at all"))


def test_undefined_object_by_sqlstate_42p01_3f000_and_sql_server_208() -> None:
    assert is_undefined_object(wrapped(UNDEFINED_TABLE))
    assert is_undefined_object(wrapped(UNDEFINED_SCHEMA))
    assert is_undefined_object(wrapped(mssql_error(208, "Invalid object name 'cdc.change_tables'.")))
    assert not is_undefined_object(UNDEFINED_COLUMN)
    assert not is_undefined_object(mssql_error(207, "Invalid column name 'qty'."))


def test_undefined_object_is_decided_by_code_never_by_message_text() -> None:
    assert not is_undefined_object(RuntimeError('relation "cdc.change_tables" does not exist (Msg 208)'))
    assert not is_undefined_object(pg(C="3D000", M='database "shop" does not exist'))
    assert not is_undefined_object(pg(C="28P01", M="password authentication failed: undefined_table 42P01"))


# --- the row and column of a COPY error -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        # a value the column's input function refuses: line and column in the context
        (
            {"C": "22P02", "M": 'invalid input syntax for type integer: "zz"', "W": 'COPY t, line 2, column qty: "zz"'},
            CopyErrorPosition(2, "qty"),
        ),
        (
            {"C": "22003", "M": "numeric field overflow", "W": 'COPY t, line 7, column amount: "12345"'},
            CopyErrorPosition(7, "amount"),
        ),
        ({"C": "2200N", "M": "invalid XML content", "W": "COPY t, line 1, column doc"}, CopyErrorPosition(1, "doc")),
        ({"C": "22004", "M": "x", "W": "COPY t, line 3, column v: null input"}, CopyErrorPosition(3, "v")),
        # a column name with ": " in it (PostgreSQL does not quote it)
        (
            {"C": "22P02", "M": "invalid input syntax", "W": 'COPY t, line 2, column a: b: "zz"'},
            CopyErrorPosition(2, "a: b"),
        ),
        # a value with ", column " and a newline in it
        (
            {"C": "22P02", "M": "x", "W": 'COPY t, line 4, column note: "a, column b: "\nc"'},
            CopyErrorPosition(4, "note"),
        ),
        # a constraint: the line only; the column from the structured column_name field when the server sends it
        (
            {"C": "23502", "M": "null value", "W": 'COPY t, line 1: "1\t1\t\\N\tx"', "c": "amount"},
            CopyErrorPosition(1, "amount"),
        ),
        ({"C": "23505", "M": "duplicate key", "W": "COPY t, line 12"}, CopyErrorPosition(12, None)),
        # a trigger's context comes first; the COPY line is the row, not the function's line 1
        (
            {"C": "23514", "M": "no 3", "W": 'PL/pgSQL function f() line 1 at RAISE\nCOPY u, line 2: "3\t1"'},
            CopyErrorPosition(2, None),
        ),
    ],
)
def test_copy_error_position_from_the_where_field(fields: dict[str, str], expected: CopyErrorPosition) -> None:
    assert copy_error_position(caused(pg(**fields))) == expected


def test_copy_error_position_reads_the_where_field_not_the_message() -> None:
    assert copy_error_position(pg(C="22P02", M="COPY t, line 2, column qty: bad")) is None


@pytest.mark.parametrize(
    "exc",
    [
        pg(C="42501", M="permission denied", W="COPY t, line 2"),  # not about a row's data
        pg(C="57014", M="canceling statement", W="COPY t, line 2"),  # a cancel, retried
        pg(C="22P02", M="invalid input syntax", W="SQL function f statement 1"),  # no COPY context
        RuntimeError('COPY t, line 2, column qty: "zz"'),
        mssql_error(245, "Conversion failed"),
    ],
)
def test_copy_error_position_only_for_a_data_error_of_a_copy(exc: Exception) -> None:
    assert copy_error_position(exc) is None


def test_copy_error_position_of_a_real_capture() -> None:
    assert copy_error_position(wrapped(BAD_INTEGER)) == CopyErrorPosition(2, "qty")
