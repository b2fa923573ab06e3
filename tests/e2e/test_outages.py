"""Outages, for real: the pipeline runs as a subprocess while the tests stop the target or the source
PostgreSQL server, cut the network between the pipeline and either side with a TCP proxy, kill -9 the
pipeline in the middle of an outage, and send SIGTERM in the middle of a 200,000-row source transaction.

Each test asserts, after recovery, that the target equals the source row by row (nothing lost, nothing
repeated), and that ``/readyz`` names the failing side as not healthy during the outage and turns healthy
again afterwards. The time from the end of the fault to "target equals source" is printed (run with ``-s``);
``docs/reliability.md`` lists the numbers measured this way.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pg8000.exceptions
import pytest

from mssql2pg.demo.workload import TABLES, Workload, create_schema
from mssql2pg.emulator import connect
from mssql2pg.localpg import free_port
from tests.e2e.pipeline_process import PipelineProcess, run_cli, write_config
from tests.e2e.test_exactly_once import InvariantWatcher, assert_target_equals_source
from tests.fixtures.emulator import emulated_source_on
from tests.fixtures.pg import PgServer
from tests.fixtures.proxy import TcpProxy
from tests.fixtures.target import writing_for
from tests.fixtures.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

RETRY = {"initial": 0.2, "maximum": 1}
BULK_ROWS = 200_000  # the SIGTERM test's source transaction (the size)
CUT_BULK_ROWS = 50_000  # the other mid-transaction faults: long enough to be inside it, cheap to re-apply


# -- helpers ---------------------------------------------------------------------------------------------------
def readiness(port: int) -> tuple[int, dict[str, Any]]:
    """``/readyz`` status code and JSON body (503 answers carry the same body); (0, {}) if not listening."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())
    except OSError:
        return 0, {}


def component_status(port: int, component: str) -> str | None:
    _, body = readiness(port)
    status: str | None = body.get("components", {}).get(component, {}).get("status")
    return status


SERVER_NOT_READY = {"57P01", "57P02", "57P03"}  # shutting down, crash shutdown, starting up


def equal(source_url: str, target_url: str) -> bool:
    """Whether the target equals the source now; False too while a database is unreachable or restarting (the
    outage tests poll through outages). Any other error is a broken test, raised rather than read as "not yet"."""
    try:
        assert_target_equals_source(source_url, target_url)
    except (AssertionError, OSError, pg8000.exceptions.InterfaceError):
        return False
    except pg8000.exceptions.DatabaseError as exc:
        if not exc.args or not isinstance(exc.args[0], dict) or exc.args[0].get("C") not in SERVER_NOT_READY:
            raise
        return False
    return True


def report(fault: str, seconds: float, *, metric: str = "recover_s", **extra: object) -> None:
    """Print one measured row of the fault matrix (called only after the exact comparison passed, which is
    what makes "rows lost 0, duplicated 0" true)."""
    details = " ".join(f"{k}={v}" for k, v in extra.items())
    print(f"\nRELIABILITY fault={fault!r} rows_lost=0 rows_duplicated=0 {metric}={seconds:.2f} {details}")


class Stream:
    """A running pipeline subprocess with a workload on the source and health on a known port."""

    def __init__(
        self,
        source_url: str,
        target_url: str,
        tmp_path: Path,
        *,
        pipeline_source: str = "",
        pipeline_target: str = "",
        seed: int = 4,
    ) -> None:
        self.source_url = source_url
        self.target_url = target_url
        self.http_port = free_port()
        self.config = write_config(
            tmp_path / "pipeline.yaml",
            pipeline_source or source_url,
            pipeline_target or target_url,
            list(TABLES),
            retry=RETRY,
            http={"port": self.http_port},
        )
        self.pipeline = PipelineProcess(self.config, tmp_path / "pipeline.log")
        self.conn = connect(source_url)
        create_schema(self.conn)
        self.workload = Workload(self.conn, seed)

    def start(self) -> None:
        self.pipeline.start()

    def wait_equal(self, timeout: float = 60, what: str = "the target to equal the source") -> float:
        """Wait until target == source; the seconds it took."""
        began = time.monotonic()
        wait_for(lambda: equal(self.source_url, self.target_url), timeout=timeout, what=what)
        return time.monotonic() - began

    def wait_ready(self) -> None:
        wait_for(
            lambda: readiness(self.http_port)[1].get("status") == "healthy",
            timeout=60,
            what="/readyz to report healthy",
        )

    def wait_component_not_healthy(self, component: str) -> str:
        seen: list[str] = []

        def probe() -> bool:
            status = component_status(self.http_port, component)
            if status in ("degraded", "unhealthy"):
                seen.append(status)
                return True
            self.pipeline_alive()
            return False

        wait_for(probe, timeout=60, what=f"/readyz to report {component} degraded or unhealthy")
        return seen[-1]

    def pipeline_alive(self) -> None:
        assert self.pipeline.alive(), "the pipeline exited during the outage:\n" + self.pipeline.log_text()[-4000:]

    def close(self) -> None:
        if self.pipeline.alive():
            self.pipeline.kill9()
        self.conn.close()


@pytest.fixture
def stream_factory(tmp_path: Path) -> Iterator[Callable[..., Stream]]:
    streams: list[Stream] = []

    def make(source_url: str, target_url: str, **kwargs: Any) -> Stream:
        s = Stream(source_url, target_url, tmp_path, **kwargs)
        streams.append(s)
        return s

    yield make
    for s in streams:
        s.close()


def _outage_then_recovery(
    stream: Stream, component: str, fault: Callable[[], None], recover: Callable[[], None], name: str
) -> None:
    """Common shape: steady stream → fault mid-workload → health not healthy → recover → exact equality."""
    watcher = InvariantWatcher(stream.target_url)
    watcher.start()
    try:
        stream.start()
        stream.workload.run(30)
        stream.wait_equal()
        stream.wait_ready()
        stream.workload.run(10)  # in flight when the fault hits
        fault()
        if component == "source":
            # the source is down: the workload cannot write there until it is back
            status = stream.wait_component_not_healthy(component)
        else:
            stream.workload.run(40)  # keeps changing during the target outage
            status = stream.wait_component_not_healthy(component)
        stream.pipeline_alive()
        code, _ = readiness(stream.http_port)
        began = time.monotonic()
        recover()
        if component == "source":
            stream.conn.close()
            stream.conn = connect(stream.source_url)
            stream.workload.conn = stream.conn
            stream.workload.run(40)
        stream.wait_equal(what=f"the target to equal the source after the {name}")
        recover_s = time.monotonic() - began
        stream.wait_ready()
        stream.pipeline_alive()
        report(name, recover_s, health_during=f"{component}:{status}/http{code}", health_after="healthy")
    finally:
        watcher.stop.set()
        watcher.join(10)
    assert stream.pipeline.starts == 1, "recovery must not need a restart"
    assert watcher.violations == [], f"partial transactions seen in the target: {watcher.violations[:5]}"
    assert stream.workload.committed > 0


# -- point 3: outages --------------------------------------------------------------------------------------------
def test_target_server_stopped_and_started_mid_stream(
    emulated_source_url: str, fresh_server: PgServer, stream_factory: Callable[..., Stream]
) -> None:
    target_url = fresh_server.url(fresh_server.create_database("dw"))
    stream = stream_factory(emulated_source_url, target_url)
    _outage_then_recovery(
        stream, "target", lambda: fresh_server.stop("immediate"), fresh_server.start, "target server stop -m immediate"
    )


def test_source_server_stopped_and_started_mid_stream(
    fresh_server: PgServer, target_url: str, stream_factory: Callable[..., Stream]
) -> None:
    source_url = emulated_source_on(fresh_server)
    stream = stream_factory(source_url, target_url)
    _outage_then_recovery(
        stream, "source", lambda: fresh_server.stop("fast"), fresh_server.start, "source server stop -m fast"
    )


def test_network_cut_to_target_mid_batch(
    emulated_source_url: str,
    target_server: PgServer,
    target_url: str,
    tcp_proxy: Callable[[PgServer], TcpProxy],
    stream_factory: Callable[..., Stream],
) -> None:
    proxy = tcp_proxy(target_server)
    via_proxy = target_url.replace(f":{target_server.port}/", f":{proxy.listen_port}/")
    stream = stream_factory(emulated_source_url, target_url, pipeline_target=via_proxy)
    _outage_then_recovery(stream, "target", proxy.cut, proxy.restore, "network cut pipeline<->target")


def test_network_cut_to_source_mid_batch(
    source_server: PgServer,
    emulated_source_url: str,
    target_url: str,
    tcp_proxy: Callable[[PgServer], TcpProxy],
    stream_factory: Callable[..., Stream],
) -> None:
    proxy = tcp_proxy(source_server)
    via_proxy = emulated_source_url.replace(f":{source_server.port}/", f":{proxy.listen_port}/")
    stream = stream_factory(emulated_source_url, target_url, pipeline_source=via_proxy)
    watcher = InvariantWatcher(target_url)
    watcher.start()
    try:
        stream.start()
        stream.workload.run(30)
        stream.wait_equal()
        stream.wait_ready()
        proxy.cut()
        stream.workload.run(40)  # the source itself is up; only the pipeline's path to it is cut
        status = stream.wait_component_not_healthy("source")
        stream.pipeline_alive()
        began = time.monotonic()
        proxy.restore()
        stream.wait_equal(what="the target to equal the source after the network cut")
        recover_s = time.monotonic() - began
        stream.wait_ready()
        report("network cut pipeline<->source", recover_s, health_during=f"source:{status}", health_after="healthy")
    finally:
        watcher.stop.set()
        watcher.join(10)
    assert stream.pipeline.starts == 1
    assert watcher.violations == []


def test_kill9_during_target_outage_then_recovery(
    emulated_source_url: str, fresh_server: PgServer, stream_factory: Callable[..., Stream]
) -> None:
    target_url = fresh_server.url(fresh_server.create_database("dw"))
    stream = stream_factory(emulated_source_url, target_url)
    stream.start()
    stream.workload.run(30)
    stream.wait_equal()
    fresh_server.stop("immediate")
    stream.workload.run(40)
    stream.wait_component_not_healthy("target")
    stream.pipeline.kill9()
    stream.workload.run(20)
    began = time.monotonic()
    fresh_server.start()
    result = run_cli("run", "--config", str(stream.config), "--until-caught-up", timeout=120)
    recover_s = time.monotonic() - began

    assert result.returncode == 0, result.stdout + result.stderr
    assert_target_equals_source(emulated_source_url, target_url)
    report("kill -9 during target outage, then restart --until-caught-up", recover_s)


# -- point 9: graceful stop ------------------------------------------------------------------------------------
def _bulk_rows(url: str) -> int:
    conn = connect(url)
    try:
        if not conn.run("SELECT to_regclass('dbo.order_lines') IS NOT NULL")[0][0]:
            return 0
        return int(conn.run("SELECT count(*) FROM dbo.order_lines WHERE product = 'bulk'")[0][0])
    finally:
        conn.close()


def _applying_bulk(target_url: str) -> bool:
    """A pipeline session on the target has been inside a writing transaction for a while: the bulk one."""
    return writing_for(target_url, 200)


def test_sigterm_mid_transaction_exits_0_and_commits_all_or_nothing(
    emulated_source_url: str, target_url: str, stream_factory: Callable[..., Stream]
) -> None:
    stream = stream_factory(emulated_source_url, target_url)
    stream.start()
    stream.workload.run(10)
    stream.wait_equal()
    stream.conn.run("BEGIN")
    stream.conn.run(
        "INSERT INTO dbo.order_lines (order_id, line_no, product, qty) "
        "SELECT 1000000000 + g, 1, 'bulk', 1 FROM generate_series(1, :n) AS g",
        n=BULK_ROWS,
    )
    stream.conn.run("COMMIT")
    wait_for(
        lambda: _applying_bulk(target_url),
        timeout=60,
        interval=0.01,
        what="the applier to be inside the bulk transaction",
    )
    began = time.monotonic()
    code = stream.pipeline.terminate(timeout=30)
    stop_s = time.monotonic() - began

    assert code == 0, stream.pipeline.log_text()[-4000:]
    applied = _bulk_rows(target_url)
    assert applied in (0, BULK_ROWS), f"a partial source transaction was committed: {applied} of {BULK_ROWS} rows"
    result = run_cli("run", "--config", str(stream.config), "--until-caught-up", timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert_target_equals_source(emulated_source_url, target_url)
    report("SIGTERM mid 200k-row transaction", stop_s, metric="exit_s", exit_code=code, bulk_rows_at_stop=applied)


def _insert_bulk(stream: Stream, rows: int) -> None:
    """One source transaction of ``rows`` order lines (product 'bulk'), outside the money invariant."""
    stream.conn.run("BEGIN")
    stream.conn.run(
        "INSERT INTO dbo.order_lines (order_id, line_no, product, qty) "
        "SELECT 1000000000 + g, 1, 'bulk', 1 FROM generate_series(1, :n) AS g",
        n=rows,
    )
    stream.conn.run("COMMIT")


def _stream_inside_bulk_via_proxy(
    source_url: str,
    target_server: PgServer,
    target_url: str,
    tcp_proxy: Callable[[PgServer], TcpProxy],
    stream_factory: Callable[..., Stream],
) -> tuple[Stream, TcpProxy]:
    """A pipeline that reaches the target through a proxy, caught up, then busy applying a bulk transaction."""
    proxy = tcp_proxy(target_server)
    via_proxy = target_url.replace(f":{target_server.port}/", f":{proxy.listen_port}/")
    stream = stream_factory(source_url, target_url, pipeline_target=via_proxy)
    stream.start()
    stream.workload.run(10)
    stream.wait_equal()
    _insert_bulk(stream, CUT_BULK_ROWS)
    wait_for(
        lambda: _applying_bulk(target_url), timeout=60, interval=0.01, what="the applier inside the bulk transaction"
    )
    return stream, proxy


def test_network_cut_to_target_inside_the_bulk_transaction(
    emulated_source_url: str,
    target_server: PgServer,
    target_url: str,
    tcp_proxy: Callable[[PgServer], TcpProxy],
    stream_factory: Callable[..., Stream],
) -> None:
    stream, proxy = _stream_inside_bulk_via_proxy(
        emulated_source_url, target_server, target_url, tcp_proxy, stream_factory
    )
    proxy.cut()
    status = stream.wait_component_not_healthy("target")
    applied = _bulk_rows(target_url)
    assert applied in (0, CUT_BULK_ROWS), f"partial source transaction committed: {applied} of {CUT_BULK_ROWS} rows"
    began = time.monotonic()
    proxy.restore()
    stream.wait_equal(timeout=120, what="the bulk transaction to be applied after the cut")
    recover_s = time.monotonic() - began
    stream.wait_ready()
    stream.pipeline_alive()
    report("network cut pipeline<->target inside a 50k-row transaction", recover_s, health_during=f"target:{status}")


def test_sigterm_while_target_is_down_exits_0(
    emulated_source_url: str, fresh_server: PgServer, stream_factory: Callable[..., Stream]
) -> None:
    target_url = fresh_server.url(fresh_server.create_database("dw"))
    stream = stream_factory(emulated_source_url, target_url)
    stream.start()
    stream.workload.run(10)
    stream.wait_equal()
    fresh_server.stop("immediate")
    stream.workload.run(10)
    stream.wait_component_not_healthy("target")
    began = time.monotonic()
    code = stream.pipeline.terminate(timeout=30)
    stop_s = time.monotonic() - began

    assert code == 0, stream.pipeline.log_text()[-4000:]
    fresh_server.start()
    result = run_cli("run", "--config", str(stream.config), "--until-caught-up", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert_target_equals_source(emulated_source_url, target_url)
    report("SIGTERM while the target is down", stop_s, metric="exit_s", exit_code=code)


def test_sigterm_while_target_network_hangs_exits_0(
    emulated_source_url: str,
    target_server: PgServer,
    target_url: str,
    tcp_proxy: Callable[[PgServer], TcpProxy],
    stream_factory: Callable[..., Stream],
) -> None:
    """A black-holed connection (packets stop, no reset) mid-transaction must not make SIGTERM hang."""
    stream, proxy = _stream_inside_bulk_via_proxy(
        emulated_source_url, target_server, target_url, tcp_proxy, stream_factory
    )
    proxy.pause()
    began = time.monotonic()
    code = stream.pipeline.terminate(timeout=30)
    stop_s = time.monotonic() - began
    proxy.resume()

    assert code == 0, stream.pipeline.log_text()[-4000:]
    applied = _bulk_rows(target_url)
    assert applied in (0, CUT_BULK_ROWS), f"partial source transaction committed: {applied} of {CUT_BULK_ROWS} rows"
    result = run_cli("run", "--config", str(stream.config), "--until-caught-up", timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert_target_equals_source(emulated_source_url, target_url)
    report(
        "SIGTERM while the target connection is black-holed",
        stop_s,
        metric="exit_s",
        exit_code=code,
        bulk_rows_at_stop=applied,
    )
