"""The live-stack helpers, checked without Docker: parsing `docker compose ps`, and moving every port."""

from __future__ import annotations

import pytest

from tests.compose.live_stack import LiveStack, parse_ps, service_state
from tests.compose.stack_files import services


@pytest.mark.parametrize(
    "output",
    [
        '[{"Service":"mssql","State":"running","Health":"healthy"},'
        '{"Service":"mssql-init","State":"exited","Health":"","ExitCode":0}]',
        '{"Service":"mssql","State":"running","Health":"healthy"}\n'
        '{"Service":"mssql-init","State":"exited","Health":"","ExitCode":0}\n',
    ],
    ids=["array", "ndjson"],
)
def test_parse_ps_reads_both_compose_output_formats(output: str) -> None:
    rows = parse_ps(output)
    assert {r["Service"]: service_state(r) for r in rows} == {"mssql": "healthy", "mssql-init": "exited(0)"}


def test_service_state_tells_a_failed_one_shot_from_a_running_service() -> None:
    assert service_state({"State": "exited", "ExitCode": 1}) == "exited(1)"
    assert service_state({"State": "running", "Health": ""}) == "running"
    assert service_state({"State": "running", "Health": "starting"}) == "starting"


def test_the_live_stack_moves_every_published_port() -> None:
    live = LiveStack(project="x", ports={"postgres": 15432})
    assert live.env["MSSQL2PG_PORT_POSTGRES"] == "15432"
    full = LiveStack(project="x")
    assert len(set(full.ports.values())) == len(full.ports)
    published = {name for name, service in services().items() if service.get("ports")}
    assert published == set(full.ports)
