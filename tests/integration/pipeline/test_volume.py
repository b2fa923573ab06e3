"""Volume acceptance scenarios of issue 3: 10,000 rows bulk-inserted by one statement, and 1,000,000 rows in
one source transaction, all arrive — through the whole pipeline, as one PostgreSQL transaction each."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from mssql2pg.config import load_config
from mssql2pg.emulator import connect
from mssql2pg.pipeline.assembly import Pipeline
from tests.e2e.pipeline_process import write_config
from tests.fixtures.emulator import enable_table

pytestmark = pytest.mark.integration


def _load_and_replicate(source_url: str, target_url: str, tmp_path: Path, rows: int) -> Pipeline:
    src = connect(source_url)
    src.run("CREATE SCHEMA dbo")
    src.run("CREATE TABLE dbo.bulk (id bigint PRIMARY KEY, name varchar(40) NOT NULL, amount numeric(12,2))")
    enable_table(src, "dbo", "bulk")
    src.run(
        "INSERT INTO dbo.bulk SELECT g, 'row ' || g, g / 100.0 FROM generate_series(1, CAST(:n AS bigint)) AS g",
        n=rows,
    )
    src.close()
    config = load_config(
        write_config(
            tmp_path / "p.yaml",
            source_url,
            target_url,
            ["dbo.bulk"],
            reader={"chunk_rows": 10_000},
            snapshot={"mode": "never"},  # the subject is one big source transaction streamed, not a load
        )
    )
    pipeline = Pipeline.from_config(config)
    pipeline.run(threading.Event(), until_caught_up=True)
    return pipeline


def _assert_all_arrived(target_url: str, rows: int) -> None:
    dst = connect(target_url)
    count, low, high, total = dst.run("SELECT count(*), min(id), max(id), sum(amount) FROM dbo.bulk")[0]
    dst.close()

    assert (count, low, high) == (rows, 1, rows)
    assert total == sum(range(1, rows + 1)) / 100


def test_ten_thousand_rows_from_one_statement(emulated_source_url: str, target_url: str, tmp_path: Path) -> None:
    pipeline = _load_and_replicate(emulated_source_url, target_url, tmp_path, 10_000)

    _assert_all_arrived(target_url, 10_000)
    assert pipeline.applier.stats.transactions == 1


@pytest.mark.slow
def test_a_million_row_transaction_arrives_whole(emulated_source_url: str, target_url: str, tmp_path: Path) -> None:
    pipeline = _load_and_replicate(emulated_source_url, target_url, tmp_path, 1_000_000)

    _assert_all_arrived(target_url, 1_000_000)
    stats = pipeline.applier.stats
    assert stats.transactions == 1
    assert stats.last_batch_rows == 1_000_000  # one PostgreSQL commit held the whole source transaction
