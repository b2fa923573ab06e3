"""pg8000's native connection satisfies :class:`mssql2pg.pgconn.PgConnection`, member by member.

mypy cannot check this (pg8000 ships no type information, so its classes are ``Any`` to mypy): the check is made
here on the class, without a server; ``tests/integration/sink/test_pgconn.py`` checks a live connection.
"""

from __future__ import annotations

import inspect
from typing import Any

import pg8000.native
import pytest

from mssql2pg.pgconn import PgConnection, fetch


def _members() -> list[str]:
    return sorted(name for name in vars(PgConnection) if not name.startswith("_"))


def test_the_protocol_names_what_the_sink_uses() -> None:
    assert _members() == ["close", "row_count", "run"]


@pytest.mark.parametrize("name", _members())
def test_pg8000_native_connection_has_every_member_of_the_same_kind(name: str) -> None:
    ours = inspect.getattr_static(PgConnection, name)
    theirs = inspect.getattr_static(pg8000.native.Connection, name)
    assert isinstance(theirs, property) == isinstance(ours, property), name


def test_run_accepts_every_call_shape_of_the_protocol() -> None:
    signature = inspect.signature(pg8000.native.Connection.run)
    signature.bind(None, "SELECT 1")
    signature.bind(None, "COPY t FROM STDIN", stream=[b"1\n"])
    signature.bind(None, "SELECT :a, :b", a=1, b="x")
    signature.bind(None, "COPY t FROM STDIN", None, a=1)  # stream is the second positional parameter in both


def test_close_takes_no_argument() -> None:
    inspect.signature(pg8000.native.Connection.close).bind(None)


class _Fake:
    def __init__(self, result: list[list[Any]] | None) -> None:
        self.result = result
        self.row_count = -1

    def run(self, sql: str, stream: Any = None, **params: Any) -> list[list[Any]] | None:
        self.seen = (sql, params)
        return self.result

    def close(self) -> None:
        pass


def test_a_fake_with_the_members_is_a_pg_connection_at_runtime() -> None:
    assert isinstance(_Fake(None), PgConnection)
    assert not isinstance(object(), PgConnection)


def test_fetch_returns_the_rows_and_passes_the_parameters() -> None:
    fake = _Fake([[1, "a"]])
    assert fetch(fake, "SELECT :x", x=1) == [[1, "a"]]
    assert fake.seen == ("SELECT :x", {"x": 1})
    assert fetch(_Fake([]), "SELECT 1 WHERE false") == []


def test_fetch_refuses_a_statement_without_a_result_set() -> None:
    with pytest.raises(TypeError, match="CREATE TABLE"):
        fetch(_Fake(None), "CREATE TABLE t (x int)")
