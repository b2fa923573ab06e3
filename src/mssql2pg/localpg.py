"""Throwaway PostgreSQL servers from the local binaries, for ``mssql2pg demo`` and the test suite.

A server gets its own data directory in a temp dir and a free port on 127.0.0.1, and can be stopped
(``fast`` or ``immediate``, i.e. a crash) and started again on the same port. PostgreSQL refuses to run as
root, so when we are root (containers, CI) the server runs as the ``postgres`` system user.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pg8000.native

from mssql2pg.errors import Mssql2pgError

INSTALL_HINT = (
    "install the PostgreSQL server binaries (Debian/Ubuntu: `apt-get install -y postgresql`), or set "
    "MSSQL2PG_PG_BINDIR to the directory holding initdb, pg_ctl and postgres "
    "(e.g. /usr/lib/postgresql/15/bin)"
)


class PostgresBinariesMissingError(Mssql2pgError):
    """initdb/pg_ctl/postgres are not installed."""


def find_bindir() -> Path:
    """Locate initdb/pg_ctl: $MSSQL2PG_PG_BINDIR, then PATH, then Debian's versioned directories."""
    env = os.environ.get("MSSQL2PG_PG_BINDIR")
    candidates: list[Path] = [Path(env)] if env else []
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    for c in candidates:
        if all((c / exe).exists() for exe in ("initdb", "pg_ctl", "postgres")):
            return c
    msg = "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found"
    raise PostgresBinariesMissingError(msg, hint=INSTALL_HINT)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _run_as() -> list[str]:
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


@dataclass
class LocalPostgres:
    """One private PostgreSQL cluster listening on 127.0.0.1 only."""

    name: str
    bindir: Path = field(default_factory=find_bindir)
    port: int = field(default_factory=free_port)
    base: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="mssql2pg-pg-")))
    user: str = "postgres"

    @property
    def datadir(self) -> Path:
        return self.base / "data"

    @property
    def logfile(self) -> Path:
        return self.base / "server.log"

    def _pg(self, exe: str, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603 - fixed executables from the PostgreSQL bindir
            [*_run_as(), str(self.bindir / exe), *args], capture_output=True, text=True, check=check
        )

    def init(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.base, user="postgres", group="postgres")
        self._pg(
            "initdb",
            "-D",
            str(self.datadir),
            "-U",
            self.user,
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
            check=True,
        )
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
        return pg8000.native.Connection(user=self.user, host="127.0.0.1", port=self.port, database=database)

    def url(self, database: str = "postgres", port: int | None = None) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{port or self.port}/{database}"

    def create_database(self, prefix: str = "db", name: str | None = None) -> str:
        name = name or f"{prefix}_{uuid.uuid4().hex[:10]}"
        conn = self.connect()
        try:
            conn.run("CREATE DATABASE " + pg8000.native.identifier(name))
        finally:
            conn.close()
        return name

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)
