"""The PostgreSQL transaction the applier is building: one :class:`Group` object.

A group is a run of consecutive complete source transactions (plus at most one that is still arriving) that
the applier commits as one PostgreSQL transaction, together with the checkpoint. Everything that belongs to the
group being built lives here - per target table the encoded lines not yet copied into staging, the rows already
staged, counts per operation and stale flags; for the whole group the position it will commit, the rows kept
for isolating a bad one, the dead letters and the source transaction ids - so that a commit or a rollback
resets exactly one thing, and a test can look at it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from mssql2pg.model import ChangeRow, TableId
from mssql2pg.positions import Lsn
from mssql2pg.sink.conflicts import TargetConflict
from mssql2pg.sink.deadletters import DeadLetter
from mssql2pg.sink.schema import TargetTable

OPERATION_SLOTS = 5  # counts are indexed by __$operation (1..4); slot 0 is unused


@dataclass(eq=False)
class TableBuffer:
    """One target table's share of the group, and its staging table (``index``, see ``statements.staging_name``)."""

    table: TargetTable
    index: int
    lines: list[str] = field(default_factory=list)  # encoded COPY lines not yet copied into staging
    rows: list[ChangeRow] = field(default_factory=list)  # parallel to lines, to name the row behind a COPY error
    staged: int = 0  # rows copied into staging in the open PostgreSQL transaction
    before: ChangeRow | None = None  # the last update before-image, to detect a key change in its after-image
    counts: list[int] = field(default_factory=lambda: [0] * OPERATION_SLOTS)  # rows per operation code
    stale: int = 0  # rows flagged stale
    only_inserts: bool = True  # staged rows are all inserts: keys are unique, no "last change per key" needed
    by_seq: dict[int, ChangeRow] | None = None
    """Policy ``dead-letter`` (conflicts detected): every row of the group by arrival seq, so a change set aside
    as a conflict can be dead-lettered even when the group is too big to keep ``Group.retained``."""

    def clear(self) -> None:
        self.lines.clear()
        self.rows.clear()
        if self.by_seq is not None:
            self.by_seq.clear()
        self.staged = 0
        self.before = None
        self.counts = [0] * OPERATION_SLOTS
        self.stale = 0
        self.only_inserts = True


@dataclass(eq=False)
class Group:
    """The group being built. ``buffers``: one per target table the applier applies, in apply order."""

    buffers: dict[TableId, TableBuffer] = field(default_factory=dict)
    in_pg_tx: bool = False  # a PostgreSQL transaction is open (a COPY into staging happened, or the commit began)
    open_tx: Lsn | None = None  # a source transaction that has only partly arrived
    pending_lsn: Lsn | None = None  # what the commit writes as checkpoint
    last_tx: Lsn | None = None  # commit LSN of the group's last complete source transaction (heartbeats aside)
    commit_time: datetime | None = None  # source commit time of the last complete transaction
    transactions: int = 0  # complete source transactions
    has_rows: bool = False  # rows to apply or dead letters to record (else a commit only moves the checkpoint)
    rows: int = 0
    started: float | None = None  # clock time of the group's first change
    retained: list[tuple[TableBuffer, ChangeRow, str]] | None = field(default_factory=list)
    """Every encoded row of the group, to isolate a bad one; None when the group is too big to keep them."""
    dead: list[DeadLetter] = field(default_factory=list)
    tran_ids: dict[Lsn, tuple[bytes | None, datetime | None]] = field(default_factory=dict)
    failure: BaseException | None = None  # a row fault during a COPY before the commit
    stale_logged: int = 0
    conflicts: list[TargetConflict] = field(default_factory=list)  # writes by someone else met while applying

    @property
    def is_empty(self) -> bool:
        """Nothing received, nothing staged, nothing to commit."""
        return (
            self.pending_lsn is None
            and self.open_tx is None
            and not self.in_pg_tx
            and not self.has_rows
            and not self.dead
            and all(not b.lines and not b.staged for b in self.buffers.values())
        )

    def clear(self) -> None:
        """Start a new group (after a commit or a rollback); the tables and their staging tables stay."""
        self.in_pg_tx = False
        self.open_tx = None
        self.pending_lsn = None
        self.last_tx = None
        self.commit_time = None
        self.transactions = 0
        self.has_rows = False
        self.rows = 0
        self.started = None
        self.retained = []
        self.dead = []
        self.tran_ids = {}
        self.failure = None
        self.stale_logged = 0
        self.conflicts = []
        for buffer in self.buffers.values():
            buffer.clear()
