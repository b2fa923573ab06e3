"""The control schema ``mssql2pg`` in the target: its migrations, checkpoints, table state and table locks, the
dead-letter store, and the read model ``mssql2pg status`` shows.

Everything that reads or writes the control schema goes through this package; its SQL lives in
:mod:`mssql2pg.control.statements`. It imports nothing from ``sink``, ``pipeline`` or ``cli`` (they import it):
tables are passed as plain values (source table, capture instance, target table). Every function takes an open
pg8000 native connection and runs in the caller's transaction unless it says otherwise.

* :mod:`~mssql2pg.control.migrations`: numbered versions, :func:`ensure_control_schema`;
* :mod:`~mssql2pg.control.checkpoints`: the pipeline checkpoint and the stores the applier writes through;
* :mod:`~mssql2pg.control.tables`: per-table state (register, pause, resync positions) and write locks;
* :mod:`~mssql2pg.control.deadletters`: the dead-letter store;
* :mod:`~mssql2pg.control.status`: what ``mssql2pg status`` reads;
* :mod:`~mssql2pg.control.snapshots`: the progress of each table's initial load;
* :mod:`~mssql2pg.control.reconciliations`: the record of ``mssql2pg reconcile`` runs;
* :mod:`~mssql2pg.control.schema_changes`: the record of source schema changes (``mssql2pg schema``);
* :mod:`~mssql2pg.control.instances`: the live processes of a pipeline that spreads its groups;
* :mod:`~mssql2pg.control.conflicts`: conflicts with writes to the target by someone else, per table and kind.
"""

from mssql2pg.control.checkpoints import (
    CheckpointRow,
    CheckpointStore,
    PipelineCheckpoint,
    ResumePositions,
    advance_checkpoint,
    group_checkpoints,
    move_tables_to_group,
    read_checkpoint,
    read_checkpoint_row,
    table_checkpoint,
)
from mssql2pg.control.conflicts import ConflictCount, count_target_conflicts, target_conflicts
from mssql2pg.control.deadletters import (
    DeadLetterRecord,
    StoredDeadLetter,
    count_dead_letters_by_status,
    fail_dead_letter_retry,
    get_dead_letter,
    ignore_dead_letter,
    list_dead_letters,
    record_dead_letters,
    resolve_dead_letter,
)
from mssql2pg.control.instances import live_instances, register_instance
from mssql2pg.control.migrations import (
    CONTROL_VERSION,
    MIGRATIONS,
    Migration,
    control_table_exists,
    ensure_control_schema,
    installed_version,
)
from mssql2pg.control.reconciliations import (
    LatestReconciliation,
    ReconciliationRecord,
    latest_reconciliations,
    record_reconciliation,
)
from mssql2pg.control.schema_changes import (
    SCHEMA_CHANGE_STATUSES,
    SchemaChange,
    StoredSchemaChange,
    approve_schema_change,
    count_schema_changes,
    fail_schema_change,
    get_schema_change,
    list_schema_changes,
    record_schema_change,
)
from mssql2pg.control.snapshots import (
    SnapshotProgress,
    advance_snapshot,
    finish_snapshot,
    read_snapshot_progress,
    set_snapshot_estimate,
    snapshots,
    start_snapshot,
)
from mssql2pg.control.statements import CONTROL_SCHEMA
from mssql2pg.control.status import GroupWriter, PipelineStatus, TableStatus, group_writers, read_status
from mssql2pg.control.tables import (
    TableBusyError,
    advance_resume_position,
    claim_tables,
    clear_resume_position,
    held_positions,
    hold_table_position,
    inactive_tables,
    mark_resynced,
    read_table_state,
    recorded_capture_instance,
    register_table,
    registered_tables,
    resume_positions,
    set_table_state,
    table_groups,
    try_claim_table,
)

__all__ = [
    "CONTROL_SCHEMA",
    "CONTROL_VERSION",
    "MIGRATIONS",
    "SCHEMA_CHANGE_STATUSES",
    "CheckpointRow",
    "CheckpointStore",
    "ConflictCount",
    "DeadLetterRecord",
    "GroupWriter",
    "LatestReconciliation",
    "Migration",
    "PipelineCheckpoint",
    "PipelineStatus",
    "ReconciliationRecord",
    "ResumePositions",
    "SchemaChange",
    "SnapshotProgress",
    "StoredDeadLetter",
    "StoredSchemaChange",
    "TableBusyError",
    "TableStatus",
    "advance_checkpoint",
    "advance_resume_position",
    "advance_snapshot",
    "approve_schema_change",
    "claim_tables",
    "clear_resume_position",
    "control_table_exists",
    "count_dead_letters_by_status",
    "count_schema_changes",
    "count_target_conflicts",
    "ensure_control_schema",
    "fail_dead_letter_retry",
    "fail_schema_change",
    "finish_snapshot",
    "get_dead_letter",
    "get_schema_change",
    "group_checkpoints",
    "group_writers",
    "held_positions",
    "hold_table_position",
    "ignore_dead_letter",
    "inactive_tables",
    "installed_version",
    "latest_reconciliations",
    "list_dead_letters",
    "list_schema_changes",
    "live_instances",
    "mark_resynced",
    "move_tables_to_group",
    "read_checkpoint",
    "read_checkpoint_row",
    "read_snapshot_progress",
    "read_status",
    "read_table_state",
    "record_dead_letters",
    "record_reconciliation",
    "record_schema_change",
    "recorded_capture_instance",
    "register_instance",
    "register_table",
    "registered_tables",
    "resolve_dead_letter",
    "resume_positions",
    "set_snapshot_estimate",
    "set_table_state",
    "snapshots",
    "start_snapshot",
    "table_checkpoint",
    "table_groups",
    "target_conflicts",
    "try_claim_table",
]
