"""Hostile values (issue 15 point 3, FR-015): SQL fragments, backslashes and COPY's own markers (``\\N``,
``\\.``, tab, newline, carriage return), dollar-quote tags, format placeholders, 1 MB strings and binary with
every byte value arrive byte for byte, as keys and as values, through ``mssql2pg run`` (COPY into staging,
set-based apply), through ``mssql2pg resync`` (the snapshot path) and are found equal by ``mssql2pg reconcile``.

NUL is the one value that cannot arrive: PostgreSQL text cannot hold U+0000, so a text value with NUL is a
dead letter that names the table and the column (the documented choice in docs/security.md); a NUL in binary
is an ordinary byte. The emulator's source is PostgreSQL and cannot hold NUL in text either, so that case is fed
to the applier directly, as the reader would deliver it from SQL Server.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pg8000.native
import pytest

from mssql2pg.emulator import connect
from mssql2pg.model import Operation, SourceColumn
from mssql2pg.sink import Applier, build_target_table
from tests.e2e.pipeline_process import run_cli, write_config
from tests.fixtures.emulator import enable_table
from tests.fixtures.target import Connect, TxBuilder, capture_instance

pytestmark = pytest.mark.integration

MB = 1024 * 1024
FRAGMENTS = [
    "'); DROP TABLE dbo.decoy; --",
    "\\N",  # COPY's NULL marker, as text
    "\\.",  # COPY's end-of-data marker
    "\\.\n",
    "\\",
    "C:\\dir\\new\\table",
    "a\tb\nc\r\nd",
    "$b$ $$ $x$ end",
    "%s %(x)s {0} :name ?",
    "NULL",
    "",  # the empty string is not NULL
    " trailing ",
    "\x7f\x01\x1b[0m",
    "\u2028\ufeff😀 e\u0301",
    "/* comment */ -- comment",
]
BINARY = [bytes(range(256)), b"\\N", b"\x00", b"", b"\\x00", b"'; DROP TABLE dbo.decoy; --"]


def _big_text() -> str:
    rnd = random.Random(15)
    alphabet = "ab\\\t\n\r'\";$-/*é😀"
    return "".join(rnd.choice(alphabet) for _ in range(MB))


def _big_binary() -> bytes:
    return random.Random(16).randbytes(MB)


def _source(url: str) -> pg8000.native.Connection:
    src = connect(url)
    src.run("CREATE SCHEMA dbo")
    src.run("CREATE TABLE dbo.decoy (id int PRIMARY KEY)")
    src.run("CREATE TABLE dbo.vals (k varchar(200) PRIMARY KEY, t text, b bytea)")
    src.run("CREATE TABLE dbo.bins (k bytea PRIMARY KEY, t text)")
    enable_table(src, "dbo", "vals")
    enable_table(src, "dbo", "bins")
    return src


def _vals(db: pg8000.native.Connection) -> list[list[object]]:
    return db.run('SELECT k, t, b FROM dbo.vals ORDER BY k COLLATE "C"')


def _bins(db: pg8000.native.Connection) -> list[list[object]]:
    return db.run("SELECT k, t FROM dbo.bins ORDER BY k")


def _ok(*args: str) -> str:
    result = run_cli(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_hostile_values_arrive_byte_for_byte_through_run_resync_and_reconcile(
    emulated_source_url: str, target_url: str, tmp_path: Path
) -> None:
    src = _source(emulated_source_url)
    big_text, big_binary = _big_text(), _big_binary()
    for i, fragment in enumerate(FRAGMENTS):
        src.run("INSERT INTO dbo.vals VALUES (:k, :t, :b)", k=fragment, t=fragment * 3, b=BINARY[i % len(BINARY)])
    src.run("INSERT INTO dbo.vals VALUES ('big', :t, :b)", t=big_text, b=big_binary)
    for i, key in enumerate(BINARY):
        src.run("INSERT INTO dbo.bins VALUES (:k, :t)", k=key, t=FRAGMENTS[i])
    config = write_config(tmp_path / "p.yaml", emulated_source_url, target_url, ["dbo.vals", "dbo.bins"])

    _ok("run", "--config", str(config), "--until-caught-up")  # the initial rows arrive as changes
    dst = connect(target_url)
    assert _vals(dst) == _vals(src)
    assert _bins(dst) == _bins(src)
    [[text, binary]] = dst.run("SELECT t, b FROM dbo.vals WHERE k = 'big'")
    assert (len(text), text == big_text, binary == big_binary) == (MB, True, True)

    # updates and deletes find their rows by hostile keys (staging tables joined on the key)
    src.run("UPDATE dbo.vals SET t = k || '\\' || k, b = b || '\\x00ff'::bytea WHERE k <> 'big'")
    src.run("DELETE FROM dbo.vals WHERE k IN ('\\N', '', '$b$ $$ $x$ end')")
    src.run("UPDATE dbo.bins SET t = NULL WHERE k = '\\x00'::bytea")
    src.run("DELETE FROM dbo.bins WHERE k = :k", k=bytes(range(256)))
    src.run("UPDATE dbo.vals SET t = reverse(t) WHERE k = 'big'")
    _ok("run", "--config", str(config), "--until-caught-up")
    assert _vals(dst) == _vals(src)
    assert _bins(dst) == _bins(src)
    assert dst.run("SELECT count(*) FROM mssql2pg.dead_letters") == [[0]]

    # resync reads the same values from a snapshot
    dst.run("UPDATE dbo.vals SET t = 'drift'")
    _ok("resync", "--config", str(config), "dbo.vals")
    _ok("run", "--config", str(config), "--until-caught-up")
    assert _vals(dst) == _vals(src)

    report = json.loads(_ok("reconcile", "--config", str(config), "--format", "json", "--settle", "5"))
    assert report["consistent"] is True, report
    assert src.run("SELECT to_regclass('dbo.decoy') IS NOT NULL") == [[True]]
    src.close()
    dst.close()


NOTES = capture_instance(
    "dbo.Notes",
    [
        SourceColumn("Id", 1, "int", nullable=False),
        SourceColumn("Note", 2, "nvarchar"),
        SourceColumn("Blob", 3, "varbinary"),
    ],
    key=["Id"],
)


def test_nul_in_text_is_a_dead_letter_naming_the_column_and_nul_in_binary_arrives(target_connect: Connect) -> None:
    applier = Applier(target_connect, [build_target_table(NOTES)], "nul")
    applier.start()
    applier.offer(
        TxBuilder().tx(
            (NOTES, Operation.INSERT, [1, "before", b"\x00\x00"]),
            (NOTES, Operation.INSERT, [2, "nul\x00inside", b"\x00"]),
            (NOTES, Operation.INSERT, [3, "after\\0", b"a\x00b"]),
        )
    )
    applier.flush()
    conn = target_connect()
    try:
        assert conn.run("SELECT id, note, blob FROM dbo.notes ORDER BY id") == [
            [1, "before", b"\x00\x00"],
            [3, "after\\0", b"a\x00b"],
        ]
        [[table, message]] = conn.run("SELECT source_table, message FROM mssql2pg.dead_letters")
    finally:
        conn.close()
    assert table == "dbo.Notes"
    assert "dbo.Notes.Note" in message
    assert "NUL character" in message
    applier.close()
