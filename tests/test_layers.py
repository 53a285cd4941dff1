"""ARCHITECTURE.md's invariants that code can check: imports flow one way, and only the
records and plan modules touch shards and sweep.json."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mnistfc"
# Lower layers first; a module may import only from its own layer or below.
LAYERS = [
    {"errors", "config", "version"},
    {
        "atomic",
        "spec",
        "search",
        "formats",
        "data",
        "fetch",
        "model",
        "plots",
        "render",
        "estimators",
    },  # fmt: skip
    {"records", "heartbeat"},
    {"claims", "plan", "runtime", "provenance"},
    {"train", "pack"},
    {"worker"},
    {"launch"},
    {"progress", "sweep"},
    {"frame"},
    {"aggregate", "budget", "exercise", "confirm", "single"},
    {"section", "budget_section", "confirm_section", "report"},
    {"study", "study_jobs", "doctor", "api"},
    {"console", "parser", "cli", "__init__", "__main__"},
]


def _layer(module: str) -> int:
    top = module.split(".")[0]
    return next(i for i, layer in enumerate(LAYERS) if top in layer)


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mnistfc"):
            names = [node.module[len("mnistfc.") :]] if node.module != "mnistfc" else [
                alias.name for alias in node.names]  # fmt: skip
            found.update(n for n in names if n and n != "__version__")
        elif isinstance(node, ast.Import):
            found.update(a.name[len("mnistfc.") :] for a in node.names
                         if a.name.startswith("mnistfc."))  # fmt: skip
    return found


def test_imports_flow_one_way() -> None:
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        for imported in _imports(path):
            if _layer(imported) > _layer(module):
                wrong.append(f"{module} imports {imported}")
    assert not wrong, "imports against the layer order:\n" + "\n".join(wrong)


def test_only_records_and_plan_name_their_files() -> None:
    """Nobody else builds a shard's or sweep.json's path, or parses them."""
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        text = path.read_text()
        if not module.startswith(("records", "plan")):
            assert '"shards"' not in text and "'shards'" not in text, module
            assert '"sweep.json"' not in text, module


def test_importing_mnistfc_loads_no_heavy_library() -> None:
    code = ("import sys, mnistfc; print(sorted(m for m in ('tensorflow', 'keras', 'pandas', "
            "'submitit', 'matplotlib') if m in sys.modules))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
