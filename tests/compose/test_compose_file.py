"""Static checks of compose/compose.yaml: what a Docker engine would reject or get wrong, found without one.

The schema test catches misspelt keys and wrong shapes; the rest catch what a schema cannot: an unpinned
image, a dependency on a health check that does not exist, a bind mount of a file nobody committed, a port
open to the network, a password written into the file.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.compose.stack_files import (
    COMPOSE_DIR,
    COMPOSE_FILE,
    REPO,
    compose,
    compose_raw,
    container_ports,
    dependencies,
    interpolate,
    mounts,
    parse_port,
    parse_volume,
    secret_file,
    services,
)

SCHEMA = Path(__file__).parent / "schema" / "compose-spec.json"

# Images without a shell or HTTP client (distroless): they get no Docker health check; Prometheus scrapes
# them and `up{job=…}` is their health. Anything else that runs long must have a health check.
DISTROLESS = {"perses", "fluent-bit"}
ONE_SHOT = {"mssql-init"}
EXPECTED_SERVICES = {
    "mssql",
    "mssql-init",
    "postgres",
    "pipeline",
    "prometheus",
    "alertmanager",
    "alert-sink",
    "perses",
    "fluent-bit",
    "victorialogs",
}


def test_the_stack_has_every_service_the_project_needs() -> None:
    assert set(services()) == EXPECTED_SERVICES


def test_compose_file_matches_the_compose_specification_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema (MIT) is not installed in .venv")
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(compose_raw())]
    assert errors == []


def test_the_schema_check_catches_a_wrong_dependency_condition() -> None:
    """The vendored schema really constrains the file: a misspelt condition must fail validation."""
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema (MIT) is not installed in .venv")
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    broken = json.loads(json.dumps(compose_raw()))
    broken["services"]["pipeline"]["depends_on"]["mssql-init"]["condition"] = "service_finished"
    validator = jsonschema.validators.validator_for(schema)(schema)
    assert list(validator.iter_errors(broken)), "schema accepted condition: service_finished"


@pytest.mark.parametrize("name", sorted(EXPECTED_SERVICES))
def test_every_service_has_a_pinned_image_or_a_build(name: str) -> None:
    service = services()[name]
    assert "image" in service or "build" in service, f"{name}: neither image nor build"
    if "build" in service and "image" in service:
        assert ":" in service["image"].rsplit("/", 1)[-1], f"{name}: tag the built image"
        return
    image = service["image"]
    last = image.rsplit("/", 1)[-1]
    if "@sha256:" in image:
        return
    assert ":" in last, f"{name}: image {image!r} has no tag"
    tag = last.split(":", 1)[1]
    assert tag != "latest", f"{name}: image {image!r} uses latest"
    assert not re.fullmatch(r"\d+", tag) or name == "postgres", f"{name}: tag {tag!r} names only a major version"
    assert re.search(r"\d", tag), f"{name}: tag {tag!r} is not a version"


def test_postgres_image_is_pinned_to_a_minor_release() -> None:
    tag = services()["postgres"]["image"].split(":", 1)[1]
    assert re.fullmatch(r"\d+\.\d+(-.+)?", tag), f"postgres tag {tag!r} must be MAJOR.MINOR"


@pytest.mark.parametrize("name", sorted(EXPECTED_SERVICES - DISTROLESS - ONE_SHOT))
def test_every_long_running_service_has_a_health_check(name: str) -> None:
    check = services()[name].get("healthcheck")
    assert check, f"{name}: no healthcheck"
    assert not check.get("disable", False)
    test = check["test"]
    assert isinstance(test, list), f"{name}: use the exec form of test"
    assert test[0] in {"CMD", "CMD-SHELL"}
    for key in ("interval", "timeout", "retries"):
        assert key in check, f"{name}: healthcheck without {key}"


@pytest.mark.parametrize("name", sorted(DISTROLESS))
def test_distroless_services_have_no_health_check_they_cannot_run(name: str) -> None:
    """A shell or wget probe in a distroless image never passes: the service would be unhealthy forever."""
    assert "healthcheck" not in services()[name]


def test_every_dependency_names_a_service_and_a_condition_it_can_meet() -> None:
    all_services = services()
    for name, service in all_services.items():
        for dep, condition in dependencies(service).items():
            assert dep in all_services, f"{name} depends on unknown service {dep}"
            assert dep != name
            if condition == "service_healthy":
                assert "healthcheck" in all_services[dep], f"{name} waits for {dep} healthy; {dep} has no check"
            elif condition == "service_completed_successfully":
                assert dep in ONE_SHOT, f"{name} waits for {dep} to complete; {dep} is not a one-shot"
                assert str(all_services[dep].get("restart", "no")) == "no"
            else:
                assert condition == "service_started", f"{name}: unknown condition {condition}"


def test_start_up_order_reaches_the_pipeline_only_after_cdc_is_set_up() -> None:
    """mssql healthy (Agent running) → mssql-init completed (CDC enabled) → pipeline; postgres healthy."""
    assert dependencies(services()["mssql-init"])["mssql"] == "service_healthy"
    pipeline = dependencies(services()["pipeline"])
    assert pipeline["mssql-init"] == "service_completed_successfully"
    assert pipeline["postgres"] == "service_healthy"


def test_dependencies_have_no_cycle() -> None:
    graph = {name: set(dependencies(service)) for name, service in services().items()}
    done: set[str] = set()

    def visit(node: str, path: tuple[str, ...]) -> None:
        assert node not in path, f"dependency cycle: {' → '.join((*path, node))}"
        if node in done:
            return
        for dep in graph[node]:
            visit(dep, (*path, node))
        done.add(node)

    for node in graph:
        visit(node, ())


def test_the_sql_server_health_check_waits_for_the_agent_not_just_the_engine() -> None:
    """CDC enable procedures succeed with the Agent stopped and then capture nothing: health must see it."""
    mssql = services()["mssql"]
    probe = " ".join(mssql["healthcheck"]["test"])
    assert "SQL Server Agent" in probe
    assert "sqlcmd -C" in probe, "ODBC 18 encrypts by default: sqlcmd needs -C for the self-signed cert"
    assert " -b " in probe, "without -b sqlcmd exits 0 even when RAISERROR fires"
    assert mssql["environment"]["MSSQL_AGENT_ENABLED"] == "true"
    assert mssql["environment"]["ACCEPT_EULA"] == "Y"


def test_sql_server_services_run_amd64_and_share_one_image() -> None:
    mssql, init = services()["mssql"], services()["mssql-init"]
    assert mssql["image"] == init["image"]
    assert mssql["platform"] == init["platform"] == "linux/amd64"


def test_postgres_18_keeps_its_volume_at_var_lib_postgresql() -> None:
    postgres = services()["postgres"]
    major = int(postgres["image"].split(":", 1)[1].split(".")[0])
    targets = {m.target for m in mounts(postgres) if not m.is_bind}
    expected = "/var/lib/postgresql" if major >= 18 else "/var/lib/postgresql/data"
    assert expected in targets


def test_every_bind_mount_exists_in_the_repository_and_is_read_only() -> None:
    for name, service in services().items():
        for mount in mounts(service):
            if not mount.is_bind:
                assert mount.source in compose().get("volumes", {}), f"{name}: undeclared volume {mount.source}"
                continue
            path = mount.host_path()
            assert path.is_relative_to(REPO), f"{name}: {mount.source} points outside the repository"
            assert path.exists(), f"{name}: bind mount {mount.source} → {path} does not exist"
            assert mount.read_only, f"{name}: config mount {mount.source} must be :ro"


def test_bind_mounted_files_are_world_readable_for_non_root_images() -> None:
    for name, service in services().items():
        for mount in mounts(service):
            if not mount.is_bind:
                continue
            path = mount.host_path()
            files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
            for file in files:
                assert file.stat().st_mode & 0o004, f"{name}: {file} is not world-readable"


def test_the_build_context_and_dockerfile_exist() -> None:
    build = services()["pipeline"]["build"]
    context = (COMPOSE_DIR / build["context"]).resolve()
    assert context == REPO
    assert (context / build.get("dockerfile", "Dockerfile")).is_file()


def test_published_ports_bind_to_loopback_only() -> None:
    for name, service in services().items():
        for spec in service.get("ports", []):
            port = parse_port(spec)
            assert port.host_ip == "127.0.0.1", f"{name}: port {spec} is not bound to 127.0.0.1"
            assert port.host_port, f"{name}: port {spec} has no fixed host port"


def test_host_ports_can_be_moved_with_variables() -> None:
    """The live tests (and anyone with a busy 5432) move every published port through MSSQL2PG_PORT_*."""
    raw = compose_raw()["services"]
    for name, service in raw.items():
        for spec in service.get("ports", []):
            assert "${MSSQL2PG_PORT_" in str(spec), f"{name}: host port in {spec} is not overridable"
    env = {"MSSQL2PG_PORT_POSTGRES": "15432"}
    assert interpolate(raw["postgres"]["ports"][0], env) == "127.0.0.1:15432:5432"


def test_no_two_services_publish_the_same_host_port() -> None:
    seen: dict[str, str] = {}
    for name, service in services().items():
        for spec in service.get("ports", []):
            host = parse_port(spec).host_port
            assert host not in seen, f"{name} and {seen.get(host)} both publish {host}"
            seen[host] = name


def test_secret_files_exist_hold_one_line_and_no_trailing_newline() -> None:
    """Each reader (sqlcmd via cat, the postgres entrypoint, the pipeline) must see the same bytes."""
    for name in compose()["secrets"]:
        path = secret_file(name)
        assert path.is_file(), f"secret {name}: {path} missing"
        assert path.is_relative_to(COMPOSE_DIR / "secrets")
        value = path.read_bytes()
        assert value, f"secret {name} is empty"
        assert value == value.strip(), f"secret {name} has surrounding whitespace or a trailing newline"
        assert b"\n" not in value


def test_sql_server_passwords_meet_the_sql_server_password_policy() -> None:
    """A weak SA password makes the container exit at start-up; a weak login password fails CREATE LOGIN."""
    for name in ("mssql_sa_password", "cdc_reader_password"):
        value = secret_file(name).read_text(encoding="utf-8")
        classes = [bool(re.search(p, value)) for p in (r"[A-Z]", r"[a-z]", r"\d", r"[^A-Za-z0-9]")]
        assert len(value) >= 8, f"{name} is shorter than SQL Server's minimum of 8 characters"
        assert sum(classes) >= 3, f"{name} needs characters from 3 of: upper, lower, digit, symbol"


def test_services_declare_the_secrets_they_read() -> None:
    for name, service in services().items():
        declared = set(service.get("secrets", []))
        assert declared <= set(compose()["secrets"]), f"{name}: unknown secret"
        text = json.dumps(service)
        for used in re.findall(r"/run/secrets/([A-Za-z0-9_]+)", text):
            assert used in declared, f"{name} reads /run/secrets/{used} but does not declare it"


def test_the_pipeline_gets_both_passwords_as_files() -> None:
    env = services()["pipeline"]["environment"]
    assert env["MSSQL2PG__SOURCE__PASSWORD_FILE"] == "/run/secrets/cdc_reader_password"  # noqa: S105 - a path
    assert env["MSSQL2PG__TARGET__PASSWORD_FILE"] == "/run/secrets/warehouse_password"  # noqa: S105 - a path
    assert not any(key.endswith("PASSWORD") for key in env), "no plaintext password variables"


def test_no_secret_value_is_written_into_the_compose_file() -> None:
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    for name in compose()["secrets"]:
        assert secret_file(name).read_text(encoding="utf-8") not in text, f"{name} value appears in compose.yaml"


def test_every_service_but_fluent_bit_ships_its_logs_to_fluent_bit() -> None:
    fluent_port = {parse_port(p).container_port: parse_port(p).host_port for p in services()["fluent-bit"]["ports"]}
    assert "24224" in fluent_port, "fluent-bit must publish the forward port: the Docker daemon dials it"
    for name, service in services().items():
        if name == "fluent-bit":
            assert service.get("logging", {}).get("driver", "json-file") == "json-file"
            continue
        logging = service.get("logging")
        if name == "victorialogs":  # starts before Fluent Bit and must not depend on it
            continue
        assert logging, f"{name}: no logging driver"
        assert logging["driver"] == "fluentd"
        options = logging["options"]
        assert options["fluentd-address"] == f"127.0.0.1:{fluent_port['24224']}"
        assert options["fluentd-async"] == "true", "without async a stopped Fluent Bit blocks container start"
        assert options["tag"].startswith("docker.")


def test_data_lives_in_named_volumes() -> None:
    expected = {
        "mssql": "/var/opt/mssql",
        "prometheus": "/prometheus",
        "alertmanager": "/alertmanager",
        "perses": "/perses",
        "victorialogs": "/vlogs",
    }
    for name, target in expected.items():
        named = {m.target for m in mounts(services()[name]) if not m.is_bind}
        assert target in named, f"{name}: {target} is not a named volume"


def test_every_service_that_is_scraped_or_called_exposes_its_port() -> None:
    """container_ports() is what the wiring tests (monitoring configs) look hostnames up in."""
    expected = {
        "mssql": 1433,
        "postgres": 5432,
        "pipeline": 9400,
        "prometheus": 9090,
        "alertmanager": 9093,
        "alert-sink": 8080,
        "perses": 8080,
        "fluent-bit": 2020,
        "victorialogs": 9428,
    }
    for name, port in expected.items():
        assert port in container_ports(services()[name]), f"{name} does not expose {port}"


def test_parse_volume_reads_the_short_syntax() -> None:
    mount = parse_volume("./mssql:/init:ro")
    assert (mount.source, mount.target, mount.read_only, mount.is_bind) == ("./mssql", "/init", True, True)
    named = parse_volume("pg-data:/var/lib/postgresql")
    assert not named.is_bind
    assert not named.read_only


def _docker_compose_available() -> bool:
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, check=False)
    return probe.returncode == 0


@pytest.mark.skipif(
    not _docker_compose_available(), reason="docker compose plugin not available (`docker compose version` fails)"
)
def test_docker_compose_config_accepts_the_file() -> None:
    """`docker compose config` parses, interpolates and validates without a daemon."""
    result = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE_FILE), "config", "--format", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    resolved: dict[str, Any] = json.loads(result.stdout)
    assert set(resolved["services"]) == EXPECTED_SERVICES


def test_the_pipeline_can_be_scaled() -> None:
    """``docker compose up --scale pipeline=3``: no fixed container name, and a range of host ports so that each
    replica publishes its HTTP port (a single host port would let one replica start and fail the others); the
    extra replicas are standbys, or share the groups with ``pipeline.group: auto`` (docs/scale-out.md)."""
    pipeline = services()["pipeline"]
    assert "container_name" not in pipeline
    (published,) = pipeline["ports"]
    host_ip, host_ports, container_port = published.rsplit(":", 2)
    assert host_ip == "127.0.0.1"
    assert container_port == "9400"
    low, high = host_ports.removeprefix("${MSSQL2PG_PORT_PIPELINE:-").removesuffix("}").split("-")
    assert int(high) - int(low) + 1 >= 3
