"""A missing Prometheus/Alertmanager/promtool skips a test with the install command on a developer's machine,
and fails it where MSSQL2PG_REQUIRE_MONITORING_TOOLS is set (CI)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.monitoring_tools import REQUIRE_ENV, require_tool


@pytest.fixture
def bin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """PATH holding only a fake ``promtool``."""
    tool = tmp_path / "promtool"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    return tmp_path


def test_a_missing_tool_skips_with_the_install_command(bin_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install -y prometheus prometheus-alertmanager"):
        require_tool("prometheus")


@pytest.mark.parametrize("value", ["1", "true", "yes"])
def test_a_missing_tool_fails_where_the_tools_are_required(
    value: str, bin_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(REQUIRE_ENV, value)
    with pytest.raises(
        pytest.fail.Exception, match=f"prometheus-alertmanager / alertmanager not installed.*{REQUIRE_ENV}"
    ):
        require_tool("prometheus-alertmanager", "alertmanager")


@pytest.mark.parametrize("value", ["", "0", "no"])
def test_other_values_of_the_switch_still_skip(value: str, bin_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(REQUIRE_ENV, value)
    with pytest.raises(pytest.skip.Exception):
        require_tool("prometheus")


def test_a_present_tool_is_found_whatever_the_switch_says(bin_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(REQUIRE_ENV, "1")
    assert require_tool("prometheus", "promtool") == str(bin_dir / "promtool")
