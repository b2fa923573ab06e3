"""The test harness itself: private servers can be stopped and restarted, and the proxy really cuts."""

from __future__ import annotations

import pg8000.native
import pytest

from tests.fixtures.pg import PgServer
from tests.fixtures.proxy import TcpProxy
from tests.fixtures.waiting import WaitTimeoutError, wait_for

pytestmark = pytest.mark.integration


def test_server_stop_and_restart_keeps_data(fresh_server: PgServer) -> None:
    conn = fresh_server.connect()
    conn.run("CREATE TABLE t (x int)")
    conn.run("INSERT INTO t VALUES (1), (2)")
    conn.close()

    fresh_server.stop("immediate")

    assert not fresh_server.is_running()
    with pytest.raises(Exception):  # noqa: B017, PT011 - any connection error will do
        fresh_server.connect()

    fresh_server.start()
    conn = fresh_server.connect()

    assert conn.run("SELECT sum(x) FROM t") == [[3]]
    conn.close()


def test_proxy_forwards_and_cut_resets_connections(source_server: PgServer, tcp_proxy) -> None:  # type: ignore[no-untyped-def]
    proxy: TcpProxy = tcp_proxy(source_server)
    conn = pg8000.native.Connection(
        user="postgres", password=source_server.password, host="127.0.0.1", port=proxy.listen_port
    )

    assert conn.run("SELECT 40 + 2") == [[42]]

    proxy.cut()
    with pytest.raises(Exception):  # noqa: B017, PT011 - the driver reports a reset in its own way
        conn.run("SELECT 1")
    with pytest.raises(Exception):  # noqa: B017, PT011
        pg8000.native.Connection(
            user="postgres", password=source_server.password, host="127.0.0.1", port=proxy.listen_port, timeout=2
        )

    proxy.restore()
    conn2 = pg8000.native.Connection(
        user="postgres", password=source_server.password, host="127.0.0.1", port=proxy.listen_port
    )

    assert conn2.run("SELECT 1") == [[1]]
    conn2.close()


def test_wait_for_reports_last_value() -> None:
    with pytest.raises(WaitTimeoutError, match="last saw: 0"):
        wait_for(lambda: 0, timeout=0.2, what="zero to become truthy")

    assert wait_for(lambda: 5, timeout=1, what="five") == 5
