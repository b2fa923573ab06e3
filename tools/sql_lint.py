"""Flag SQL built from strings where a name or value could end up unquoted (issue 15 point 8, FR-015).

Two checks, both run by ``make lint`` (``python -m tools.sql_lint``):

* **Python** (``src/``): every f-string, ``%``-format, ``.format()`` or ``+`` whose text looks like SQL may
  interpolate only what cannot carry a hostile name or value unquoted: a call to ``quote_ident``/``qualified``
  (or a helper listed in :data:`SAFE_CALLS`, which quote), a ``.qualified_name``, an UPPER_CASE constant,
  a ``", ".join(...)`` of those, or a number. Anything else is a finding, unless the line says why it is safe
  with a ``# sql-lint: <reason>`` comment (the reason is required).
* **Emulator** (``src/mssql2pg/emulator/sql/*.sql``): every PL/pgSQL ``EXECUTE`` runs ``format(...)`` whose
  template is string literals only (no ``||`` building it, no variable), and the template holds no dollar
  quote (``$tag$``): a body spliced between dollar quotes ends early at the first ``$tag$`` inside a name
  (issue 15 point 4). Bodies go in with ``%L`` instead.

Values are never interpolated at all: they are bound (``:name`` for pg8000, SQLAlchemy bind parameters, COPY
data). Identifiers and DDL cannot be bound, which is the one exception to FR-015 (docs/security.md).
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STATEMENT_START = re.compile(
    r"^\s*\(?\s*(SELECT|INSERT|UPDATE|DELETE|CREATE|ALTER|DROP|TRUNCATE|COPY|GRANT|REVOKE|LOCK|WITH|SET|"
    r"COMMENT|ANALYZE|VACUUM|MERGE)\b"
)
CLAUSES = re.compile(r"\b(FROM|WHERE|INTO|VALUES|JOIN|RETURNING|ON CONFLICT|ORDER BY|GROUP BY)\b")
SAFE_CALLS = frozenset({"quote_ident", "qualified", "int", "len", "float"})
"""Calls whose result is safe in SQL text: the quoting functions, numbers. Functions of the scanned module
whose every ``return`` is safe are added, and so are functions whose ``def`` line says ``# sql-lint: quotes``."""
SAFE_ATTRIBUTES = frozenset({"qualified_name", "pg_type"})
"""``qualified_name``: quoted by TargetTable; ``pg_type``: one of the type map's fixed strings."""
EXEMPT = re.compile(r"#\s*sql-lint:\s*\S")
QUOTES = re.compile(r"#\s*sql-lint:\s*quotes\b")


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


def looks_like_sql(text: str) -> bool:
    """A statement (starts with a statement keyword in capitals) or a clause-rich fragment (two clauses)."""
    return (bool(STATEMENT_START.match(text)) and (len(text.split()) > 1)) or len(set(CLAUSES.findall(text))) >= 2


class _Scope:
    """What is known to be safe in one module: functions (by name) and, per function, local names."""

    def __init__(self, safe_calls: set[str], exempt_lines: frozenset[int] = frozenset()) -> None:
        self.calls = safe_calls
        self.names: set[str] = set()
        self.exempt_lines = exempt_lines  # lines whose `# sql-lint: <reason>` declares their expressions safe

    def safe(self, node: ast.expr | None) -> bool:  # noqa: PLR0911, PLR0912 - one case per kind of expression
        if node is None:
            return True
        if getattr(node, "lineno", None) in self.exempt_lines:
            return True
        if isinstance(node, ast.Constant):
            return True  # literal text is written by us, not taken from a name or value
        if isinstance(node, ast.Name):
            return node.id in self.names or node.id.lstrip("_").isupper()
        if isinstance(node, ast.Attribute):
            return node.attr in SAFE_ATTRIBUTES or node.attr.lstrip("_").isupper()
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if name in self.calls:
                return True
            if name in {"zip", "sorted", "reversed", "tuple", "list"}:
                return all(self.safe(a) for a in node.args)
            if name == "join" and isinstance(func, ast.Attribute) and node.args:
                return self.safe(node.args[0])
            return False
        if isinstance(node, ast.FormattedValue):
            return self.safe(node.value)
        if isinstance(node, ast.JoinedStr):
            return all(self.safe(v) for v in node.values if isinstance(v, ast.FormattedValue))
        if isinstance(node, ast.IfExp):
            return self.safe(node.body) and self.safe(node.orelse)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            return self.safe(node.left) and self.safe(node.right)
        if isinstance(node, ast.List | ast.Tuple):
            return all(self.safe(e) for e in node.elts)
        if isinstance(node, ast.Starred):
            return self.safe(node.value)
        if isinstance(node, ast.ListComp | ast.GeneratorExp):
            return self._comprehension(node)
        return False

    def _comprehension(self, node: ast.ListComp | ast.GeneratorExp) -> bool:
        """Safe when its element is, its loop variables counting as safe where they iterate over something safe."""
        before = set(self.names)
        try:
            for generator in node.generators:
                if self.safe(generator.iter):
                    targets = generator.target.elts if isinstance(generator.target, ast.Tuple) else [generator.target]
                    self.names |= {t.id for t in targets if isinstance(t, ast.Name)}
            return self.safe(node.elt)
        finally:
            self.names = before


def _assignments(func: ast.AST) -> dict[str, list[ast.expr]]:
    out: dict[str, list[ast.expr]] = {}
    for node in ast.walk(func):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    out.setdefault(target.id, []).append(node.value)
                elif isinstance(target, ast.Tuple):
                    same = isinstance(node.value, ast.Tuple) and len(node.value.elts) == len(target.elts)
                    each = node.value.elt if isinstance(node.value, ast.GeneratorExp | ast.ListComp) else None
                    for i, element in enumerate(target.elts):
                        if isinstance(element, ast.Name):
                            value = node.value.elts[i] if same else each or ast.Name("__unpacked__")  # type: ignore[attr-defined]
                            out.setdefault(element.id, []).append(value)
        elif isinstance(node, ast.AnnAssign | ast.AugAssign) and isinstance(node.target, ast.Name):
            if node.value is not None:
                out.setdefault(node.target.id, []).append(node.value)
        elif isinstance(node, ast.For) and isinstance(node.target, ast.Name):
            out.setdefault(node.target.id, []).append(ast.Name("__loop__"))  # unknown: a loop variable
        elif isinstance(node, ast.arg):
            out.setdefault(node.arg, []).append(ast.Name("__argument__"))  # unknown: a parameter
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "append"
            and isinstance(node.func.value, ast.Name)
            and node.args
        ):
            out.setdefault(node.func.value.id, []).append(node.args[0])
    return out


def _safe_names(scope: _Scope, func: ast.AST) -> set[str]:
    """Local names every assignment of which is safe (to a fixed point: a name may be built from others)."""
    assigned = _assignments(func)
    known: set[str] = set()
    changed = True
    while changed:
        changed = False
        scope.names = known
        for name, values in assigned.items():
            if name not in known and all(scope.safe(v) for v in values):
                known.add(name)
                changed = True
    return known


def _functions(tree: ast.Module) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]


def _safe_calls(tree: ast.Module, lines: list[str], known: set[str]) -> set[str]:
    calls = set(SAFE_CALLS) | known
    funcs = _functions(tree)
    calls |= {f.name for f in funcs if QUOTES.search(lines[f.lineno - 1])}
    changed = True
    while changed:
        changed = False
        for f in funcs:
            if f.name in calls:
                continue
            scope = _Scope(calls)
            scope.names = _safe_names(scope, f)
            returns = [n.value for n in ast.walk(f) if isinstance(n, ast.Return)]
            if returns and all(r is not None and scope.safe(r) for r in returns):
                calls.add(f.name)
                changed = True
    return calls


def _sql_text(node: ast.expr) -> str:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else " x " for v in node.values)  # type: ignore[misc]
    return ""


def _python_findings(path: Path, source: str, known_calls: set[str] | frozenset[str] = SAFE_CALLS) -> Iterator[Finding]:
    lines = source.splitlines()
    rel = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
    tree = ast.parse(source)
    calls = _safe_calls(tree, lines, set(known_calls))

    def exempt(node: ast.AST) -> bool:
        first, last = node.lineno, getattr(node, "end_lineno", None) or node.lineno  # type: ignore[attr-defined]
        return any(EXEMPT.search(lines[i - 1]) for i in range(max(first - 1, 1), last + 1))

    exempt_lines = frozenset(i for i, line in enumerate(lines, start=1) if EXEMPT.search(line))
    owners: list[ast.AST] = [tree, *_functions(tree)]
    seen: set[int] = set()
    for owner in reversed(owners):  # innermost functions first: their locals decide
        scope = _Scope(calls, exempt_lines)
        scope.names = _safe_names(scope, owner) if owner is not tree else set()
        for node in ast.walk(owner):
            if id(node) in seen:
                continue
            unsafe: list[ast.expr] = []
            if isinstance(node, ast.JoinedStr) and looks_like_sql(_sql_text(node)):
                unsafe = [v.value for v in node.values if isinstance(v, ast.FormattedValue) and not scope.safe(v.value)]
            elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod) and looks_like_sql(_sql_text(node.left)):
                unsafe = [] if scope.safe(node.right) else [node.right]
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "format"
                and looks_like_sql(_sql_text(node.func.value))
            ):
                unsafe = [a for a in [*node.args, *(k.value for k in node.keywords)] if not scope.safe(a)]
            elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
                parts = [node.left, node.right]
                if any(looks_like_sql(_sql_text(p)) for p in parts):
                    unsafe = [p for p in parts if not _sql_text(p) and not scope.safe(p)]
            else:
                continue
            seen.add(id(node))
            if unsafe and not exempt(node):
                what = ", ".join(ast.unparse(u) for u in unsafe)
                yield Finding(
                    rel,
                    node.lineno,
                    f"SQL text built from {what}: quote it (quote_ident/qualified), bind it, or say why it is "
                    "safe with `# sql-lint: <reason>`",
                )


EXECUTE = re.compile(r"\bEXECUTE\s+(?!FUNCTION\b|PROCEDURE\b)", re.IGNORECASE)
DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$")


def _statement(text: str, start: int) -> str:
    """From ``start`` to the ``;`` that ends the statement (outside quotes and parentheses)."""
    depth, i, quote = 0, start, None
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "'" and text.startswith("''", i):
                i += 2
                continue
            if ch == "'":
                quote = None
        elif ch == "'":
            quote = ch
        elif ch == "$" and (m := DOLLAR_TAG.match(text, i)):
            close = text.find(m.group(0), m.end())
            i = (close + len(m.group(0))) if close >= 0 else len(text)
            continue
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == ";" and depth == 0:
            return text[start:i]
        i += 1
    return text[start:]


def _template(args: str) -> tuple[str, str]:
    """The leading string literals of ``format(``'s arguments (adjacent literals concatenate) and what follows."""
    i, parts = 0, []
    while True:
        while i < len(args) and args[i] in " \t\r\n":
            i += 1
        if not args.startswith("'", i):
            return "".join(parts), args[i:]
        j = i + 1
        while True:
            j = args.index("'", j)
            if args.startswith("''", j):
                j += 2
                continue
            break
        parts.append(args[i + 1 : j])
        i = j + 1


def _emulator_findings(path: Path, source: str) -> Iterator[Finding]:
    rel = str(path.relative_to(ROOT)) if path.is_absolute() and path.is_relative_to(ROOT) else str(path)
    code = re.sub(r"--[^\n]*", lambda m: " " * len(m.group(0)), source)  # keep offsets, drop comments
    for match in EXECUTE.finditer(code):
        line = code.count("\n", 0, match.start()) + 1
        statement = _statement(code, match.end())
        if not statement.lstrip().lower().startswith("format("):
            yield Finding(rel, line, "EXECUTE of a string not built by format(): use format() with %I / %L")
            continue
        template, rest = _template(statement.lstrip()[len("format(") :])
        if not template or not rest.lstrip().startswith((",", ")")):
            yield Finding(rel, line, "format() template built from strings (||) or a variable: use literals only")
            continue
        if DOLLAR_TAG.search(template):
            yield Finding(
                rel, line, "dollar quote inside an EXECUTEd template: a name containing it ends the body; use %L"
            )


def check(paths: list[Path]) -> list[Finding]:
    findings: list[Finding] = []
    calls: set[str] = set(SAFE_CALLS)
    for path in paths:  # quoting helpers of one module may be called from another (sql.staging_name)
        if path.suffix == ".py":
            text = path.read_text(encoding="utf-8")
            calls |= _safe_calls(ast.parse(text), text.splitlines(), calls)
    for path in paths:
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".py":
            findings += _python_findings(path, text, calls)
        elif path.suffix == ".sql":
            findings += _emulator_findings(path, text)
    return findings


def default_paths() -> list[Path]:
    return sorted((ROOT / "src").rglob("*.py")) + sorted((ROOT / "src" / "mssql2pg" / "emulator" / "sql").glob("*.sql"))


def main(argv: list[str]) -> int:
    paths = [Path(p).resolve() for p in argv] or default_paths()
    findings = check(paths)
    for finding in findings:
        print(finding)
    print(f"sql_lint: {len(paths)} files, {len(findings)} findings")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
