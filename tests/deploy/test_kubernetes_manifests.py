"""The Kubernetes manifests (deploy/kubernetes, issue 16 point 6), checked offline: every document is valid
against the Kubernetes schemas (kubernetes-validate, strict: unknown fields are errors), and what the pipeline
needs holds - the ConfigMap loads with mssql2pg's own loader and spreads the groups, the probes and the Service
name the port the configuration serves, passwords arrive as ``*_FILE`` from the Secret, and the container runs
unprivileged within NFR-003's 2 CPUs and 4 GB. No cluster is needed; `kubectl apply --dry-run=server` is the
check left to a user with one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from mssql2pg.config.loading import load_config

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.33"  # the oldest release still supported upstream when this was written


def _documents() -> dict[str, dict[str, Any]]:
    """``Kind/name`` -> document, for every manifest file (the kustomization is not a cluster resource)."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(MANIFESTS.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            found[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return found


DOCS = _documents()
DEPLOYMENT = DOCS["Deployment/mssql2pg"]
POD = DEPLOYMENT["spec"]["template"]["spec"]
CONTAINER = POD["containers"][0]


@pytest.mark.parametrize("name", sorted(DOCS))
def test_every_manifest_is_valid_for_kubernetes(name: str) -> None:
    kubernetes_validate.validate(DOCS[name], KUBERNETES_VERSION, strict=True)


def test_an_invalid_manifest_is_caught() -> None:
    """The check can fail: a misspelt field is refused."""
    broken = yaml.safe_load(yaml.safe_dump(DEPLOYMENT))
    broken["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_the_kustomization_lists_every_resource_but_the_example_secret() -> None:
    kustomization = yaml.safe_load((MANIFESTS / "kustomization.yaml").read_text(encoding="utf-8"))
    files = {p.name for p in MANIFESTS.glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}
    assert set(kustomization["resources"]) == files


def _pipeline_config(tmp_path: Path) -> Any:
    """The ConfigMap's pipeline.yaml through mssql2pg's loader, with the Secret's files where the pod has them."""
    config_file = tmp_path / "pipeline.yaml"
    config_file.write_text(DOCS["ConfigMap/mssql2pg-config"]["data"]["pipeline.yaml"], encoding="utf-8")
    secret = DOCS["Secret/mssql2pg-credentials"]["stringData"]
    mount = next(m["mountPath"] for m in CONTAINER["volumeMounts"] if m["name"] == "credentials")
    env: dict[str, str] = {}
    for var in CONTAINER["env"]:
        assert var["value"].startswith(mount + "/"), var
        key = var["value"].removeprefix(mount + "/")
        (tmp_path / key).write_text(secret[key], encoding="utf-8")
        env[var["name"]] = str(tmp_path / key)
    return load_config(config_file, env=env)


def test_the_configuration_loads_spreads_the_groups_and_gets_its_passwords_from_the_secret(tmp_path: Path) -> None:
    config = _pipeline_config(tmp_path)
    assert config.pipeline.spreads
    assert {t.group for t in config.tables} == {"orders", "customers"}
    assert config.source.password is not None
    assert config.target.password is not None
    assert all(var["name"].endswith("_PASSWORD_FILE") for var in CONTAINER["env"])
    assert "password" not in DOCS["ConfigMap/mssql2pg-config"]["data"]["pipeline.yaml"].lower()
    assert DEPLOYMENT["spec"]["replicas"] > len({t.group for t in config.tables})  # one group each, plus a standby


def test_probes_and_service_use_the_port_the_configuration_serves(tmp_path: Path) -> None:
    config = _pipeline_config(tmp_path)
    port = next(p for p in CONTAINER["ports"] if p["name"] == "http")
    assert port["containerPort"] == config.http.port
    assert config.http.host == "0.0.0.0"  # noqa: S104 - inside its pod
    assert CONTAINER["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert CONTAINER["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    service = DOCS["Service/mssql2pg"]
    assert service["spec"]["selector"] == DEPLOYMENT["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert service["metadata"]["annotations"]["prometheus.io/port"] == str(config.http.port)


def test_the_container_is_unprivileged_read_only_and_sized_as_nfr_003_says() -> None:
    security = CONTAINER["securityContext"]
    assert POD["securityContext"]["runAsNonRoot"] is True
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert POD["automountServiceAccountToken"] is False
    assert CONTAINER["resources"]["limits"] == {"cpu": "2", "memory": "4Gi"}
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert f"USER {POD['securityContext']['runAsUser']}:{POD['securityContext']['runAsGroup']}" in dockerfile
    assert any(m["mountPath"] == "/tmp" for m in CONTAINER["volumeMounts"])  # noqa: S108 - WORKDIR of the image


def test_a_rolling_update_starts_the_new_pod_before_the_old_one_stops() -> None:
    """The new pod waits as a standby and takes over the group of the pod that stops: no gap but the takeover."""
    assert DEPLOYMENT["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    assert POD["terminationGracePeriodSeconds"] > 15  # mssql2pg's own stop bound (cli/run.py)
