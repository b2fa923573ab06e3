"""``mssql2pg reconcile``'s contract without databases: defaults, exit status, the JSON document's shape."""

from __future__ import annotations

import json

from mssql2pg.cli import reconcile as cli
from mssql2pg.model import TableId
from mssql2pg.reconcile import run
from mssql2pg.reconcile.run import TableReport


def _report(status: str, **kw: object) -> TableReport:
    return TableReport(TableId("dbo", "t"), "dbo.t", status, **kw)  # type: ignore[arg-type]


def test_the_cli_defaults_are_the_domain_defaults() -> None:
    assert cli.DEFAULT_MAX_KEYS == run.DEFAULT_MAX_KEYS
    assert cli.DEFAULT_SETTLE_SECONDS == run.DEFAULT_SETTLE_SECONDS


def test_exit_status_is_0_consistent_1_inconsistent_2_error() -> None:
    assert cli.exit_status([_report("consistent")]) == 0
    assert cli.exit_status([_report("consistent"), _report("inconsistent")]) == 1
    assert cli.exit_status([_report("inconsistent"), _report("error")]) == 2
    assert cli.exit_status([]) == 0


def test_key_lists_are_bounded_and_the_totals_reported() -> None:
    report = _report("inconsistent", source_rows=10, target_rows=7, missing=[{"id": i} for i in range(3)])
    report.suggested_action = run.suggest(report)

    doc = json.loads(json.dumps(cli.document("p", [report], max_keys=2)))

    (table,) = doc["tables"]
    assert table["table"] == "dbo.t"
    assert table["status"] == "inconsistent"
    assert table["missing_keys"] == [{"id": 0}, {"id": 1}]
    assert table["missing_total"] == 3
    assert table["keys_truncated"] is True
    assert table["extra_keys"] == table["different_keys"] == []
    assert "resync" in table["suggested_action"]  # 3 of 10 rows differ: more than the repair share
    assert doc["consistent"] is False


def test_key_values_as_json() -> None:
    import uuid  # noqa: PLC0415

    assert run.json_value(5) == 5
    assert run.json_value(uuid.UUID("6F9619FF-8B86-D011-B42D-00C04FC964FF")) == "6f9619ff-8b86-d011-b42d-00c04fc964ff"
    assert run.json_value(b"\x00\xff") == "00ff"


class _Stream:
    def __init__(self, tty: bool) -> None:
        self.tty, self.text = tty, ""

    def isatty(self) -> bool:
        return self.tty

    def write(self, text: str) -> int:
        self.text += text
        return len(text)

    def flush(self) -> None:
        pass


def test_progress_is_shown_on_a_terminal_and_cleared_before_the_report() -> None:
    stream = _Stream(tty=True)
    show = cli.progress_display(stream)
    assert show is not None

    show("dbo.orders (1/2): segment checksums")
    show("dbo.orders (1/2): re-checking 3 keys")
    show("")
    assert stream.text.endswith("\r\x1b[K")  # an empty line: room for a log line
    cli.clear_progress(stream)

    assert "\rdbo.orders (1/2): segment checksums" in stream.text
    assert "re-checking 3 keys" in stream.text
    assert stream.text.endswith("\r\x1b[K")  # the line is gone before the report is printed


def test_no_progress_when_not_on_a_terminal() -> None:
    assert cli.progress_display(_Stream(tty=False)) is None


def test_the_run_tells_each_table_and_phase() -> None:
    seen: list[str] = []
    say = run.Progress(seen.append, total=2)

    say.table(1, TableId("dbo", "a"), "segment checksums")
    say.table(2, TableId("dbo", "b"), "re-checking 4 keys")

    assert seen == ["dbo.a (1/2): segment checksums", "dbo.b (2/2): re-checking 4 keys"]


def test_the_repaired_count_reads_right_for_one_key_and_for_several(capsys) -> None:  # type: ignore[no-untyped-def]
    one = TableReport(TableId("dbo", "t"), '"dbo"."t"', "inconsistent", repaired=1, repaired_keys=[{"id": 1}])
    two = TableReport(
        TableId("dbo", "u"), '"dbo"."u"', "inconsistent", repaired=2, repaired_keys=[{"id": 1}, {"id": 2}]
    )
    cli._print_table([one, two], 10)
    out = capsys.readouterr().out
    assert 'repaired 1 key: {"id": 1}' in out
    assert "repaired 2 keys: " in out
