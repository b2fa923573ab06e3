"""The initial snapshot's progress bar: drawn in place on a terminal, never into a file or a pipe (logs there)."""

from __future__ import annotations

import io

from mssql2pg.pipeline.snapshot_load import _ProgressBar


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_one_line_redrawn_with_the_share_loaded() -> None:
    term = Terminal()
    bar = _ProgressBar.on(term, "dbo.orders")
    bar.show(250_000, 1_000_000)
    bar.show(500_000, 1_000_000)
    bar.close()
    text = term.getvalue()
    assert "\n" not in text
    assert text.count("\r") == 3
    assert "dbo.orders" in text
    assert "25%  250,000 / 1,000,000 rows" in text
    assert "50%  500,000 / 1,000,000 rows" in text


def test_an_unknown_total_shows_the_rows_only() -> None:
    term = Terminal()
    _ProgressBar.on(term, "dbo.t").show(42, None)
    assert "42 rows" in term.getvalue()


def test_a_file_or_pipe_gets_nothing() -> None:
    out = io.StringIO()
    bar = _ProgressBar.on(out, "dbo.t")
    bar.show(1, 2)
    bar.close()
    assert out.getvalue() == ""
