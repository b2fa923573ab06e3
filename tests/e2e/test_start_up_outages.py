"""A database that is down when ``mssql2pg run`` starts: start-up (discovery, control state, target DDL) runs
inside the same retry loop as streaming.

The pipeline runs as a subprocess (as users run it); the tests stop the source's or the target's own PostgreSQL
server before it starts and start it again later. While the database is down the process stays up, logs one
JSON line per failed attempt (the classified error, the attempt number, the next delay) and ``/readyz`` names
the failing side as ``degraded``; once the database is back it replicates, and ``/readyz`` turns healthy.
With ``retry.max_attempts`` set it gives up after that many attempts: a non-zero exit with one error line and
no traceback.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mssql2pg.demo.workload import TABLES
from mssql2pg.emulator import connect
from tests.e2e.pipeline_process import run_cli, write_config
from tests.e2e.test_outages import Stream, component_status, readiness, stream_factory
from tests.fixtures.emulator import emulated_source_on
from tests.fixtures.pg import PgServer
from tests.fixtures.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

__all__ = ["stream_factory"]  # the fixture, shared with test_outages

RETRIES_SEEN = 3  # failed attempts to observe before the database comes back


def retry_lines(log_text: str) -> list[dict[str, Any]]:
    """The JSON log lines that report a failed attempt (they carry ``attempt``)."""
    lines = []
    for line in log_text.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and "attempt" in event:
            lines.append(event)
    return lines


def assert_reports_attempts(lines: list[dict[str, Any]], side: str) -> None:
    assert [e["attempt"] for e in lines] == list(range(1, len(lines) + 1)), lines
    for event in lines:
        assert event["component_name"] == side, event
        assert event["error"], event
        assert event["next_delay_s"] > 0, event


def wait_while_down(stream: Stream, side: str) -> list[dict[str, Any]]:
    """Wait until ``/readyz`` says ``side`` is degraded and several attempts were logged; the process must
    stay up all along."""

    def degraded_and_retrying() -> bool:
        stream.pipeline_alive()
        return (
            component_status(stream.http_port, side) == "degraded"
            and len(retry_lines(stream.pipeline.log_text())) >= RETRIES_SEEN
        )

    wait_for(degraded_and_retrying, timeout=60, what=f"/readyz to report {side} degraded while retrying")
    _, body = readiness(stream.http_port)
    assert body["components"][side]["reason"], body
    return retry_lines(stream.pipeline.log_text())


def test_target_down_at_start_then_back(
    emulated_source_url: str, fresh_server: PgServer, stream_factory: Callable[..., Stream]
) -> None:
    target_url = fresh_server.url(fresh_server.create_database("dw"))
    stream = stream_factory(emulated_source_url, target_url)
    stream.workload.run(20)
    fresh_server.stop("fast")

    stream.start()
    lines = wait_while_down(stream, "target")

    assert_reports_attempts(lines, "target")
    fresh_server.start()
    stream.workload.run(10)
    stream.wait_equal(what="the target to equal the source once the target is back")
    stream.wait_ready()
    stream.pipeline_alive()
    assert stream.pipeline.starts == 1
    assert "Traceback" not in stream.pipeline.log_text()


def test_source_down_at_start_then_back(
    fresh_server: PgServer, target_url: str, stream_factory: Callable[..., Stream]
) -> None:
    source_url = emulated_source_on(fresh_server)
    stream = stream_factory(source_url, target_url)
    stream.workload.run(20)
    stream.conn.close()
    fresh_server.stop("fast")

    stream.start()
    lines = wait_while_down(stream, "source")

    assert_reports_attempts(lines, "source")
    assert component_status(stream.http_port, "target") == "healthy"  # it answered: only the source is named
    fresh_server.start()
    stream.conn = connect(source_url)
    stream.workload.conn = stream.conn
    stream.workload.run(10)
    stream.wait_equal(what="the target to equal the source once the source is back")
    stream.wait_ready()
    stream.pipeline_alive()
    assert stream.pipeline.starts == 1
    assert "Traceback" not in stream.pipeline.log_text()


def test_max_attempts_with_the_target_down_exits_with_one_error_line(
    emulated_source_url: str, fresh_server: PgServer, tmp_path: Path
) -> None:
    target_url = fresh_server.url(fresh_server.create_database("dw"))
    fresh_server.stop("fast")
    config = write_config(
        tmp_path / "pipeline.yaml",
        emulated_source_url,
        target_url,
        list(TABLES),
        retry={"initial": 0.2, "maximum": 1, "max_attempts": 2},
    )

    result = run_cli("run", "--config", str(config), timeout=120)

    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Traceback" not in output
    lines = retry_lines(result.stdout)
    assert [e["attempt"] for e in lines] == [1, 2], output
    assert all(e["component_name"] == "target" for e in lines), lines
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert "2 failed attempts" in errors[0]
    assert "max_attempts" in errors[0]
