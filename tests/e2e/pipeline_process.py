"""Run ``mssql2pg`` as a subprocess, exactly as users do, with coverage following it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml


def write_config(path: Path, source_url: str, target_url: str, tables: list[str], **extra: object) -> Path:
    config: dict[str, object] = {
        "source": {"url": source_url},
        "target": {"url": target_url},
        "tables": tables,
        "reader": {"poll_interval": 0.05},
        "http": {"port": 0},
        "log": {"format": "json", "level": "info"},
    }
    for key, value in extra.items():
        config[key] = value
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def cli_env(**overrides: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(overrides)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mssql2pg", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env or cli_env(),
        check=False,
    )


@dataclass
class PipelineProcess:
    config: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)  # e.g. MSSQL2PG__PIPELINE__GROUP for one group's process

    def start(self) -> None:
        self.starts += 1
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mssql2pg", "run", "--config", str(self.config), *self.extra_args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=cli_env(**self.env),
        )

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def terminate(self, timeout: float = 60) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
