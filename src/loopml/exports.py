"""Lazy public names: a package lists what it exports and where each name lives, and the
module is imported on first use. Opening a workspace (and every CLI command) then loads
pandas, NumPy and the gate only when something needs them.

    __getattr__, __dir__ = lazy_exports(__name__, {"Schema": "loopml.validation.schema"})
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, names: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: ``names`` maps each exported name to the
    module that defines it; a name is imported once, then cached in the package."""

    def getattr_(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    def dir_() -> list[str]:
        return sorted({*vars(sys.modules[package]), *names})

    return getattr_, dir_
