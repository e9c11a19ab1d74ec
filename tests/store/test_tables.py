"""Each area owns its tables; ``load_all`` must know every module that defines one."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import loopml
from loopml.store.tables import TABLE_MODULES, load_all, metadata

SRC = Path(loopml.__file__).parent
MIGRATIONS = SRC / "store" / "migrations"


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _defines_a_table(path: Path) -> bool:
    """Whether the module calls SQLAlchemy's ``Table(...)`` (not, say, rich's)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    names = {"sqlalchemy.Table", "sa.Table"}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sqlalchemy"):
            names.update(a.asname or a.name for a in node.names if a.name == "Table")
    return any(
        isinstance(node, ast.Call) and ast.unparse(node.func) in names for node in ast.walk(tree)
    )


@pytest.mark.slow
def test_every_module_defining_a_table_is_in_table_modules() -> None:
    defining = {
        _module_name(path)
        for path in SRC.rglob("*.py")
        if not path.is_relative_to(MIGRATIONS) and _defines_a_table(path)
    }
    assert defining == set(TABLE_MODULES)


def test_every_area_tables_module_is_in_table_modules() -> None:
    area_modules = {_module_name(p) for p in SRC.rglob("tables.py")} - {"loopml.store.tables"}
    assert area_modules <= set(TABLE_MODULES)


def test_load_all_fills_the_one_metadata() -> None:
    assert load_all() is metadata
    assert {
        "experiments",
        "runs",
        "model_versions",
        "pipeline_runs",
        "events",
        "schemas",
        "trigger_state",
    } <= set(metadata.tables)


@pytest.mark.parametrize("module", TABLE_MODULES)
@pytest.mark.slow
def test_importing_one_area_resolves_its_foreign_keys(module: str) -> None:
    """A table module imported first, alone, brings every table its foreign keys point to."""
    script = (
        "import importlib, sys\n"
        f"importlib.import_module({module!r})\n"
        "from loopml.store.tables import metadata\n"
        "for table in metadata.tables.values():\n"
        "    for fk in table.foreign_keys:\n"
        "        fk.column  # raises NoReferencedTableError if the target is missing\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
