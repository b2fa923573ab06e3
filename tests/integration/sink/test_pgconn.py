"""A live pg8000 native connection is a :class:`mssql2pg.pgconn.PgConnection`, and behaves as it says."""

from __future__ import annotations

import pytest

from mssql2pg.pgconn import PgConnection, fetch
from tests.fixtures.target import Connect

pytestmark = pytest.mark.integration


def test_a_pg8000_native_connection_satisfies_the_protocol(target_connect: Connect) -> None:
    conn: PgConnection = target_connect()
    assert isinstance(conn, PgConnection)

    assert conn.run("CREATE TABLE t (x int)") is None  # no result set
    conn.run("COPY t FROM STDIN", stream=[b"1\n2\n", b"3\n"])
    assert conn.row_count == 3
    assert fetch(conn, "SELECT sum(x) FROM t WHERE x > :low", low=1) == [[5]]
    assert fetch(conn, "SELECT x FROM t WHERE false") == []
    conn.close()
