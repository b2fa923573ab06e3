"""Clock skew end to end (issue 17 point 3): an emulated source whose clock is two days behind the target's.

Its commit times are two days old the moment they are written. Without the correction every change would be
a stale event (``stale_after`` is 24 h) and the lag would read two days; measured and corrected, the skew is
exported, warned about, and the fresh changes are neither stale nor lagging."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from mssql2pg.config import load_config
from mssql2pg.emulator import connect, set_clock_offset
from mssql2pg.pipeline.assembly import Pipeline
from tests.e2e.pipeline_process import write_config
from tests.fixtures.emulator import enable_table

pytestmark = pytest.mark.integration

TWO_DAYS = 2 * 86_400


def _metric(pipeline: Pipeline, line_start: str) -> float | None:
    for line in pipeline.obs.metrics.render().decode().splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_a_source_clock_two_days_behind_is_measured_warned_and_corrected(
    emulated_source_url: str, target_url: str, tmp_path: Path
) -> None:
    src = connect(emulated_source_url)
    src.run("CREATE SCHEMA dbo")
    src.run("CREATE TABLE dbo.t (id int PRIMARY KEY, v text)")
    enable_table(src, "dbo", "t")
    set_clock_offset(emulated_source_url, -TWO_DAYS)
    src.run("INSERT INTO dbo.t VALUES (1, 'fresh'), (2, 'also fresh')")
    # the emulated source stamps its commits with its own (skewed) clock, as SQL Server does
    ((age,),) = src.run(
        "SELECT extract(epoch FROM localtimestamp - tran_end_time) FROM cdc.lsn_time_mapping "
        "WHERE start_lsn = sys.fn_cdc_get_max_lsn()"
    )
    assert float(age) > TWO_DAYS - 60

    config = load_config(write_config(tmp_path / "p.yaml", emulated_source_url, target_url, ["dbo.t"]))
    with capture_logs() as logs:
        pipeline = Pipeline.from_config(config)
        pipeline.run(threading.Event(), until_caught_up=True)

    skew = _metric(pipeline, "mssql2pg_clock_skew_seconds")
    assert skew is not None
    assert abs(skew + TWO_DAYS) < 60  # both servers run on this host: the rest is the offset we set
    warnings = [e for e in logs if e["log_level"] == "warning" and "clock skew" in e["event"]]
    assert warnings, "no clock skew warning was logged"
    assert abs(warnings[0]["skew_s"] + TWO_DAYS) < 60

    dst = connect(target_url)
    assert dst.run('SELECT id, "_cdc_stale" FROM dbo.t ORDER BY id') == [[1, False], [2, False]]
    assert _metric(pipeline, 'mssql2pg_stale_events_total{table="dbo.t"}') == 0
    lag = _metric(pipeline, 'mssql2pg_lag_seconds{table="dbo.t"}')
    assert lag is not None
    assert lag < 3600  # not two days: "now" is taken on the source's clock
    src.close()
    dst.close()
