"""Drive the Compose stack from a test: bring it up on free loopback ports, wait for health, talk to it.

Used by tests/compose/test_live_stack.py on a machine with a Docker engine. Every host port is moved to a
free one (MSSQL2PG_PORT_*), and the project has its own name, so a developer's running stack is untouched.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from tests.compose.stack_files import COMPOSE_FILE, secret_file, services
from tests.fixtures.pg import free_port

# Published service → the variable that moves its host port (see compose.yaml).
PORT_VARIABLES = {
    "mssql": "MSSQL2PG_PORT_MSSQL",
    "postgres": "MSSQL2PG_PORT_POSTGRES",
    "pipeline": "MSSQL2PG_PORT_PIPELINE",
    "prometheus": "MSSQL2PG_PORT_PROMETHEUS",
    "alertmanager": "MSSQL2PG_PORT_ALERTMANAGER",
    "perses": "MSSQL2PG_PORT_PERSES",
    "victorialogs": "MSSQL2PG_PORT_VICTORIALOGS",
    "fluent-bit": "MSSQL2PG_PORT_FLUENT_BIT",
}
ONE_SHOT = {"mssql-init"}


def docker_unavailable_reason() -> str | None:
    """Why the live stack cannot run here, or None when it can."""
    if shutil.which("docker") is None:
        return "docker engine not available (no docker CLI)"
    try:
        info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30, check=False)
    except subprocess.TimeoutExpired:
        return "docker engine not available (`docker info` timed out)"
    if info.returncode != 0:
        return "docker engine not available (`docker info` fails)"
    version = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, check=False)
    if version.returncode != 0:
        return "docker compose plugin not available (`docker compose version` fails)"
    return None


def parse_ps(output: str) -> list[dict[str, Any]]:
    """`docker compose ps --format json`: a JSON array (Compose < 2.21) or one JSON object per line."""
    text = output.strip()
    if not text:
        return []
    if text.startswith("["):
        rows: list[dict[str, Any]] = json.loads(text)
        return rows
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def service_state(row: dict[str, Any]) -> str:
    """One word per container: healthy, unhealthy, starting, running, exited(N), …"""
    state = str(row.get("State", "")).lower()
    if state == "exited":
        return f"exited({row.get('ExitCode', '?')})"
    health = str(row.get("Health", "")).lower()
    return health or state


@dataclass
class LiveStack:
    project: str = field(default_factory=lambda: os.environ.get("MSSQL2PG_COMPOSE_PROJECT", "mssql2pg-test"))
    ports: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.ports:
            self.ports = {name: free_port() for name in PORT_VARIABLES}

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, **{PORT_VARIABLES[name]: str(port) for name, port in self.ports.items()}}

    def compose(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = ["docker", "compose", "-f", str(COMPOSE_FILE), "-p", self.project, *args]
        result = subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            msg = f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
            raise AssertionError(msg)
        return result

    def up(self) -> None:
        self.compose("up", "-d", "--build", "--remove-orphans", timeout=1800)

    def down(self) -> None:
        self.compose("down", "--volumes", "--remove-orphans", timeout=300, check=False)

    def states(self) -> dict[str, str]:
        rows = parse_ps(self.compose("ps", "--all", "--format", "json").stdout)
        return {str(row["Service"]): service_state(row) for row in rows}

    def expected_states(self) -> dict[str, set[str]]:
        """What "up" means per service: healthy if it has a health check, exited(0) for one-shots."""
        expected: dict[str, set[str]] = {}
        for name, service in services().items():
            if name in ONE_SHOT:
                expected[name] = {"exited(0)"}
            elif "healthcheck" in service:
                expected[name] = {"healthy"}
            else:
                expected[name] = {"running"}
        return expected

    def all_up(self) -> bool:
        states = self.states()
        failed = {n: s for n, s in states.items() if s.startswith("exited(") and s != "exited(0)"}
        if failed:
            msg = f"services exited with an error: {failed}\n{self.logs()}"
            raise AssertionError(msg)
        return all(states.get(name) in ok for name, ok in self.expected_states().items())

    def logs(self, tail: int = 80) -> str:
        return self.compose("logs", "--no-color", "--tail", str(tail), check=False).stdout

    def sqlcmd(self, sql: str) -> str:
        """Run T-SQL in database shop as sa, with sqlcmd inside the mssql container."""
        script = (
            'SQLCMDPASSWORD="$(cat /run/secrets/mssql_sa_password)" exec /opt/mssql-tools18/bin/sqlcmd '
            '-C -S 127.0.0.1 -U sa -d shop -b -I -h -1 -W -Q "$1"'
        )
        return self.compose("exec", "-T", "mssql", "bash", "-c", script, "_", sql, timeout=120).stdout

    def warehouse(self) -> Any:
        """A pg8000 connection to the warehouse as the pipeline's role."""
        import pg8000.native  # noqa: PLC0415

        return pg8000.native.Connection(
            user="warehouse",
            password=secret_file("warehouse_password").read_text(encoding="utf-8"),
            host="127.0.0.1",
            port=self.ports["postgres"],
            database="dw",
            timeout=10,
        )

    def url(self, service: str, path: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}{path}"

    def get_json(self, service: str, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(self.url(service, path) + query, timeout=10) as resp:  # noqa: S310 - loopback
            return json.loads(resp.read())

    def post_form(self, service: str, path: str, **form: str) -> str:
        data = urllib.parse.urlencode(form).encode()
        with urllib.request.urlopen(self.url(service, path), data=data, timeout=10) as resp:  # noqa: S310
            return str(resp.read().decode())
