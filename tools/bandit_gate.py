"""Run bandit on ``src`` and ``tools`` and fail on any finding that is not explained here (issue 15 point 8).

bandit cannot see that a name went through ``quote_ident`` or that a subprocess runs a fixed program, so some
findings are expected. Each is explained below per file and test, the way ruff's per-file ignores are in
pyproject.toml; anything else fails ``make lint``. An explanation that no longer matches a finding fails too,
so the list cannot outgrow the code. The command, for the record in docs/security.md::

    .venv/bin/bandit -r src tools -f json -q     # what this gate reads
    .venv/bin/python -m tools.bandit_gate        # the gate itself (in `make lint`)
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGETS = ("src", "tools")

_STATEMENTS = (
    "the home of this SQL (docs/architecture.md): identifiers through quote_ident/qualified, values bound; "
    "tools/sql_lint.py checks every interpolation"
)
_SUBPROCESS = "fixed programs with argument lists, never a shell; nothing from configuration or input"
_NARROWING = (
    "type narrowing for mypy of what holds by construction (each line's noqa says why); under python -O the "
    "next line fails on the same value"
)
EXPLAINED: dict[tuple[str, str], str] = {
    ("src/mssql2pg/control/statements.py", "B608"): _STATEMENTS,
    ("src/mssql2pg/sink/statements.py", "B608"): _STATEMENTS,
    ("src/mssql2pg/demo/workload.py", "B608"): "the demo's fixed tables, names quoted with quote_ident",
    ("src/mssql2pg/demo/workload.py", "B311"): "the demo's random workload, not cryptography",
    ("src/mssql2pg/retry.py", "B311"): "jitter of the retry backoff, not cryptography",
    ("src/mssql2pg/localpg.py", "B404"): "starts the local PostgreSQL servers of the demo and the tests",
    ("src/mssql2pg/localpg.py", "B603"): f"initdb, pg_ctl, postgres, runuser: {_SUBPROCESS}",
    ("src/mssql2pg/localpg.py", "B607"): "runuser (util-linux) is found on PATH like any system tool",
    ("src/mssql2pg/config/loading.py", "B506"): "yaml.load with _StrictLoader, a SafeLoader subclass",
    ("src/mssql2pg/pipeline/reader_process.py", "B403"): (
        "pickles only between the pipeline and its own reader process (multiprocessing pipe), never from outside"
    ),
    ("src/mssql2pg/pipeline/reader_process.py", "B301"): (
        "unpickles only what its own reader process sent over the multiprocessing pipe, never from outside"
    ),
    ("src/mssql2pg/cli/demo.py", "B311"): "the demo's random seed, not cryptography",
    ("src/mssql2pg/config/loading.py", "B105"): "compares a secret read from a file with '' to refuse it empty",
    ("src/mssql2pg/reconcile/target.py", "B101"): _NARROWING,
    ("src/mssql2pg/sink/types.py", "B101"): _NARROWING,
    ("tools/run_tests.py", "B404"): "the test runner starts pytest",
    ("tools/run_tests.py", "B603"): f"pytest and coverage: {_SUBPROCESS}",
    ("tools/license_audit.py", "B404"): "the licence audit runs pip-licenses",
    ("tools/license_audit.py", "B603"): f"pip-licenses: {_SUBPROCESS}",
    ("tools/bandit_gate.py", "B404"): "this gate runs bandit",
    ("tools/bandit_gate.py", "B603"): f"bandit: {_SUBPROCESS}",
}


def findings() -> list[dict[str, object]]:
    result = subprocess.run(
        [sys.executable, "-m", "bandit", "-r", *TARGETS, "-f", "json", "-q"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode not in (0, 1) or not result.stdout.strip():
        raise SystemExit(f"bandit did not run: {result.stderr.strip() or result.returncode}")
    report = json.loads(result.stdout)
    if report.get("errors"):
        raise SystemExit(f"bandit could not scan: {report['errors']}")
    return list(report["results"])


def judge(results: list[dict[str, object]]) -> tuple[list[str], list[str], Counter[tuple[str, str]]]:
    """(unexplained findings, explanations matching nothing, explained counts)."""
    unexplained: list[str] = []
    explained: Counter[tuple[str, str]] = Counter()
    for r in results:
        key = (str(r["filename"]).removeprefix("./"), str(r["test_id"]))
        if key in EXPLAINED:
            explained[key] += 1
        else:
            unexplained.append(f"{key[0]}:{r['line_number']}: {key[1]} {r['issue_text']}")
    stale = [f"{path} {test}" for (path, test) in EXPLAINED if (path, test) not in explained]
    return unexplained, stale, explained


def main() -> int:
    unexplained, stale, explained = judge(findings())
    for (path, test), count in sorted(explained.items()):
        print(f"explained  {path} {test} x{count}: {EXPLAINED[path, test]}")
    for line in unexplained:
        print(f"UNEXPLAINED {line}")
    for line in stale:
        print(f"STALE      {line}: no such finding any more; remove its explanation")
    print(f"bandit_gate: {sum(explained.values())} explained, {len(unexplained)} unexplained, {len(stale)} stale")
    return 1 if unexplained or stale else 0


if __name__ == "__main__":
    sys.exit(main())
