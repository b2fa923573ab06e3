"""What a caught-up reader asks the source at each poll (issue 12 point 1's cost): the max LSN, and the capture
instances in ONE catalog query (instances, captured columns with their source facts, and key columns joined),
not three. Counted with a statement log on the engine."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from mssql2pg.emulator import connect
from mssql2pg.model import TableId
from mssql2pg.positions import Lsn
from mssql2pg.source import Reader, WindowStatus, load_capture_instances, select_instances
from mssql2pg.source import statements as source_sql
from tests.fixtures.emulator import two_cdc_tables

pytestmark = pytest.mark.integration

TABLES = [TableId("dbo", "a"), TableId("dbo", "b")]
POLLS = 5


@pytest.fixture
def engine(emulated_source_url: str) -> Iterator[sa.Engine]:
    src = connect(emulated_source_url)
    try:
        two_cdc_tables(src)
    finally:
        src.close()
    eng = sa.create_engine(emulated_source_url.replace("postgresql://", "postgresql+pg8000://", 1))
    yield eng
    eng.dispose()


def test_an_idle_planned_reader_asks_the_catalog_once_per_poll(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        planned = select_instances(load_capture_instances(conn), TABLES)
        position = Lsn.from_bytes(conn.execute(source_sql.MAX_LSN).scalar())
    reader = Reader.for_tables(engine, TABLES, planned=planned)
    sent: list[str] = []

    def log(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        sent.append(statement)

    sa.event.listen(engine, "before_cursor_execute", log)
    try:
        for _ in range(POLLS):
            assert reader.window(position).status is WindowStatus.CAUGHT_UP
    finally:
        sa.event.remove(engine, "before_cursor_execute", log)
    per_poll = len(sent) / POLLS
    print(f"statements per idle poll: {per_poll:g}")
    assert per_poll == 2, sent  # fn_cdc_get_max_lsn(), then the one catalog query
    assert sum("cdc.change_tables" in s for s in sent) == POLLS
