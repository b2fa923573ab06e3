"""The checks of ``mssql2pg check``: is everything in place to replicate? Each finding says what to do about it.

It checks, in order, stopping where a later check could not mean anything: the configuration; the source
connection; CDC on the database and on every selected table; that the capture job is producing LSNs; the
source login's SELECT grants; the target connection and the target role's grants (each missing grant is
reported with the exact GRANT to run); and, for each table, how far the committed checkpoint is above the
capture instance's minimum LSN (CDC cleanup deletes change rows below it; a checkpoint below it means lost
changes). A database
that cannot be reached ends the checks with its driver error (:mod:`mssql2pg.cli` tells it in one line).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import pg8000.native
import sqlalchemy as sa

from mssql2pg import control
from mssql2pg.classify import is_permission_denied, scrub
from mssql2pg.config import Config
from mssql2pg.errors import Mssql2pgError
from mssql2pg.model import CaptureInstance
from mssql2pg.pipeline.connections import source_engine
from mssql2pg.pipeline.plan import discover_following, target_tables, usable_selections
from mssql2pg.pipeline.privileges import SourceGrants, source_missing, source_user, target_missing
from mssql2pg.pipeline.retention import cleanup_retention_seconds, margin_seconds
from mssql2pg.positions import Lsn
from mssql2pg.source import statements
from mssql2pg.source.errors import TableGoneError


@dataclass
class Finding:
    ok: bool
    what: str
    hint: str | None = None


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    on_finding: Callable[[Finding], None] | None = None
    """Called with each finding as it is made (the command line prints it at once)."""

    def add(self, ok: bool, what: str, hint: str | None = None) -> bool:
        finding = Finding(ok, what, hint)
        self.findings.append(finding)
        if self.on_finding is not None:
            self.on_finding(finding)
        return ok

    @property
    def ok(self) -> bool:
        return all(f.ok for f in self.findings)


def run_checks(
    config: Config, connect_target: Callable[[], pg8000.native.Connection], report: Report | None = None
) -> Report:
    """Run the checks into ``report`` (a new one by default). A database that cannot be reached is not a
    finding: its driver error propagates, and the command line tells it like every command does."""
    report = report if report is not None else Report()
    report.add(True, f"configuration is valid ({len(config.tables)} table entries)")
    engine = source_engine(config)
    with engine.connect() as conn:
        conn.execute(sa.select(sa.literal(1))).scalar()
    report.add(True, f"source {config.source.redacted_url()} is reachable")
    try:
        selections, instances, gone = discover_following(engine, config, registered=_registered(config, connect_target))
    except Mssql2pgError as exc:
        report.add(False, str(exc).split("\n  hint:")[0], exc.hint)
        return report
    except Exception as exc:
        if is_permission_denied(exc):
            with engine.connect() as conn:
                cdc_grant = SourceGrants(engine.dialect.name, source_user(conn)).cdc_schema()
            report.add(False, f"the source login cannot read the CDC catalog: {_brief(exc)}", f"run: {cdc_grant}")
            return report
        report.add(
            False,
            f"cannot read the CDC catalog: {_brief(exc)}",
            "enable CDC on the database (EXEC sys.sp_cdc_enable_db) and grant the pipeline's login "
            "SELECT on the cdc schema",
        )
        return report
    for table in gone:  # `run` pauses it and replicates the others
        gone_fault = TableGoneError(table)
        report.add(False, str(gone_fault.args[0]), gone_fault.remediation)
    for sel in selections:
        names = ", ".join(ci.name for ci in instances[sel.source])
        report.add(True, f"{sel.source}: CDC enabled (capture instance {names}) -> {sel.target}")
    usable, faults = usable_selections(selections, instances)
    for fault in faults:  # `run` pauses these tables and replicates the others
        report.add(False, str(fault).split("\n  hint:")[0], fault.remediation)
    missing = source_missing(engine, instances)
    for grant in missing:
        report.add(False, grant.what, f"run on the source: {grant.grant}")
    if not missing:
        report.add(True, "the source login can read every change table and replicated table")
    with engine.connect() as conn:
        max_lsn = Lsn.from_bytes(conn.execute(statements.MAX_LSN).scalar())
        newest = conn.execute(statements.COMMIT_TIME, {"lsn": max_lsn.raw}).scalar() if max_lsn else None
    if not report.add(
        not max_lsn.is_null,
        f"capture job has produced LSNs (max LSN {max_lsn}" + (f", committed {newest})" if newest else ")"),
        "start SQL Server Agent and the capture job (EXEC sys.sp_cdc_start_job @job_type = N'capture')",
    ):
        return report
    target = connect_target()
    report.add(True, f"target {config.target.redacted_url()} is reachable")
    try:
        lacking = target_missing(target, target_tables(usable, instances), protect=config.target.protect)
        for grant in lacking:
            report.add(False, grant.what, f"run on the target: {grant.grant}")
        if not lacking:
            report.add(True, "the target role can create and write the control schema and every target table")
        checkpoint = _checkpoint(target, config.pipeline.name, config.pipeline.group_key)
        held = control.held_positions(target, config.pipeline.name)
    finally:
        target.close()
    _retention(
        report,
        engine,
        instances,
        checkpoint,
        newest,
        held=held,
        fallback=config.schema_evolution.cdc_retention_fallback,
    )
    return report


def _registered(config: Config, connect_target: Callable[[], pg8000.native.Connection]) -> frozenset[str]:
    """The tables the pipeline replicated before (a table among them gone from the source is a finding, not a
    configuration error). A target that cannot be reached yet has none to tell: the target check that follows
    reports it unreachable."""
    try:
        conn = connect_target()
    except Exception:  # reported by the target check below, in its place in the order
        return frozenset()
    try:
        return control.registered_tables(conn, config.pipeline.name)
    finally:
        conn.close()


def _checkpoint(conn: pg8000.native.Connection, pipeline: str, group: str) -> Lsn:
    if not control.control_table_exists(conn, "checkpoints"):
        return Lsn.NULL
    return control.read_checkpoint(conn, pipeline, group)


def _retention(
    report: Report,
    engine: sa.Engine,
    instances: dict,  # type: ignore[type-arg]
    group_checkpoint: Lsn,
    newest: datetime | None,
    *,
    held: dict[str, Lsn],
    fallback: float,
) -> None:
    """Each table's position against the oldest change CDC still keeps, and its retention margin (how long until
    cleanup removes the oldest change it still needs, :mod:`.retention`). A table paused by a schema change is
    at its held position (its changes wait in CDC until it resumes), not at the group's checkpoint."""
    with engine.connect() as conn:
        retention = cleanup_retention_seconds(conn, fallback)
        for table, cis in instances.items():
            ci = cis[0]
            checkpoint = held.get(str(table), group_checkpoint)
            paused = " (paused: its changes wait in CDC until it resumes)" if str(table) in held else ""
            min_lsn = Lsn.from_bytes(conn.execute(statements.MIN_LSN, {"capture_instance": ci.name}).scalar())
            if checkpoint.is_null:
                report.add(
                    True, f"{table}: no checkpoint yet; the first run starts at the oldest change kept ({min_lsn})"
                )
                continue
            if min_lsn.raw is not None and checkpoint < min_lsn.decrement():
                report.add(
                    False,
                    f"{table}: checkpoint {checkpoint} is below the oldest change kept ({min_lsn}): "
                    "CDC cleanup removed changes this pipeline never applied",
                    f"run `mssql2pg resync {table}` to re-snapshot the table",
                )
                continue
            floor_time = conn.execute(statements.COMMIT_TIME, {"lsn": min_lsn.raw}).scalar() if min_lsn else None
            margin = ""
            if floor_time is not None and newest is not None:
                margin = f"; the oldest kept change is {(newest - floor_time).total_seconds() / 3600:.1f} h old"
            left = margin_seconds(conn, checkpoint, retention)
            if left is not None:
                margin += f"; retention margin {left / 3600:.1f} h (cleanup retention {retention / 3600:.1f} h)"
            report.add(True, f"{table}: checkpoint {checkpoint}{paused} is within the retention window{margin}")
            _switch(report, table, cis, checkpoint)


def _switch(report: Report, table: object, cis: tuple[CaptureInstance, ...], checkpoint: Lsn) -> None:
    """During a capture-instance switch: whether the older instance may be disabled yet. It holds the changes
    below the newer one's start LSN; disabling it before the checkpoint passed that LSN loses them
    (docs/schema-evolution.md)."""
    for old, new in itertools.pairwise(cis):
        if new.start_lsn.is_null or checkpoint < new.start_lsn.decrement():
            start = "its start LSN is not established yet" if new.start_lsn.is_null else f"starts at {new.start_lsn}"
            report.add(
                True,
                f"{table}: keep capture instance {old.name} until the checkpoint passes where {new.name} "
                f"starts ({start}; checkpoint {checkpoint})",
            )
        else:
            report.add(
                True,
                f"{table}: capture instance {old.name} can be disabled: the checkpoint passed the start of "
                f"{new.name} ({new.start_lsn})",
                f"EXEC sys.sp_cdc_disable_table @source_schema = N'{old.source.schema}', @source_name = "
                f"N'{old.source.name}', @capture_instance = N'{old.name}'",
            )


def _brief(exc: BaseException) -> str:
    return scrub(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
