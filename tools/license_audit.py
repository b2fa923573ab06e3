"""Fail when a runtime dependency is not under a permissive licence.

The runtime closure is computed from the installed metadata of ``mssql2pg``: its ``Requires-Dist`` without
extras plus those of the extras users install to run it (:data:`RUNTIME_EXTRAS`), followed transitively.
Each package's licence comes from pip-licenses. Exceptions must be listed in ``ALLOWED_EXCEPTIONS`` with a
reason, and in docs/licenses.md.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib import metadata

PERMISSIVE = re.compile(
    r"\b(MIT|BSD|Apache|PSF|Python Software Foundation|ISC|0BSD|Unlicense|MPL-2\.0|HPND|Zlib)\b",
    re.IGNORECASE,
)
COPYLEFT = re.compile(r"\b(GPL|LGPL|AGPL|SSPL|BUSL|Commons Clause)\b", re.IGNORECASE)
# name -> reason; keep docs/licenses.md in step.
ALLOWED_EXCEPTIONS: dict[str, str] = {}
# Extras of mssql2pg that users install to run it (not the dev tools): audited like the core dependencies.
RUNTIME_EXTRAS = ("localpg",)


def runtime_closure(root: str = "mssql2pg", extras: tuple[str, ...] = RUNTIME_EXTRAS) -> set[str]:
    seen: set[str] = set()
    todo = [root]
    while todo:
        name = _normalise(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        try:
            reqs = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        wanted = extras if name == _normalise(root) else ()
        for req in reqs:
            if _applies(req, wanted):
                todo.append(re.split(r"[ ;<>=!~\[(]", req, maxsplit=1)[0])
    seen.discard(_normalise(root))
    return seen


def _applies(req: str, extras: tuple[str, ...]) -> bool:
    """A requirement without an extra whose marker holds here, or one of ``extras``' requirements."""
    if ";" not in req:
        return True
    from packaging.markers import Marker  # noqa: PLC0415 - only needed with markers

    marker = Marker(req.split(";", 1)[1])
    if "extra" not in str(marker):
        return marker.evaluate()
    return any(marker.evaluate({"extra": extra}) for extra in extras)


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def main() -> int:
    closure = runtime_closure()
    out = subprocess.run(
        [sys.executable, "-m", "piplicenses", "--format=json", "--from=mixed"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    licences = {_normalise(p["Name"]): p["License"] for p in json.loads(out)}
    bad: list[str] = []
    for name in sorted(closure):
        lic = licences.get(name, "UNKNOWN")
        ok = bool(PERMISSIVE.search(lic)) and not COPYLEFT.search(lic)
        status = "ok" if ok else ("exception" if name in ALLOWED_EXCEPTIONS else "NOT PERMISSIVE")
        print(f"  {name:<24} {lic:<50} {status}")
        if not ok and name not in ALLOWED_EXCEPTIONS:
            bad.append(f"{name} ({lic})")
    if bad:
        print("licence audit failed: " + ", ".join(bad), file=sys.stderr)
        print("Make it an optional extra and explain it in docs/licenses.md.", file=sys.stderr)
        return 1
    print(f"licence audit: {len(closure)} runtime dependencies, all permissive")
    return 0


if __name__ == "__main__":
    sys.exit(main())
