"""ARCHITECTURE.md's two rules that an import alone does not show, as import-linter contracts.

``make lint`` runs them with the import contracts (``lint-imports``; see ``pyproject.toml``):

- ``FolderFilesContract``: only ``mnistfc.folder`` names the files it keeps in a results
  folder. Outside it, no path is built from their names (a string used with ``/``, in a glob
  or open, or holding a ``/``) and no module imports the constants that name them.
- ``OutputContract``: only the CLI prints or configures logging. Elsewhere there is no
  ``print``, no write to ``sys.stdout``/``sys.stderr`` and no handler, level or
  ``basicConfig``, except in the one function that sends a job's log records to its stderr;
  and only the job entry points call that function.

Both read each module's source with ``ast``; they see what is written, not what runs, so
a name built at run time from pieces would slip through. The lint's own tests
(``tests/test_contracts.py``) show each contract failing on a module that breaks it.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from collections.abc import Iterator
from pathlib import Path

from grimp import ImportGraph
from importlinter.application import output
from importlinter.domain import fields
from importlinter.domain.contract import Contract, ContractCheck

_PATH_CALLS = {"glob", "rglob", "joinpath", "open", "Path", "exists", "is_file", "is_dir"}
_OUTPUT_ATTRS = {"addHandler", "setLevel", "basicConfig", "dictConfig", "fileConfig"}


def _source(module: str) -> tuple[Path, ast.Module] | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    path = Path(spec.origin)
    return path, ast.parse(path.read_text(encoding="utf-8"), str(path))


def _within(module: str, packages: set[str]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def _parents(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def _path_strings(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """Yield the string constants a module uses as (parts of) paths, with their lines."""
    parents = _parents(tree)
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
            continue
        parent = parents.get(node)
        if isinstance(parent, ast.JoinedStr):
            if any(isinstance(v, ast.Constant) and "/" in str(v.value) for v in parent.values):
                yield node.lineno, node.value
            continue
        divided = isinstance(parent, ast.BinOp) and isinstance(parent.op, ast.Div)
        called = isinstance(parent, ast.Call) and _name(parent.func) in _PATH_CALLS
        if divided or called or ("/" in node.value and "\n" not in node.value):
            yield node.lineno, node.value


def _name(func: ast.expr) -> str:
    if isinstance(func, ast.Name):
        return func.id
    return func.attr if isinstance(func, ast.Attribute) else ""


class FolderFilesContract(Contract):
    """Only the owner package names the results folder's files."""

    owner = fields.StringField()
    names = fields.ListField(subfield=fields.StringField())
    constants = fields.ListField(subfield=fields.StringField())

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        found = []
        names, constants = set(self.names), set(self.constants)
        for module in sorted(graph.modules):
            if _within(module, {self.owner}) or (read := _source(module)) is None:
                continue
            path, tree = read
            for line, text in _path_strings(tree):
                parts = set(re.split(r"[/\\]", text))
                if parts & names:
                    found.append(f"{module}:{line} builds a path from {text!r}")
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.module:
                    for alias in node.names:
                        if alias.name in constants:
                            found.append(f"{module}:{node.lineno} imports {alias.name}")
        return ContractCheck(kept=not found, metadata={"found": found})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for line in check.metadata["found"]:
            output.print_error(f"- {line}")
        output.print(f"Ask {self.owner} for the path instead (it owns these files).")


class OutputContract(Contract):
    """Only the CLI prints or configures logging; jobs through one function, called by
    the job entry points alone."""

    allowed = fields.ListField(subfield=fields.StringField())
    job_logging = fields.StringField()  # module:function that configures a job's logging
    entry_points = fields.ListField(subfield=fields.StringField())  # module:qualified name

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        found = []
        setup_module, setup_function = str(self.job_logging).split(":")
        entries = {tuple(e.split(":")) for e in self.entry_points}
        for module in sorted(graph.modules):
            if _within(module, set(self.allowed)) or (read := _source(module)) is None:
                continue
            _, tree = read
            for scope, node in _calls(tree):
                name = _name(node.func)
                text = ast.unparse(node.func)
                if name == setup_function:
                    if (module, scope) not in entries and module != setup_module:
                        found.append(f"{module}:{node.lineno} {scope} calls {name}, "
                                     "which only a job entry point may")  # fmt: skip
                    continue
                if (module, scope) == (setup_module, setup_function):
                    continue
                if (
                    name == "print"
                    or name in _OUTPUT_ATTRS
                    or text in ("sys.stdout.write", "sys.stderr.write")
                ):
                    found.append(f"{module}:{node.lineno} {scope} calls {text}")
        return ContractCheck(kept=not found, metadata={"found": found})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for line in check.metadata["found"]:
            output.print_error(f"- {line}")
        output.print("Log through logging.getLogger(__name__); the CLI and the job entry "
                     "points decide where records go.")  # fmt: skip


def _calls(tree: ast.Module) -> Iterator[tuple[str, ast.Call]]:
    """Yield each call with the qualified name of the function it is in ("" at top level)."""

    def visit(node: ast.AST, scope: str) -> Iterator[tuple[str, ast.Call]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                inner = f"{scope}.{child.name}" if scope else child.name
                yield from visit(child, inner)
                continue
            if isinstance(child, ast.Call):
                yield scope, child
            yield from visit(child, scope)

    yield from visit(tree, "")
