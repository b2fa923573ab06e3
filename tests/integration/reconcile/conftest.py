"""A replicated source/target pair with every mapped type (no xml: that needs a libxml PostgreSQL), caught up."""

from __future__ import annotations

import datetime as dt
import random
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pg8000.native
import pytest

from mssql2pg.config import Config, load_config
from mssql2pg.emulator import connect
from mssql2pg.pipeline.assembly import Pipeline
from tests.e2e.pipeline_process import write_config
from tests.fixtures.emulator import enable_table
from tests.fixtures.waiting import wait_for

COLUMNS = """
    id int PRIMARY KEY,
    c_tiny sys.tinyint, c_small smallint, c_big bigint, c_bit boolean,
    c_dec numeric(12,3), c_money sys.money, c_real real, c_float double precision,
    c_date date, c_time time(6), c_dt2 timestamp(6), c_datetime sys.datetime, c_sdt sys.smalldatetime,
    c_dto sys.datetimeoffset, c_nvarchar varchar(50), c_text text, c_bin bytea, c_uuid uuid
"""
NAMES = [
    "id", "c_tiny", "c_small", "c_big", "c_bit", "c_dec", "c_money", "c_real", "c_float", "c_date", "c_time",
    "c_dt2", "c_datetime", "c_sdt", "c_dto", "c_nvarchar", "c_text", "c_bin", "c_uuid",
]  # fmt: skip


def row(i: int) -> dict[str, Any]:
    """A deterministic row with a value of every type (some NULL, some '')."""
    return {
        "id": i,
        "c_tiny": i % 256,
        "c_small": -i % 32768,
        "c_big": i * 1_000_000_007,
        "c_bit": i % 2 == 0,
        "c_dec": Decimal(i) / Decimal(8),
        "c_money": Decimal(i) / Decimal(16),
        "c_real": i / 4,
        "c_float": i / 3,
        "c_date": dt.date(2000, 1, 1) + dt.timedelta(days=i),
        "c_time": dt.time(i % 24, i % 60, i % 60, (i * 7919) % 1_000_000),
        "c_dt2": dt.datetime(2020, 1, 1) + dt.timedelta(microseconds=i * 1_234_567),
        "c_datetime": dt.datetime(2021, 5, 6, 7, 8, 9, (i % 1000) * 1000),
        "c_sdt": dt.datetime(2022, 1, 1, i % 24, i % 60),
        "c_dto": f"2026-03-29 01:30:00.{i % 10_000_000:07d} {'+' if i % 2 else '-'}0{i % 10}:30",
        "c_nvarchar": None if i % 7 == 0 else ("" if i % 7 == 1 else f"Name {i} 𝄞"),
        "c_text": f"text {i} " * (i % 5),
        "c_bin": bytes([i % 256, (i * 3) % 256]),
        "c_uuid": uuid.UUID(int=i * 0x1000_0000_0000_0001),
    }


@dataclass
class Replicated:
    config: Config
    config_path: Path
    src: pg8000.native.Connection
    dst: pg8000.native.Connection
    rows: int

    def catch_up(self) -> None:
        Pipeline.from_config(self.config).run(threading.Event(), until_caught_up=True)


def replicated_pair(source_url: str, target_url: str, tmp_path: Path, rows: int = 200, **extra: object) -> Replicated:
    src = connect(source_url)
    src.run("CREATE SCHEMA dbo")
    src.run(f"CREATE TABLE dbo.typed ({COLUMNS})")
    enable_table(src, "dbo", "typed")
    src.run("CREATE TABLE dbo.by_uuid (k uuid PRIMARY KEY, code varchar(20) NOT NULL, v int)")
    enable_table(src, "dbo", "by_uuid")
    insert = f"INSERT INTO dbo.typed ({', '.join(NAMES)}) VALUES ({', '.join(':' + n for n in NAMES)})"
    src.run("BEGIN")
    for i in range(1, rows + 1):
        src.run(insert, **row(i))
    src.run("INSERT INTO dbo.by_uuid SELECT md5(g::text)::uuid, 'Code ' || g, g FROM generate_series(1, :n) g", n=rows)
    src.run("COMMIT")
    path = write_config(tmp_path / "p.yaml", source_url, target_url, ["dbo.typed", "dbo.by_uuid"], **extra)
    pair = Replicated(load_config(path), path, src, connect(target_url), rows)
    pair.catch_up()
    return pair


@pytest.fixture
def replicated(emulated_source_url: str, target_url: str, tmp_path: Path) -> Iterator[Replicated]:
    pair = replicated_pair(emulated_source_url, target_url, tmp_path)
    yield pair
    pair.src.close()
    pair.dst.close()


@pytest.fixture
def live(replicated: Replicated, emulated_source_url: str) -> Iterator[Replicated]:
    """The pipeline running, and a writer updating, inserting and deleting rows of dbo.by_uuid all along."""
    stop, writes = threading.Event(), threading.Event()
    written: list[int] = []
    pipeline = Pipeline.from_config(replicated.config)
    runner = threading.Thread(target=pipeline.run, args=(stop,), daemon=True)

    def keep_writing() -> None:
        writer = connect(emulated_source_url)
        rng = random.Random(13)
        n = 10_000
        while not writes.is_set():
            n += 1
            writer.run("UPDATE dbo.by_uuid SET v = v + 1 WHERE v > 1 AND v % 50 = CAST(:m AS int)", m=rng.randrange(50))
            writer.run("INSERT INTO dbo.by_uuid VALUES (md5(CAST(:n AS text))::uuid, 'new', CAST(:n AS int))", n=n)
            writer.run("DELETE FROM dbo.by_uuid WHERE v = CAST(:old AS int)", old=n - 3)
            written.append(n)
        writer.close()

    writer = threading.Thread(target=keep_writing, daemon=True)
    runner.start()
    writer.start()
    try:
        wait_for(lambda: len(written) > 5, what="the writer writing")
        yield replicated
        assert writer.is_alive(), "the writer stopped early"
    finally:
        writes.set()
        writer.join(timeout=30)
        stop.set()
        runner.join(timeout=60)
