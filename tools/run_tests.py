"""`make test`: the whole suite under coverage, with pytest's "no tests ran" treated as a failure.

pytest exits 5 when it collected nothing; a test command that "passes" without running a test would let a
broken collection land, so that is turned into a failure here. Coverage is combined across the CLI
subprocesses the end-to-end tests start, then held to the fail-under in pyproject.toml.
"""

from __future__ import annotations

import os
import subprocess
import sys

NO_TESTS_COLLECTED = 5


def main() -> int:
    env = dict(os.environ)
    subprocess.run([sys.executable, "-m", "coverage", "erase"], check=True)
    args = [sys.executable, "-m", "pytest", "--cov=mssql2pg", "--cov-report=", *sys.argv[1:]]
    rc = subprocess.run(args, env=env, check=False).returncode
    if rc == NO_TESTS_COLLECTED:
        print("make test: pytest ran no tests; that is a failure", file=sys.stderr)
        return 1
    if rc != 0:
        return rc
    # --append: pytest-cov has already combined what it saw into .coverage; data files that processes started
    # by the tests (spawned reader processes, CLI subprocesses) finish writing later are added to it. Without it,
    # combine REPLACES .coverage with just those late files (an empty report, "No data to report").
    subprocess.run([sys.executable, "-m", "coverage", "combine", "--append", "--quiet"], check=False)
    return subprocess.run([sys.executable, "-m", "coverage", "report"], check=False).returncode


if __name__ == "__main__":
    sys.exit(main())
