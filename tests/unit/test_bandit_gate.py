"""``tools/bandit_gate.py``: a bandit finding without an explanation fails ``make lint``, and so does an
explanation that matches nothing any more (issue 15 point 8)."""

from __future__ import annotations

from tools import bandit_gate


def _finding(path: str, test: str, line: int = 1) -> dict[str, object]:
    return {"filename": f"./{path}", "test_id": test, "line_number": line, "issue_text": "planted"}


def test_an_unexplained_finding_is_reported_with_file_line_and_test() -> None:
    explained = [_finding(path, test) for path, test in bandit_gate.EXPLAINED]
    unexplained, stale, counts = bandit_gate.judge([*explained, _finding("src/mssql2pg/new.py", "B608", 7)])
    assert unexplained == ["src/mssql2pg/new.py:7: B608 planted"]
    assert stale == []
    assert sum(counts.values()) == len(bandit_gate.EXPLAINED)


def test_an_explanation_without_its_finding_is_stale() -> None:
    first, *rest = bandit_gate.EXPLAINED
    unexplained, stale, _ = bandit_gate.judge([_finding(path, test) for path, test in rest])
    assert unexplained == []
    assert stale == [f"{first[0]} {first[1]}"]


def test_every_explanation_gives_a_reason() -> None:
    assert all(len(reason) > 20 for reason in bandit_gate.EXPLAINED.values())
