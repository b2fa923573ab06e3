"""Installing the emulator and driving its capture job."""

from __future__ import annotations

from importlib import resources
from urllib.parse import unquote, urlsplit

import pg8000.native

# One lock serialises installs into the same database (two test workers, or install racing the agent).
_INSTALL_LOCK = 715516


def connect(url: str) -> pg8000.native.Connection:
    """A pg8000 connection from ``postgresql://user[:password]@host:port/db`` (``+pg8000`` accepted)."""
    parts = urlsplit(url)
    if not parts.scheme.startswith("postgresql"):
        msg = f"the emulator lives in PostgreSQL; expected a postgresql:// URL, got scheme {parts.scheme!r}"
        raise ValueError(msg)
    database = unquote(parts.path.lstrip("/")) or "postgres"
    return pg8000.native.Connection(
        user=unquote(parts.username or "postgres"),
        password=unquote(parts.password) if parts.password else None,
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 5432,
        database=database,
        application_name="mssql2pg-emulator",
    )


# The install scripts, in order. Listed, not globbed, so a stray file in the folder never runs.
SCRIPTS = ("10_catalog.sql", "20_lsn.sql", "30_capture.sql", "40_instances.sql", "50_admin.sql")


def _scripts() -> list[tuple[str, str]]:
    folder = resources.files("mssql2pg.emulator") / "sql"
    return [(name, (folder / name).read_text(encoding="utf-8")) for name in SCRIPTS]


def install(url: str) -> None:
    """Install (or upgrade in place) the CDC surface; running it again changes nothing."""
    conn = connect(url)
    try:
        conn.run("BEGIN")
        conn.run("SELECT pg_advisory_xact_lock(:k)", k=_INSTALL_LOCK)
        for _name, script in _scripts():
            conn.run(script)
        conn.run("COMMIT")
    finally:
        conn.close()


def scan(url: str, maxtrans: int | None = None) -> int:
    """Run one capture scan cycle, like ``sys.sp_cdc_scan``; returns the transactions it published."""
    conn = connect(url)
    try:
        rows = conn.run(
            "SELECT cdc_emulator.scan(coalesce(:m, (SELECT maxtrans FROM cdc_emulator.cdc_jobs "
            "WHERE job_type = 'capture')))",
            m=maxtrans,
        )
        return int(rows[0][0])
    finally:
        conn.close()


def set_capture_mode(url: str, mode: str) -> None:
    """``immediate`` (changes visible at commit) or ``agent`` (visible after a scan)."""
    conn = connect(url)
    try:
        conn.run("CALL cdc_emulator.set_capture_mode(:m)", m=mode)
    finally:
        conn.close()


def set_clock_offset(url: str, seconds: float) -> None:
    """Skew the emulated source's clock by ``seconds`` (negative: behind): its commit times and
    ``sys.sysdatetimeoffset()`` (SQL Server's ``SYSDATETIMEOFFSET()``) move together, as on a server whose clock
    is off. 0 puts it back."""
    conn = connect(url)
    try:
        conn.run(
            "INSERT INTO cdc_emulator.settings VALUES ('clock_offset', :v) "
            "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            v=f"{seconds} seconds",
        )
    finally:
        conn.close()
