"""The Compose stack's files, loaded once, and the small parsers the static tests share.

No Docker engine runs here, so the tests read the files the way Compose would: YAML with `${VAR:-default}`
interpolation, paths relative to the compose file's directory, `short` port and volume syntax.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE_DIR = REPO / "compose"
COMPOSE_FILE = COMPOSE_DIR / "compose.yaml"
PIPELINE_CONFIG = COMPOSE_DIR / "pipeline" / "pipeline.yaml"
PROMETHEUS_CONFIG = REPO / "monitoring" / "prometheus" / "prometheus.yml"
ALERTMANAGER_CONFIG = REPO / "monitoring" / "alertmanager" / "alertmanager.yml"
FLUENT_BIT_CONFIG = REPO / "monitoring" / "fluent-bit" / "fluent-bit.yaml"
PERSES_CONFIG = REPO / "monitoring" / "perses" / "config.yaml"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
MSSQL_INIT_DIR = COMPOSE_DIR / "mssql"

# `${NAME}`, `${NAME:-default}`, `${NAME-default}`; `$$` is a literal dollar.
_INTERPOLATION = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?-)(?P<default>[^}]*))?\}")


def interpolate(text: str, env: dict[str, str] | None = None) -> str:
    """Compose-style variable interpolation (the subset this stack uses)."""
    values = os.environ if env is None else env

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, default = match.group("name"), match.group("op"), match.group("default")
        value = values.get(name)
        if op == ":-" and not value:
            return default or ""
        if op == "-" and value is None:
            return default or ""
        return value or ""

    return _INTERPOLATION.sub(replace, text)


def _interpolate_tree(node: Any, env: dict[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [_interpolate_tree(item, env) for item in node]
    if isinstance(node, dict):
        return {key: _interpolate_tree(value, env) for key, value in node.items()}
    return node


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@cache
def compose_raw() -> dict[str, Any]:
    """compose.yaml as written (variables not expanded)."""
    doc = load_yaml(COMPOSE_FILE)
    assert isinstance(doc, dict), "compose.yaml must be a mapping"
    return doc


@cache
def compose() -> dict[str, Any]:
    """compose.yaml with every variable at its default, as `docker compose config` would see it here."""
    doc: dict[str, Any] = _interpolate_tree(compose_raw(), {})
    return doc


def services() -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = compose()["services"]
    return result


@dataclass(frozen=True)
class PortMapping:
    host_ip: str
    host_port: str
    container_port: str


def parse_port(spec: str | int | dict[str, Any]) -> PortMapping:
    """`[HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTO]` or the long form."""
    if isinstance(spec, dict):
        return PortMapping(
            str(spec.get("host_ip", "")), str(spec.get("published", "")), str(spec["target"]).split("/")[0]
        )
    parts = str(spec).split("/")[0].split(":")
    if len(parts) == 3:
        return PortMapping(parts[0], parts[1], parts[2])
    if len(parts) == 2:
        return PortMapping("", parts[0], parts[1])
    return PortMapping("", "", parts[0])


@dataclass(frozen=True)
class Mount:
    source: str
    target: str
    read_only: bool

    @property
    def is_bind(self) -> bool:
        return self.source.startswith((".", "/", "~"))

    def host_path(self) -> Path:
        return (COMPOSE_DIR / self.source).resolve()


def parse_volume(spec: str | dict[str, Any]) -> Mount:
    if isinstance(spec, dict):
        return Mount(str(spec.get("source", "")), str(spec["target"]), bool(spec.get("read_only", False)))
    parts = spec.split(":")
    if len(parts) == 1:
        return Mount("", parts[0], read_only=False)
    options = parts[2].split(",") if len(parts) > 2 else []
    return Mount(parts[0], parts[1], read_only="ro" in options)


def mounts(service: dict[str, Any]) -> list[Mount]:
    return [parse_volume(v) for v in service.get("volumes", [])]


def container_ports(service: dict[str, Any]) -> set[int]:
    """The ports a service listens on inside the network: `expose` plus the container side of `ports`."""
    exposed = {int(str(p).split("/")[0]) for p in service.get("expose", [])}
    published = {int(parse_port(p).container_port) for p in service.get("ports", [])}
    return exposed | published


def dependencies(service: dict[str, Any]) -> dict[str, str]:
    """depends_on as {service: condition}; the short list form means `service_started`."""
    raw = service.get("depends_on", {})
    if isinstance(raw, list):
        return dict.fromkeys(raw, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in raw.items()}


def secret_file(name: str) -> Path:
    spec: dict[str, str] = compose()["secrets"][name]
    return (COMPOSE_DIR / spec["file"]).resolve()


def pipeline_config() -> dict[str, Any]:
    doc: dict[str, Any] = load_yaml(PIPELINE_CONFIG)
    return doc
