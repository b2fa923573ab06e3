"""Static checks of the monitoring configs the Compose stack mounts, with the real tools where they exist.

promtool and amtool are the real validators (Debian `prometheus`, `prometheus-alertmanager`; `.ci/run`
installs them; without promtool its tests skip, or fail in CI: see tests.fixtures.optional_tools.py).
Fluent Bit and Perses have no offline validator here, so their files are parsed and their wiring checked:
every hostname they name is a Compose service that listens on that port.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.compose.stack_files import (
    ALERTMANAGER_CONFIG,
    FLUENT_BIT_CONFIG,
    PERSES_CONFIG,
    PROMETHEUS_CONFIG,
    REPO,
    container_ports,
    load_yaml,
    mounts,
    pipeline_config,
    services,
)
from tests.fixtures.optional_tools import require_tool

PERSES_PROVISIONING = REPO / "compose" / "perses" / "provisioning"
PERSES_DASHBOARDS = REPO / "monitoring" / "perses" / "dashboards"


def _assert_service_port(host_port: str, what: str) -> None:
    host, _, port = host_port.partition(":")
    assert host in services(), f"{what}: {host!r} is not a Compose service"
    assert int(port) in container_ports(services()[host]), f"{what}: {host} does not listen on {port}"


# ---- Prometheus -------------------------------------------------------------------------------------------


def _prometheus() -> dict[str, Any]:
    doc: dict[str, Any] = load_yaml(PROMETHEUS_CONFIG)
    return doc


def test_prometheus_config_syntax_passes_promtool() -> None:
    promtool = require_tool("promtool")
    result = subprocess.run(
        [promtool, "check", "config", "--syntax-only", str(PROMETHEUS_CONFIG)],
        check=False,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_config_with_its_rule_files_passes_promtool() -> None:
    """The full check also loads every rule file: the alert rules must exist next to the config."""
    promtool = require_tool("promtool")
    result = subprocess.run(
        [promtool, "check", "config", str(PROMETHEUS_CONFIG)], check=False, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_loads_the_alert_rules_relative_to_its_config() -> None:
    """Relative paths resolve the same in the container (/etc/prometheus) and on the host."""
    rule_files = _prometheus()["rule_files"]
    assert rule_files == ["alerts.yml"]
    mount = next(m for m in mounts(services()["prometheus"]) if m.target == "/etc/prometheus")
    assert mount.host_path() == PROMETHEUS_CONFIG.parent


def test_prometheus_scrapes_every_replica_of_the_pipeline_on_its_configured_http_port() -> None:
    """``docker compose up --scale pipeline=3``: the service name resolves to every replica (Docker's DNS), so
    the pipeline is found by DNS (type A) rather than one static target that would reach one replica only."""
    jobs = {job["job_name"]: job for job in _prometheus()["scrape_configs"]}
    pipeline = jobs["mssql2pg"]
    assert pipeline.get("metrics_path", "/metrics") == "/metrics"
    assert "static_configs" not in pipeline
    (dns,) = pipeline["dns_sd_configs"]
    assert (dns["names"], dns["type"], dns["port"]) == (["pipeline"], "A", pipeline_config()["http"]["port"])
    _assert_service_port(f"pipeline:{dns['port']}", "scrape job mssql2pg")


def _targets(job: dict[str, Any]) -> list[str]:
    return [t for sc in job.get("static_configs", []) for t in sc["targets"]] + [
        f"{name}:{dns['port']}" for dns in job.get("dns_sd_configs", []) for name in dns["names"]
    ]


def test_every_scrape_target_and_alertmanager_is_a_service_listening_on_that_port() -> None:
    config = _prometheus()
    for job in config["scrape_configs"]:
        for target in _targets(job):
            if target.startswith("localhost:"):
                assert job["job_name"] == "prometheus"
                continue
            _assert_service_port(target, f"scrape job {job['job_name']}")
    for am in config["alerting"]["alertmanagers"]:
        for target in (t for sc in am["static_configs"] for t in sc["targets"]):
            _assert_service_port(target, "alerting")
            assert services()[target.split(":")[0]]["image"].startswith("prom/alertmanager:")


def test_distroless_services_are_watched_by_prometheus_instead_of_docker() -> None:
    jobs = {job["job_name"] for job in _prometheus()["scrape_configs"]}
    assert {"perses", "fluent-bit"} <= jobs


# ---- Alertmanager -----------------------------------------------------------------------------------------


def test_alertmanager_config_passes_amtool() -> None:
    amtool = shutil.which("amtool")
    if amtool is None:
        pytest.skip("amtool not installed (Debian package prometheus-alertmanager)")
    result = subprocess.run(
        [amtool, "check-config", str(ALERTMANAGER_CONFIG)], check=False, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_alertmanager_sends_notifications_to_the_alert_sink() -> None:
    config = load_yaml(ALERTMANAGER_CONFIG)
    receivers = {r["name"]: r for r in config["receivers"]}
    default = receivers[config["route"]["receiver"]]
    urls = [urlsplit(w["url"]) for w in default["webhook_configs"]]
    assert urls, "the default receiver sends nowhere"
    for url in urls:
        _assert_service_port(url.netloc, "alertmanager webhook")
    sink = services()["alert-sink"]
    assert int(sink["environment"]["ALERT_SINK_PORT"]) == urls[0].port


def test_alertmanager_inhibit_rules_name_alerts_that_exist() -> None:
    """An inhibit rule naming an alert that does not exist silently does nothing."""
    import re  # noqa: PLC0415

    rules = load_yaml(PROMETHEUS_CONFIG.parent / "alerts.yml")
    names = {r["alert"] for group in rules["groups"] for r in group["rules"] if "alert" in r}
    config = load_yaml(ALERTMANAGER_CONFIG)
    assert config["inhibit_rules"]
    for rule in config["inhibit_rules"]:
        for side in ("source_matchers", "target_matchers"):
            for matcher in rule[side]:
                match = re.fullmatch(r'alertname(=~|=|!=)"(.+)"', matcher)
                assert match, f"unexpected matcher {matcher!r}"
                op, value = match.groups()
                if op == "=":
                    assert value in names, f"{side}: no alert named {value}"
                elif op == "=~":
                    assert any(re.fullmatch(value, n) for n in names), f"{side}: {value} matches no alert"


# ---- Fluent Bit -------------------------------------------------------------------------------------------


def _fluent_bit() -> dict[str, Any]:
    doc: dict[str, Any] = load_yaml(FLUENT_BIT_CONFIG)
    return doc


def test_fluent_bit_receives_the_docker_logging_driver_on_the_published_port() -> None:
    inputs = _fluent_bit()["pipeline"]["inputs"]
    forward = [i for i in inputs if i["name"] == "forward"]
    assert len(forward) == 1
    assert int(forward[0]["port"]) == 24224
    assert forward[0]["listen"] == "0.0.0.0"  # noqa: S104 - inside its container
    assert 24224 in container_ports(services()["fluent-bit"])


def test_fluent_bit_filters_and_outputs_match_the_docker_tags() -> None:
    """The logging driver tags records docker.<name>; a match that misses them silently drops every log."""
    tag_prefix = services()["pipeline"]["logging"]["options"]["tag"].split("{{")[0]
    assert tag_prefix == "docker."
    pipeline = _fluent_bit()["pipeline"]
    for stage in (*pipeline["filters"], *pipeline["outputs"]):
        pattern = stage["match"]
        assert pattern in {"*", f"{tag_prefix}*"}, f"{stage['name']}: match {pattern!r} misses {tag_prefix}*"


def test_fluent_bit_parser_filter_uses_a_defined_parser_on_the_log_key() -> None:
    config = _fluent_bit()
    defined = {p["name"] for p in config["parsers"]}
    for stage in config["pipeline"]["filters"]:
        if stage["name"] == "parser":
            assert stage["parser"] in defined
            assert stage["key_name"] == "log", "the fluentd driver puts the line under `log`"
            assert stage["reserve_data"] in {True, "on"}, "keep container_name and source"


def test_fluent_bit_ships_json_lines_to_victorialogs() -> None:
    outputs = _fluent_bit()["pipeline"]["outputs"]
    http = [o for o in outputs if o["name"] == "http"]
    assert len(http) == 1
    out = http[0]
    _assert_service_port(f"{out['host']}:{out['port']}", "fluent-bit http output")
    assert services()[out["host"]]["image"].startswith("victoriametrics/victoria-logs:")
    uri = urlsplit(out["uri"])
    assert uri.path == "/insert/jsonline"
    query = {k: v[0] for k, v in parse_qs(uri.query).items()}
    assert query["_time_field"] == out["json_date_key"]
    assert out["format"] == "json_lines"
    assert "event" in query["_msg_field"].split(","), "structlog puts the message under `event`"
    assert query["_stream_fields"].split(",")[0] == "container_name"


def test_fluent_bit_serves_health_and_metrics_for_prometheus() -> None:
    service = _fluent_bit()["service"]
    assert service["http_server"] in {True, "on"}
    assert int(service["http_port"]) == 2020
    jobs = {job["job_name"]: job for job in _prometheus()["scrape_configs"]}
    assert jobs["fluent-bit"]["metrics_path"] == "/api/v2/metrics/prometheus"


def test_fluent_bit_is_started_with_the_yaml_config_it_is_given() -> None:
    fb = services()["fluent-bit"]
    target = next(m.target for m in mounts(fb) if m.host_path() == FLUENT_BIT_CONFIG)
    assert fb["command"] == ["-c", target]


# ---- Perses -----------------------------------------------------------------------------------------------


def _load_resources(folder: Path) -> list[dict[str, Any]]:
    resources: list[dict[str, Any]] = []
    for path in sorted(folder.rglob("*")):
        if path.suffix not in {".json", ".yaml", ".yml"}:
            continue
        text = path.read_text(encoding="utf-8")
        if path.suffix != ".json":
            assert "\n---" not in text, f"{path}: Perses v0.54 reads only the first YAML document"
        doc = load_yaml(path)
        resources.extend(doc if isinstance(doc, list) else [doc])
    return resources


def test_perses_provisions_every_folder_the_stack_mounts() -> None:
    config = load_yaml(PERSES_CONFIG)
    folders = config["provisioning"]["folders"]
    perses_mounts = {m.host_path(): m.target for m in mounts(services()["perses"]) if m.is_bind}
    assert perses_mounts[PERSES_CONFIG] == "/etc/perses/config.yaml"
    assert services()["perses"]["command"] == ["--config=/etc/perses/config.yaml"]
    for host in (PERSES_PROVISIONING, PERSES_DASHBOARDS):
        target = perses_mounts[host]
        assert any(target == f or target.startswith(f.rstrip("/") + "/") for f in folders), (
            f"{host} is mounted at {target}, outside the provisioning folders {folders}"
        )
    assert config["database"]["file"]["folder"] in {m.target for m in mounts(services()["perses"])}


def test_perses_datasource_points_at_the_prometheus_service() -> None:
    resources = _load_resources(PERSES_PROVISIONING)
    datasources = [r for r in resources if r["kind"] in {"GlobalDatasource", "Datasource"}]
    assert [d["metadata"]["name"] for d in datasources] == ["prometheus"]
    spec = datasources[0]["spec"]
    assert spec["default"] is True
    assert spec["plugin"]["kind"] == "PrometheusDatasource"
    url = urlsplit(spec["plugin"]["spec"]["proxy"]["spec"]["url"])
    _assert_service_port(url.netloc, "perses datasource")


def test_provisioned_dashboards_belong_to_a_provisioned_project_and_use_known_datasources() -> None:
    """Perses refuses a dashboard whose project does not exist; a datasource name that does not exist
    leaves every panel empty. Checked across the stack's provisioning and the dashboards folder."""
    if not PERSES_DASHBOARDS.is_dir():
        pytest.fail(f"{PERSES_DASHBOARDS} is missing: the stack mounts it into Perses")
    resources = _load_resources(PERSES_PROVISIONING) + _load_resources(PERSES_DASHBOARDS)
    projects = {r["metadata"]["name"] for r in resources if r["kind"] == "Project"}
    datasources = {r["metadata"]["name"] for r in resources if r["kind"] in {"GlobalDatasource", "Datasource"}}
    dashboards = [r for r in resources if r["kind"] == "Dashboard"]
    assert dashboards, "no dashboard to provision"
    for dashboard in dashboards:
        name = dashboard["metadata"]["name"]
        assert dashboard["metadata"].get("project") in projects, f"dashboard {name}: unknown project"
        for ref in _datasource_refs(dashboard):
            assert ref in datasources, f"dashboard {name}: unknown datasource {ref!r}"


def _datasource_refs(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        selector = node.get("datasource")
        if isinstance(selector, dict) and "name" in selector:
            found.add(selector["name"])
        for value in node.values():
            found |= _datasource_refs(value)
    elif isinstance(node, list):
        for item in node:
            found |= _datasource_refs(item)
    return found
