"""A reconciliation run over the configured tables: what ``mssql2pg reconcile`` does, without click.

Per table: compare (:mod:`.compare`), re-check what differs on a live system (:mod:`.live`), and say what to
do about it. A table that cannot be compared (missing target table, a type without canonical encoding, a
database error) is reported with status ``error``; the other tables go on.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from datetime import time as dtime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
import structlog

from mssql2pg import control
from mssql2pg.classify import classify
from mssql2pg.config import Config, spatial_wkb_tables
from mssql2pg.errors import ConfigError
from mssql2pg.model import CaptureInstance, TableId
from mssql2pg.pgconn import PgConnection
from mssql2pg.pipeline.connections import source_engine, target_connector
from mssql2pg.pipeline.plan import discover_known, target_tables
from mssql2pg.positions import Lsn
from mssql2pg.reconcile.canonical import Dialect
from mssql2pg.reconcile.compare import Differences, compare_table
from mssql2pg.reconcile.live import Rechecked, recheck_live
from mssql2pg.reconcile.repair import repair_keys
from mssql2pg.reconcile.sides import SourceSide, TargetSide
from mssql2pg.reconcile.source import key_decoder, reading_instance, source_relation
from mssql2pg.reconcile.target import target_relation
from mssql2pg.sink.schema import TargetTable
from mssql2pg.source import statements as source_sql
from mssql2pg.source.errors import TableGoneError
from mssql2pg.source.values import wkb_columns

log = structlog.get_logger(component="reconcile")

DEFAULT_MAX_KEYS = 100
DEFAULT_SETTLE_SECONDS = 30.0
RESYNC_SHARE = 0.1
"""Above this share of differing rows a resync is the better remedy than repairing key by key."""

Key = dict[str, Any]


@dataclass
class TableReport:
    """One table's outcome; :meth:`as_json` is the contract ``--format json`` prints."""

    table: TableId
    target: str
    status: str  # consistent | inconsistent | error
    source_rows: int = 0
    target_rows: int = 0
    missing: list[Key] = field(default_factory=list)
    extra: list[Key] = field(default_factory=list)
    different: list[Key] = field(default_factory=list)
    confirmed: bool = True
    unsettled: list[Key] = field(default_factory=list)  # changed at the source throughout the re-check
    suggested_action: str = "none"
    error: str | None = None
    seconds: float = 0.0
    repaired: int = 0
    repaired_keys: list[Key] = field(default_factory=list)
    hint: str | None = None  # what to do about ``error`` (becomes ``suggested_action``)

    @property
    def differing(self) -> int:
        return len(self.missing) + len(self.extra) + len(self.different)

    def as_json(self, max_keys: int) -> dict[str, Any]:
        out: dict[str, Any] = {
            "table": str(self.table),
            "target": self.target,
            "status": self.status,
            "source_rows": self.source_rows,
            "target_rows": self.target_rows,
            "missing_keys": self.missing[:max_keys],
            "extra_keys": self.extra[:max_keys],
            "different_keys": self.different[:max_keys],
            "missing_total": len(self.missing),
            "extra_total": len(self.extra),
            "different_total": len(self.different),
            "keys_truncated": max(len(self.missing), len(self.extra), len(self.different)) > max_keys,
            "rechecked_after_catch_up": self.confirmed,
            "unsettled_keys": self.unsettled[:max_keys],
            "unsettled_total": len(self.unsettled),
            "suggested_action": self.suggested_action,
            "seconds": round(self.seconds, 3),
        }
        if self.repaired:
            out["repaired"] = self.repaired
            out["repaired_keys"] = self.repaired_keys[:max_keys]
        if self.error is not None:
            out["error"] = self.error
        return out


def json_value(value: Any) -> Any:
    """A key value as JSON: integers as numbers, uuid as lower-case text, bytes as hex, the rest as text."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, datetime | date | dtime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return str(value)


def _keys(found: dict[str, tuple[Any, ...]], names: Sequence[str]) -> list[Key]:
    rows = sorted(found.items())
    return [{n: json_value(v) for n, v in zip(names, key, strict=True)} for _kt, key in rows]


def _failed(target: TargetTable, exc: Exception) -> TableReport:
    """The report of a table whose reconciliation failed: the classified message (never a driver's field dict)
    and its hint, which becomes the suggested action."""
    error = classify(exc)
    message = str(error.args[0]) if error.args else type(error).__name__
    return TableReport(target.source, target.qualified_name, "error", error=message, hint=error.hint)


def suggest(report: TableReport) -> str:
    """What to do about ``report`` (docs/reconciliation.md explains each)."""
    if report.status == "consistent":
        if report.unsettled:
            return "none; keys written at the source all along could not be compared: run reconcile again later"
        return "none"
    if report.status == "error":
        return f"{report.hint or 'fix the error named'}; then run reconcile again"
    if not report.confirmed:
        return (
            "the pipeline is behind the source: let it catch up (start it if it is stopped), then run reconcile again"
        )
    share = report.differing / max(report.source_rows, 1)
    if share > RESYNC_SHARE:
        return f"many rows differ: run `mssql2pg resync {report.table}`"
    return f"run `mssql2pg reconcile --repair {report.table}` (or `mssql2pg resync {report.table}`)"


@dataclass(frozen=True)
class Progress:
    """Where a run says which table and phase it is at: the CLI shows it on a terminal, since the first pass
    over a large table is one long query per database with nothing else to show. ``say("")``: nothing to show
    (before a log line)."""

    say: Callable[[str], None]
    total: int

    def table(self, index: int, table: TableId, phase: str) -> None:
        self.say(f"{table} ({index}/{self.total}): {phase}")


def _quiet(_text: str) -> None:
    return None


@dataclass(frozen=True)
class Settings:
    settle_seconds: float = DEFAULT_SETTLE_SECONDS
    max_keys: int = DEFAULT_MAX_KEYS  # per kind, in the stored record (the totals are always stored)
    repair: bool = False  # rewrite the differing keys from the source (reconcile.repair), then re-check them


def reconcile(
    config: Config,
    tables: Sequence[str] = (),
    settings: Settings | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[TableReport]:
    """Reconcile ``tables`` (source names; every replicated table when empty); ``progress`` is told each table
    and phase."""
    settings = settings or Settings()
    engine = source_engine(config)
    try:
        plan, unmappable = _plan(engine, config, tables)
        connect = target_connector(config)
        reports: list[TableReport] = [
            TableReport(table, "", "error", error=str(exc.args[0]), suggested_action=exc.hint or "none")
            for table, exc in unmappable
        ]  # paused by the pipeline too (names that map to no target table): nothing to compare
        run_id = str(uuid.uuid4())
        say = Progress(progress or _quiet, len(plan))
        for index, target in enumerate(plan, start=1):
            started = time.monotonic()
            started_at = datetime.now(UTC)
            conn = connect()

            def phase(text: str, index: int = index, table: TableId = target.source) -> None:
                say.table(index, table, text)

            try:
                report = _reconcile_table(engine, conn, config, target, settings, phase=phase)
            except Exception as exc:  # one table's database error must not hide the other tables' results
                report = _failed(target, exc)
            finally:
                conn.close()
            report.seconds = time.monotonic() - started
            report.suggested_action = suggest(report)
            _store(connect, config.pipeline.name, run_id, report, started_at=started_at, max_keys=settings.max_keys)
            say.say("")  # the progress line gives way to the log line
            log.info(
                "table reconciled",
                table=str(report.table),
                status=report.status,
                differing=report.differing,
                seconds=round(report.seconds, 2),
            )
            reports.append(report)
        return reports
    finally:
        engine.dispose()


def _plan(
    engine: sa.Engine, config: Config, tables: Sequence[str]
) -> tuple[list[TargetTable], list[tuple[TableId, ConfigError]]]:
    """The target tables to compare, and the selected tables whose names map to no target table or that are gone
    at the source (the pipeline pauses those; they are reported as errors instead of ending the whole run)."""
    selections, instances, gone = discover_known(engine, config)
    if tables:
        try:
            wanted = [TableId.parse(t) for t in tables]
        except ValueError as exc:
            raise ConfigError(str(exc), hint="name tables as schema.table, e.g. dbo.orders") from exc
        known = {s.source for s in selections} | set(gone)
        unknown = [str(t) for t in wanted if t not in known]
        if unknown:
            raise ConfigError(
                f"not replicated by pipeline {config.pipeline.name!r}: {', '.join(unknown)}",
                hint="check the spelling, or add the table under `tables:` in the configuration",
            )
        selections = [s for s in selections if s.source in set(wanted)]
        gone = [t for t in gone if t in set(wanted)]
    targets: list[TargetTable] = []
    unmappable: list[tuple[TableId, ConfigError]] = []
    for table in gone:  # paused by the pipeline too: its source side cannot be read
        fault = TableGoneError(table)
        unmappable.append((table, ConfigError(str(fault.args[0]), hint=fault.hint)))
    for selection in selections:
        try:
            targets += target_tables([selection], instances)  # the same target tables the pipeline applies
        except ConfigError as exc:
            unmappable.append((selection.source, exc))
    return targets, unmappable


def sides(
    engine_conn: sa.Connection, conn: PgConnection, target: TargetTable, instance: CaptureInstance | None = None
) -> tuple[SourceSide, TargetSide]:
    """The two sides of ``target``'s table, the source read through ``instance`` (default: the target's newest
    capture instance; :func:`~mssql2pg.reconcile.source.reading_instance` for a ``spatial: wkb`` table)."""
    dialect: Dialect = "mssql" if engine_conn.dialect.name == "mssql" else "postgresql"
    ci = instance or target.capture_instance
    return (
        SourceSide(engine_conn, source_relation(ci, dialect), decode_key=key_decoder(ci)),
        TargetSide(conn, target_relation(target, wkb_columns(ci))),
    )


def _reconcile_table(
    engine: sa.Engine,
    conn: PgConnection,
    config: Config,
    target: TargetTable,
    settings: Settings,
    *,
    phase: Callable[[str], None],
) -> TableReport:
    ci = reading_instance(target, spatial_wkb=target.source in spatial_wkb_tables(config, [target.source]))
    with engine.connect() as src_conn:
        source, tgt = sides(src_conn, conn, target, ci)

        def settle(found: Differences) -> Rechecked:
            return recheck_live(
                source,
                tgt,
                found,
                source_max_lsn=lambda: Lsn.from_bytes(src_conn.execute(source_sql.MAX_LSN).scalar()),
                checkpoint=lambda: _checkpoint(conn, config.pipeline.name, str(target.source)),
                timeout=settings.settle_seconds,
            )

        phase("segment checksums in both databases")
        found = compare_table(source, tgt)
        confirmed, unsettled = True, {}
        if found.count:
            phase(f"re-checking {found.count} keys once the pipeline has caught up")
            result = settle(found)
            found, confirmed, unsettled = result.differences, result.confirmed, result.unsettled
        src_conn.rollback()
        if not (settings.repair and confirmed and found.count):
            return _report(target, found, confirmed, unsettled)
        phase(f"repairing {found.count} keys")
        repair_keys(engine, target_connector(config), config.pipeline.name, target, found.keys(), instance=ci)
        phase(f"re-checking {found.count} repaired keys")
        after = settle(found)
        src_conn.rollback()
    return _repaired_report(target, found, after.differences, {**unsettled, **after.unsettled})


def _repaired_report(
    target: TargetTable, found: Differences, after: Differences, unsettled: dict[str, tuple[Any, ...]]
) -> TableReport:
    """The table after a repair: what still differs (normally nothing) and which keys were fixed (a key the
    source changed all through the re-check is not counted as fixed: it could not be compared)."""
    still = {*after.missing, *after.extra, *after.different, *unsettled}
    fixed = {
        kt: key for kind in (found.missing, found.extra, found.different) for kt, key in kind.items() if kt not in still
    }
    # the target gained the missing rows fixed and lost the extra rows fixed
    after.target_rows = (
        found.target_rows + sum(1 for kt in found.missing if kt in fixed) - sum(1 for kt in found.extra if kt in fixed)
    )
    report = _report(target, after, confirmed=True, unsettled=unsettled)
    report.repaired = len(fixed)
    report.repaired_keys = _keys(fixed, target.capture_instance.key_columns)
    return report


def _checkpoint(conn: PgConnection, pipeline: str, table: str) -> Lsn:
    """How far ``table`` is applied: the checkpoint of the group that replicates it."""
    if not control.control_table_exists(conn, "checkpoints"):
        return Lsn.NULL
    return control.table_checkpoint(conn, pipeline, table)


def _report(
    target: TargetTable, found: Differences, confirmed: bool, unsettled: dict[str, tuple[Any, ...]] | None = None
) -> TableReport:
    names = target.capture_instance.key_columns
    return TableReport(
        table=target.source,
        target=f"{target.schema}.{target.name}",
        status="inconsistent" if found.count else "consistent",
        source_rows=found.source_rows,
        target_rows=found.target_rows,
        missing=_keys(found.missing, names),
        extra=_keys(found.extra, names),
        different=_keys(found.different, names),
        confirmed=confirmed,
        unsettled=_keys(unsettled or {}, names),
    )


def _store(
    connect: Callable[[], PgConnection],
    pipeline: str,
    run_id: str,
    report: TableReport,
    *,
    started_at: datetime,
    max_keys: int,
) -> None:
    """One row of ``mssql2pg.reconciliation_runs`` (creating the control schema on a target that has none)."""
    doc = report.as_json(max_keys)
    record = control.ReconciliationRecord(
        run_id=run_id,
        pipeline=pipeline,
        source_table=str(report.table),
        target_table=report.target,
        status=report.status,
        source_rows=report.source_rows,
        target_rows=report.target_rows,
        missing=len(report.missing),
        extra=len(report.extra),
        different=len(report.different),
        keys={k: doc[k] for k in ("missing_keys", "extra_keys", "different_keys", "unsettled_keys")},
        rechecked=report.confirmed,
        repaired=report.repaired,
        suggested_action=report.suggested_action,
        error=report.error,
        started_at=started_at,
        duration_seconds=report.seconds,
    )
    conn = connect()
    try:
        conn.run("BEGIN")
        control.ensure_control_schema(conn)
        control.record_reconciliation(conn, record)
        conn.run("COMMIT")
    finally:
        conn.close()
