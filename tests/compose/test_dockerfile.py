"""Static checks of the pipeline image's Dockerfile, by parsing it (no Docker engine here).

Also runs the exact health-check command the image and compose use against a local HTTP server, so the
one-liner is proven to pass on 200 and fail otherwise.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from tests.compose.stack_files import DOCKERFILE, DOCKERIGNORE, PIPELINE_CONFIG, REPO, mounts, services


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str

    def exec_form(self) -> list[str]:
        value = json.loads(self.args)
        assert isinstance(value, list)
        return [str(v) for v in value]


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions in order, with `\\` continuations joined and comments dropped."""
    instructions: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = pending + line
        pending = ""
        keyword, _, args = full.partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip()))
    return instructions


INSTRUCTIONS = parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))


def _final_stage() -> list[Instruction]:
    last_from = max(i for i, ins in enumerate(INSTRUCTIONS) if ins.keyword == "FROM")
    return INSTRUCTIONS[last_from:]


def test_parser_joins_continuations_and_skips_comments() -> None:
    parsed = parse_dockerfile("# c\nFROM a:1 AS b\nRUN x \\\n    y\n\nUSER 1\n")
    assert parsed == [Instruction("FROM", "a:1 AS b"), Instruction("RUN", "x  y"), Instruction("USER", "1")]


def test_every_base_image_is_pinned_to_an_exact_release() -> None:
    stages: set[str] = set()
    froms = [ins for ins in INSTRUCTIONS if ins.keyword == "FROM"]
    assert froms
    for ins in froms:
        words = ins.args.split()
        image = words[0]
        if "AS" in (w.upper() for w in words):
            stages.add(words[-1])
        if image in stages:
            continue
        assert "@sha256:" in image or ":" in image, f"FROM {image}: no tag"
        tag = image.split(":", 1)[1]
        assert tag != "latest"
        assert re.match(r"\d+\.\d+\.\d+", tag), f"FROM {image}: pin the exact patch release"


def test_the_image_runs_as_a_non_root_user() -> None:
    users = [ins.args for ins in _final_stage() if ins.keyword == "USER"]
    assert users, "no USER in the final stage: the process would run as root"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}


def test_nothing_is_added_from_a_url() -> None:
    for ins in INSTRUCTIONS:
        if ins.keyword == "ADD":
            assert not re.search(r"\b(https?|git)://", ins.args), f"ADD {ins.args}: fetch in RUN with a checksum"


def test_only_the_package_sources_enter_the_build() -> None:
    copies = [ins.args for ins in INSTRUCTIONS if ins.keyword == "COPY" and "--from=" not in ins.args]
    sources = {word for args in copies for word in args.split()[:-1]}
    assert sources <= {"pyproject.toml", "README.md", "src", "./src"}


def test_dockerignore_keeps_secrets_and_local_state_out_of_the_context() -> None:
    lines = [ln.strip() for ln in DOCKERIGNORE.read_text(encoding="utf-8").splitlines() if ln.strip()]
    rules = [ln for ln in lines if not ln.startswith("#")]
    assert rules[0] == "*", "start from nothing and allow what the build needs"
    allowed = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "src"}


def test_the_image_has_a_health_check_and_the_pipeline_entrypoint() -> None:
    final = {ins.keyword: ins for ins in _final_stage()}
    assert "HEALTHCHECK" in final
    assert "/healthz" in final["HEALTHCHECK"].args
    assert final["ENTRYPOINT"].exec_form() == ["mssql2pg"]
    command = final["CMD"].exec_form()
    assert command[:2] == ["run", "--config"]
    compose_target = next(m.target for m in mounts(services()["pipeline"]) if m.host_path() == PIPELINE_CONFIG)
    assert command[2] == compose_target
    assert services()["pipeline"]["command"] == command


def test_the_image_exposes_the_configured_http_port() -> None:
    import yaml  # noqa: PLC0415 - local: only this test needs the pipeline config

    port = yaml.safe_load(PIPELINE_CONFIG.read_text(encoding="utf-8"))["http"]["port"]
    exposed = [ins.args for ins in _final_stage() if ins.keyword == "EXPOSE"]
    assert exposed == [str(port)]
    healthcheck = next(ins.args for ins in _final_stage() if ins.keyword == "HEALTHCHECK")
    assert f"127.0.0.1:{port}/healthz" in healthcheck


def test_the_package_builds_into_a_wheel_from_the_files_the_image_copies(tmp_path: Path) -> None:
    """`pip install .` in the build stage sees only pyproject.toml, README.md and src/: that must suffice."""
    context = tmp_path / "context"
    context.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, context / name)
    shutil.copytree(REPO / "src", context / "src", ignore=shutil.ignore_patterns("__pycache__"))
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", "dist", "."],
        cwd=context,
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert list((context / "dist").glob("mssql2pg-*.whl"))


@pytest.mark.skipif(shutil.which("hadolint") is None, reason="hadolint not installed (optional, GPL-3.0 test tool)")
def test_hadolint_finds_nothing() -> None:
    result = subprocess.run(["hadolint", str(DOCKERFILE)], check=False, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# ---- the health-check one-liner, run for real -------------------------------------------------------------


class _Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[tuple[HTTPServer, type[_Health]]]:
    handler = type("Handler", (_Health,), {"status": 200})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, handler
    finally:
        server.shutdown()
        server.server_close()


def _compose_probe(service: str, port: int) -> list[str]:
    test = services()[service]["healthcheck"]["test"]
    assert test[0] == "CMD"
    assert test[1] == "python"
    command = [sys.executable, *test[2:]]
    return [arg.replace("127.0.0.1:9400", f"127.0.0.1:{port}") for arg in command]


def test_the_pipeline_health_check_passes_on_200_and_fails_on_503_and_on_no_listener(
    health_server: tuple[HTTPServer, type[_Health]],
) -> None:
    server, handler = health_server
    port = server.server_address[1]
    probe = _compose_probe("pipeline", port)
    assert subprocess.run(probe, check=False, capture_output=True, timeout=30).returncode == 0
    handler.status = 503
    assert subprocess.run(probe, check=False, capture_output=True, timeout=30).returncode != 0
    server.shutdown()
    server.server_close()
    assert subprocess.run(probe, check=False, capture_output=True, timeout=30).returncode != 0


def test_the_dockerfile_health_check_runs_the_same_probe_as_compose() -> None:
    healthcheck = next(ins.args for ins in _final_stage() if ins.keyword == "HEALTHCHECK")
    cmd = healthcheck.split(" CMD ", 1)[1]
    assert json.loads(cmd) == services()["pipeline"]["healthcheck"]["test"][1:]
    options = dict(opt.lstrip("-").split("=") for opt in shlex.split(healthcheck.split(" CMD ", 1)[0]))
    assert set(options) == {"interval", "timeout", "start-period", "retries"}


def test_the_image_command_is_a_command_the_cli_accepts() -> None:
    """ENTRYPOINT mssql2pg + CMD run --config …: the installed CLI must know `run` and its `--config`."""
    command = next(ins for ins in _final_stage() if ins.keyword == "CMD").exec_form()
    result = subprocess.run(
        [sys.executable, "-m", "mssql2pg", command[0], "--help"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"`mssql2pg {command[0]} --help` failed: {result.stderr}"
    assert command[1] in result.stdout
