"""The live processes of a spreading pipeline, as the server records them (``pipeline.group: auto``)."""

from __future__ import annotations

import pytest

from mssql2pg import control
from tests.fixtures.pg import PgServer
from tests.fixtures.target import Connect
from tests.fixtures.waiting import wait_for

pytestmark = pytest.mark.integration


def test_a_process_counts_while_its_connection_lives_and_pipelines_count_apart(target_connect: Connect) -> None:
    observer = target_connect()
    first, second, other = target_connect(), target_connect(), target_connect()
    assert control.live_instances(observer, "p") == 0

    assert control.register_instance(first, "p", "host-a:1")
    assert control.register_instance(second, "p", "host-b:2")
    assert control.register_instance(other, "q", "host-a:1")  # the same process name in another pipeline

    assert control.live_instances(observer, "p") == 2
    assert control.live_instances(observer, "q") == 1
    first.close()  # the process died: the server dropped its lock
    wait_for(lambda: control.live_instances(observer, "p") == 1, timeout=10, what="the dead process to stop counting")


def test_processes_of_another_database_on_the_same_server_do_not_count(
    target_connect: Connect, target_server: PgServer
) -> None:
    """Two warehouses (two target databases) on one server, each with a pipeline called the same: advisory locks
    are per database, and so is the count (a wrong count would skew each one's fair share of the groups)."""
    elsewhere = target_server.connect(target_server.create_database("other_dw"))
    try:
        assert control.register_instance(elsewhere, "p", "host-z:9")
        observer = target_connect()
        assert control.live_instances(observer, "p") == 0
        assert control.register_instance(target_connect(), "p", "host-a:1")
        assert control.live_instances(observer, "p") == 1
    finally:
        elsewhere.close()
