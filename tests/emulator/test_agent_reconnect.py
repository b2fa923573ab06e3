"""The emulated capture agent survives its PostgreSQL restarting, as SQL Server Agent comes back with its
server: `mssql2pg emulator agent` reconnects with exponential backoff, logs each attempt and the reconnect, and
captures what was written after the restart. A stop request while it waits to reconnect still ends it cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mssql2pg.emulator import connect, set_capture_mode
from tests.fixtures.emulator import emulated_source_on, enable_table
from tests.fixtures.pg import PgServer
from tests.fixtures.waiting import wait_for

pytestmark = pytest.mark.integration


def _captured(url: str) -> int:
    conn = connect(url)
    try:
        ((count,),) = conn.run('SELECT count(*) FROM cdc."dbo_t_CT"')
        return int(count)
    finally:
        conn.close()


def _insert(url: str, key: int) -> None:
    conn = connect(url)
    try:
        conn.run("INSERT INTO dbo.t VALUES (:k)", k=key)
    finally:
        conn.close()


@pytest.fixture
def source_url(fresh_server: PgServer) -> str:
    """An emulated source with CDC on ``dbo.t``, on a server of this test's own (it gets restarted)."""
    url = emulated_source_on(fresh_server)
    conn = connect(url)
    try:
        conn.run("CREATE SCHEMA dbo; CREATE TABLE dbo.t (id int PRIMARY KEY)")
        enable_table(conn, "dbo", "t")
    finally:
        conn.close()
    set_capture_mode(url, "agent")
    return url


@dataclass
class Agent:
    """The agent subprocess; its output goes to a file so a test can wait for a line while it runs."""

    proc: subprocess.Popen[bytes]
    output: Path

    def log(self) -> str:
        return self.output.read_text(errors="replace")

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)
        return self.log()


@pytest.fixture
def agent(source_url: str, tmp_path: Path) -> Iterator[Agent]:
    output = tmp_path / "agent.log"
    with output.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mssql2pg", "emulator", "agent", "--url", source_url, "--polling-interval", "200ms"],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    running = Agent(proc, output)
    yield running
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=30)


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_the_agent_reconnects_after_its_postgresql_restarts_and_captures_again(
    mode: str, fresh_server: PgServer, source_url: str, agent: Agent
) -> None:
    """``fast``: a clean shutdown (the agent's session is terminated); ``immediate``: a crash."""
    _insert(source_url, 1)
    wait_for(lambda: _captured(source_url) == 1, timeout=30, what="the agent to capture the first insert")

    fresh_server.restart(mode)
    _insert(source_url, 2)

    wait_for(lambda: _captured(source_url) == 2, timeout=60, what="the agent to capture an insert after the restart")
    assert agent.proc.poll() is None, f"the agent exited when its database restarted:\n{agent.log()}"
    out = agent.stop()
    assert agent.proc.returncode == 0, out
    assert "capture agent lost its database; reconnecting" in out
    assert "capture agent reconnected" in out
    assert "capture agent stopped after publishing 2 transactions" in out


def test_a_stop_request_while_the_database_is_down_ends_the_agent_cleanly(
    fresh_server: PgServer, source_url: str, agent: Agent
) -> None:
    _insert(source_url, 1)
    wait_for(lambda: _captured(source_url) == 1, timeout=30, what="the agent to capture the first insert")
    fresh_server.stop("fast")
    try:
        wait_for(lambda: "reconnecting" in agent.log(), timeout=30, what="the agent to notice its database is gone")
        assert agent.proc.poll() is None, agent.log()
        out = agent.stop()
    finally:
        fresh_server.start()
    assert agent.proc.returncode == 0, out
    assert "capture agent lost its database; reconnecting" in out
    assert "capture agent stopped after publishing 1 transactions" in out


def test_a_database_without_the_emulator_still_ends_the_agent_with_an_error(fresh_server: PgServer) -> None:
    """Retrying cannot install the emulator: a terminal error ends the agent at once, as before."""
    url = fresh_server.url(fresh_server.create_database("plain"))
    proc = subprocess.run(
        [sys.executable, "-m", "mssql2pg", "emulator", "agent", "--url", url, "--polling-interval", "200ms"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode != 0
    assert "cdc_emulator" in proc.stderr
    assert "reconnecting" not in proc.stdout
