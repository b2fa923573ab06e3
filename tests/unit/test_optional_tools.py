"""A missing Prometheus/Alertmanager/promtool, or a PostgreSQL without libxml, skips a test with the install
command on a developer's machine, and fails it where MSSQL2PG_REQUIRE_TEST_TOOLS is set (CI)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.optional_tools import REQUIRE_ENV, has_libxml, has_ssl, require_libxml, require_tool


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


def _fake_pg_config(directory: Path, configure: str) -> Path:
    directory.mkdir()
    script = directory / "pg_config"
    script.write_text(f'#!/bin/sh\necho "{configure}"\n')
    script.chmod(0o755)
    return directory


def test_libxml_is_read_from_pg_config(tmp_path: Path) -> None:
    assert has_libxml(_fake_pg_config(tmp_path / "full", "'--with-openssl' '--with-libxml' '--with-icu'"))
    assert not has_libxml(_fake_pg_config(tmp_path / "wheel", "'--without-readline' '--without-icu'"))


def test_a_postgresql_without_libxml_skips_locally_and_fails_where_required(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bindir = _fake_pg_config(tmp_path / "wheel", "'--without-icu'")
    monkeypatch.delenv(REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install -y postgresql"):
        require_libxml(bindir)
    monkeypatch.setenv(REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="libxml"):
        require_libxml(bindir)


def test_the_installed_wheel_has_no_libxml_so_its_xml_tests_skip() -> None:
    """A fact about the wheel the ``localpg`` extra installs, kept here so a wheel that gains libxml is noticed."""
    from mssql2pg.localpg import wheel_bindir  # noqa: PLC0415 - only this test needs it

    bindir = wheel_bindir()
    assert bindir is not None
    assert not has_libxml(bindir)


def test_ssl_is_read_from_pg_config(tmp_path: Path) -> None:
    """The PostgreSQL wheel is built without SSL: the TLS tests skip there (fail in CI) instead of erroring."""
    assert has_ssl(_fake_pg_config(tmp_path / "pg15", "'--with-openssl' '--with-libxml'"))
    assert has_ssl(_fake_pg_config(tmp_path / "pg18", "'--with-ssl=openssl'"))
    assert not has_ssl(_fake_pg_config(tmp_path / "wheel", "'--without-readline' '--without-icu'"))
