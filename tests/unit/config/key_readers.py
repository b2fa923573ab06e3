"""Which configuration keys the code reads: a static walk of ``src/mssql2pg`` that follows the types.

A documented key that nothing reads is a promise the program does not keep, so
``test_every_key_is_read.py`` holds every key of the reference (:func:`documented_keys`) against what this
module finds. "Reads" has to be decided without running the pipeline, and names alone cannot decide it
(``.name``, ``.host``, ``.group`` and ``.target`` are read on many objects that are not configuration), so
the walk tracks which expressions *are* configuration, from the annotations the code already carries:

* a name annotated with a configuration model imported from ``mssql2pg.config`` (``config: Config``,
  ``entry: TableEntry``), a name bound to ``load_config(...)``, a name bound to a configuration expression
  (``defaults = config.defaults``), and an attribute that a class of the same module declares with such a
  type (``self.config`` for ``config: Config``);
* from a configuration expression, an attribute that names a section gives that section's model
  (``config.apply`` is an ``ApplySettings``).

A key is read where an attribute of its name is taken on an expression of its model (``config.apply.
max_batch_rows``, ``entry.delete_mode``), or where a method or property of the model is used whose body
reads the key through ``self`` (``config.target.pg8000_params()`` reads ``connect_timeout``). The modules
that define, load and render the configuration are not readers: a validator looking at a key is not the key
doing what it says.

What the walk cannot follow - a section handed whole to another component that reads it through a protocol
(``Backoff(config.retry)``) - is recorded as a *handover* (callee name, model), so the test's allow-list can
name the reader and check both the handover and the reading function.
"""

from __future__ import annotations

import ast
import re
import typing
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel

from mssql2pg.config import Config, load_config
from mssql2pg.config.loading import _model_in  # the loader's own walk of nested models, so both agree
from mssql2pg.config.reference import DocumentedKey, documented_keys

PACKAGE = Path(__file__).resolve().parents[3] / "src" / "mssql2pg"
DEFINITION_MODULES = frozenset({"config/schema.py", "config/loading.py", "config/reference.py"})
"""Define, load and render the keys (paths relative to ``src/mssql2pg``): never counted as readers."""

_CONFIG_PACKAGE = "mssql2pg.config"
_LOADERS = frozenset({load_config.__name__})


def models() -> dict[str, type[BaseModel]]:
    """Every configuration model by class name: ``Config``, its sections, and their bases."""
    found: dict[str, type[BaseModel]] = {"Config": Config}
    for key in documented_keys():
        for cls in key.model.__mro__:
            if isinstance(cls, type) and issubclass(cls, BaseModel) and cls is not BaseModel:
                found.setdefault(cls.__name__, cls)
    return found


@dataclass(frozen=True)
class Read:
    """``model`` had its field ``key`` read in ``module`` at ``line``."""

    model: type[BaseModel]
    key: str
    module: str
    line: int


@dataclass
class Findings:
    reads: list[Read] = field(default_factory=list)
    handovers: set[tuple[str, type[BaseModel]]] = field(default_factory=set)
    """(callee name, model): a configuration section passed whole as an argument to that callee."""

    def read_keys(self, keys: Iterable[DocumentedKey]) -> set[str]:
        """The dotted names of ``keys`` that some read covers (a read on a base model covers its subclasses)."""
        return {
            key.dotted
            for key in keys
            for read in self.reads
            if read.key == key.name and issubclass(key.model, read.model)
        }

    def where(self, key: DocumentedKey) -> list[str]:
        """``module:line`` of each read of ``key``, for messages."""
        return sorted(
            {f"{r.module}:{r.line}" for r in self.reads if r.key == key.name and issubclass(key.model, r.model)}
        )


def scan_package(root: Path = PACKAGE) -> Findings:
    """Walk every module of the package except :data:`DEFINITION_MODULES`."""
    members = member_reads(root / "config" / "schema.py")
    findings = Findings()
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root).as_posix()
        if relative in DEFINITION_MODULES:
            continue
        scan_module(path.read_text(encoding="utf-8"), relative, members, findings)
    return findings


def scan_module(source: str, module: str, members: dict[str, dict[str, set[str]]], findings: Findings) -> None:
    """Add the configuration reads and handovers of one module's ``source`` to ``findings``."""
    tree = ast.parse(source)
    imported = _imported_models(tree)
    if not imported.names and not imported.loaders:
        return
    _Walker(module, imported, members, findings).visit(tree)


def member_reads(schema: Path) -> dict[str, dict[str, set[str]]]:
    """For each model class of the schema module: its methods and properties and the fields each reads
    through ``self``, directly or through another member (``redacted_url`` -> ``sqlalchemy_url`` -> ``url``).
    Inherited members are included (``SourceConfig`` gets ``DatabaseConfig``'s)."""
    tree = ast.parse(schema.read_text(encoding="utf-8"))
    own: dict[str, dict[str, set[str]]] = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            own[node.name] = {
                item.name: {
                    sub.attr
                    for sub in ast.walk(item)
                    if isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name) and sub.value.id == "self"
                }
                for item in node.body
                if isinstance(item, ast.FunctionDef)
            }
    result: dict[str, dict[str, set[str]]] = {}
    for name, model in models().items():
        methods: dict[str, set[str]] = {}
        for cls in reversed(model.__mro__):
            methods.update(own.get(cls.__name__, {}))
        result[name] = {member: _closure(member, methods, model) for member in methods}
    return result


def _closure(member: str, methods: dict[str, set[str]], model: type[BaseModel]) -> set[str]:
    fields: set[str] = set()
    seen: set[str] = set()
    todo = [member]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        for name in methods.get(current, set()):
            if name in model.model_fields:
                fields.add(name)
            elif name in methods:
                todo.append(name)
    return fields


# ------------------------------------------------------------------------------------------------ the walk


@dataclass
class _Imported:
    names: dict[str, type[BaseModel]] = field(default_factory=dict)
    """Local name -> model, for models imported from ``mssql2pg.config``."""
    loaders: set[str] = field(default_factory=set)
    """Local names of ``load_config``."""


def _imported_models(tree: ast.Module) -> _Imported:
    known = models()
    imported = _Imported()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(_CONFIG_PACKAGE):
            for alias in node.names:
                local = alias.asname or alias.name
                if alias.name in known:
                    imported.names[local] = known[alias.name]
                elif alias.name in _LOADERS:
                    imported.loaders.add(local)
    return imported


class _Walker(ast.NodeVisitor):
    def __init__(
        self,
        module: str,
        imported: _Imported,
        members: dict[str, dict[str, set[str]]],
        findings: Findings,
    ) -> None:
        self.module = module
        self.imported = imported
        self.members = members
        self.findings = findings
        self.scopes: list[dict[str, type[BaseModel] | None]] = [{}]
        """Innermost last; ``None`` marks a name bound to something that is not configuration (shadowing)."""
        self.class_fields: dict[str, type[BaseModel]] = {}

    # -- what is configuration

    def annotation_model(self, annotation: ast.expr | None) -> type[BaseModel] | None:
        """The one configuration model an annotation names (``Config``, ``"Config"``, ``Config | None``)."""
        if annotation is None:
            return None
        text = ast.unparse(annotation)
        found = {self.imported.names[n] for n in re.findall(r"[A-Za-z_]\w*", text) if n in self.imported.names}
        return found.pop() if len(found) == 1 else None

    def model_of(self, node: ast.expr) -> type[BaseModel] | None:
        if isinstance(node, ast.Name):
            for scope in reversed(self.scopes):
                if node.id in scope:
                    return scope[node.id]
            return None
        if isinstance(node, ast.Attribute):
            owner = self.model_of(node.value)
            if owner is not None:
                info = owner.model_fields.get(node.attr)
                return _model_in(info.annotation) if info is not None and not _is_sequence(info.annotation) else None
            return self.class_fields.get(node.attr)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in self.imported.loaders:
            return Config
        return None

    # -- scopes and bindings

    def visit_Module(self, node: ast.Module) -> None:
        for item in ast.walk(node):
            if isinstance(item, ast.ClassDef):
                for stmt in item.body:
                    if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                        model = self.annotation_model(stmt.annotation)
                        if model is not None:
                            self.class_fields[stmt.target.id] = model
        self.generic_visit(node)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for decorator in node.decorator_list:
            self.visit(decorator)
        arguments = node.args
        every = [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs, arguments.vararg, arguments.kwarg]
        scope = {arg.arg: self.annotation_model(arg.annotation) for arg in every if arg is not None}
        self.scopes.append(scope)
        for stmt in node.body:
            self.visit(stmt)
        self.scopes.pop()

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self.visit_FunctionDef(node)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        arguments = node.args
        every = [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs, arguments.vararg, arguments.kwarg]
        self.scopes.append(dict.fromkeys((arg.arg for arg in every if arg is not None), None))
        self.visit(node.body)
        self.scopes.pop()

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        """A class body is a scope of its own: its field declarations are not names of the module."""
        for item in [*node.decorator_list, *node.bases, *node.keywords]:
            self.visit(item)
        self.scopes.append({})
        for stmt in node.body:
            self.visit(stmt)
        self.scopes.pop()

    def visit_Assign(self, node: ast.Assign) -> None:
        self.visit(node.value)
        model = self.model_of(node.value)
        for target in node.targets:
            if isinstance(target, ast.Name):
                self._bind(target.id, model)
            else:
                self.visit(target)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)
        if isinstance(node.target, ast.Name):
            self._bind(node.target.id, self.annotation_model(node.annotation) or self._model_of_value(node.value))
        else:
            self.visit(node.target)

    def visit_For(self, node: ast.For | ast.AsyncFor) -> None:
        """``for entry in config.tables``: ``entry`` is a ``TableEntry``."""
        self.visit(node.iter)
        if isinstance(node.target, ast.Name):
            self._bind(node.target.id, self._element_model(node.iter))
        else:
            for name in ast.walk(node.target):
                if isinstance(name, ast.Name):
                    self._bind(name.id, None)
        for stmt in [*node.body, *node.orelse]:
            self.visit(stmt)

    def visit_AsyncFor(self, node: ast.AsyncFor) -> None:
        self.visit_For(node)

    def _element_model(self, iterable: ast.expr) -> type[BaseModel] | None:
        if not isinstance(iterable, ast.Attribute):
            return None
        owner = self.model_of(iterable.value)
        info = owner.model_fields.get(iterable.attr) if owner is not None else None
        return _model_in(info.annotation) if info is not None and _is_sequence(info.annotation) else None

    def _model_of_value(self, value: ast.expr | None) -> type[BaseModel] | None:
        return self.model_of(value) if value is not None else None

    def _bind(self, name: str, model: type[BaseModel] | None) -> None:
        self.scopes[-1][name] = model

    # -- reads and handovers

    def visit_Attribute(self, node: ast.Attribute) -> None:
        owner = self.model_of(node.value)
        if owner is not None:
            if node.attr in owner.model_fields:
                self._read(owner, node.attr, node.lineno)
            for key in self.members.get(owner.__name__, {}).get(node.attr, set()):
                self._read(owner, key, node.lineno)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        callee = _callee_name(node.func)
        if callee is not None:
            for argument in [*node.args, *(k.value for k in node.keywords)]:
                model = self.model_of(argument)
                if model is not None and model is not Config:
                    self.findings.handovers.add((callee, model))
        self.generic_visit(node)

    def _read(self, model: type[BaseModel], key: str, line: int) -> None:
        self.findings.reads.append(Read(model, key, self.module, line))


def _callee_name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None


def _is_sequence(annotation: object) -> bool:
    return typing.get_origin(annotation) in (tuple, list)


# ------------------------------------------------------------------------------ readers the walk cannot see


def function_reads(path: Path, qualified_name: str, key: str) -> bool:
    """Whether the function ``qualified_name`` (``func`` or ``Class.method``) of the module at ``path`` takes
    an attribute named ``key`` or uses the string ``key`` (a key read from a mapping). False when the
    function does not exist, so an allow-list entry that has gone stale fails."""
    function = _find_function(ast.parse(path.read_text(encoding="utf-8")), qualified_name.split("."))
    if function is None:
        return False
    return any(
        (isinstance(node, ast.Attribute) and node.attr == key) or (isinstance(node, ast.Constant) and node.value == key)
        for node in ast.walk(function)
    )


def _find_function(tree: ast.AST, parts: list[str]) -> ast.AST | None:
    for node in _children(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and node.name == parts[0]:
            return node if len(parts) == 1 else _find_function(node, parts[1:])
    return None


def _children(tree: ast.AST) -> Iterator[ast.AST]:
    body = getattr(tree, "body", [])
    yield from body
