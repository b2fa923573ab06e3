"""The demo and test servers (``mssql2pg.localpg``) never trust TCP: a scram password made up per server.

Before, pg_hba.conf trusted superuser ``postgres`` on 127.0.0.1, so any local user could connect and run
``COPY ... TO PROGRAM`` as the server's operating-system user.
"""

from __future__ import annotations

import pg8000.exceptions
import pg8000.native
import pytest

from mssql2pg.classify import sqlstate
from tests.fixtures.pg import PgServer

pytestmark = pytest.mark.integration


def test_tcp_without_the_password_is_refused(target_server: PgServer) -> None:
    # pg8000 fails in its own way (AttributeError) when the server asks for scram and it has no password
    with pytest.raises(Exception):  # noqa: B017, PT011
        pg8000.native.Connection(user=target_server.user, host="127.0.0.1", port=target_server.port)


def test_tcp_with_a_wrong_password_is_refused(target_server: PgServer) -> None:
    with pytest.raises(pg8000.exceptions.DatabaseError) as raised:
        pg8000.native.Connection(
            user=target_server.user, password="not-" + target_server.password, host="127.0.0.1", port=target_server.port
        )
    assert sqlstate(raised.value) == "28P01"  # invalid_password


def test_the_server_password_is_random_per_server_and_stored_as_scram(
    target_server: PgServer, source_server: PgServer
) -> None:
    conn = target_server.connect()
    try:
        stored = conn.run("SELECT left(rolpassword, 14) FROM pg_authid WHERE rolname = :u", u=target_server.user)
        hba = conn.run("SELECT type, auth_method FROM pg_hba_file_rules ORDER BY line_number")
    finally:
        conn.close()
    assert stored == [["SCRAM-SHA-256$"]]
    assert hba == [["local", "trust"], ["host", "scram-sha-256"]]  # trust on the private unix socket only
    assert source_server.password != target_server.password
    assert target_server.password not in repr(target_server)
