"""Finding a pipeline from text: ``package.module:name`` or ``path/to/file.py:name``.

``:name`` may be left out when the module defines exactly one pipeline.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

from loopml.pipelines.exceptions import PipelineImportError, PipelineNotFound, shown
from loopml.pipelines.pipeline import Pipeline


def load_pipeline(ref: str | Pipeline, root: Path | None = None) -> Pipeline:
    """The :class:`Pipeline` that ``ref`` names; a relative file path is looked up from the
    current directory, then from ``root`` (the workspace)."""
    if isinstance(ref, Pipeline):
        return ref
    target, name = _split(ref)
    module = load_module(target, root)
    if name:
        value = getattr(module, name, None)
        if isinstance(value, Pipeline):
            return value
        found = _pipelines(module)
        for candidate in found:  # @pipeline(name=...) differs from the attribute name
            if candidate.name == name:
                return candidate
        hint = f" It defines: {', '.join(p.name for p in found)}." if found else ""
        what = "is not a @pipeline" if value is not None else "is not defined there"
        raise PipelineNotFound(f"{name!r} in {target} {what}.{hint}")
    found = _pipelines(module)
    if len(found) == 1:
        return found[0]
    if not found:
        raise PipelineNotFound(f"{target} defines no @pipeline.")
    raise PipelineNotFound(
        f"{target} defines several pipelines ({', '.join(p.name for p in found)}): "
        f"name one, e.g. {target}:{found[0].name}."
    )


def _split(ref: str) -> tuple[str, str]:
    text = ref.strip()
    if not text:
        raise PipelineNotFound("No pipeline given: use MODULE:NAME or path/to/file.py:NAME.")
    target, sep, name = text.rpartition(":")
    if not sep or "/" in name or "\\" in name or name.endswith(".py"):
        return text, ""
    if len(target) == 1 and target.isalpha():  # a Windows drive letter, not a separator
        return text, ""
    return target, name


def _pipelines(module: ModuleType) -> list[Pipeline]:
    seen: dict[int, Pipeline] = {}
    for value in vars(module).values():
        if isinstance(value, Pipeline):
            seen.setdefault(id(value), value)
    return list(seen.values())


def load_module(target: str, root: Path | None, what: str = "pipeline module") -> ModuleType:
    """Import ``target``: a module name, or a file (relative to the cwd, then ``root``); a
    file is loaded once per process. Failures are one-line errors naming file and line (and
    ``what`` the module is to the caller)."""
    if target.endswith(".py") or "/" in target or "\\" in target:
        return _load_file(target, root, what)
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as exc:
        if exc.name and target.startswith(exc.name):
            candidate = Path(target.replace(".", "/") + ".py")
            if candidate.is_file() or (root is not None and (root / candidate).is_file()):
                return _load_file(str(candidate), root, what)
            raise PipelineNotFound(
                f"Cannot import module {target!r} ({exc}). Give a module importable from here "
                "(is its folder on PYTHONPATH?) or a file: path/to/file.py:NAME."
            ) from exc
        raise import_failed(target, exc, what) from exc
    except Exception as exc:  # a syntax error, a failed import or a crash in the module
        raise import_failed(target, exc, what) from exc


def _load_file(target: str, root: Path | None, what: str) -> ModuleType:
    path = Path(target).expanduser()
    if not path.is_absolute() and not path.is_file() and root is not None:
        path = root / path
    if not path.is_file():
        raise PipelineNotFound(f"No file {target} (looked in {Path.cwd()}).")
    path = path.resolve()
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if file and _same(file, path):
            return module
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:12]
    name = f"loopml_pipeline_file_{path.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise PipelineNotFound(f"Cannot load {path} as a Python module.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    # Its folder goes on sys.path, as `python file.py` would do, so it can import neighbours.
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # a syntax error, a failed import or a crash in the module
        sys.modules.pop(name, None)
        raise import_failed(str(path), exc, what) from exc
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def import_failed(
    target: str, exc: BaseException, what: str = "pipeline module"
) -> PipelineImportError:
    """The error for a pipeline module that can't be imported: the file and line where it
    failed (the module's own, or one it imports) and the error, in one line."""
    file, line = target, None
    if isinstance(exc, SyntaxError) and exc.filename:
        file, line = exc.filename, exc.lineno
    else:
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename[:1] != "<"]
        # the user's line, not loopml's own that raised the error (a decorator's check)
        user = [f for f in frames if not _in_loopml(f.filename)] or frames
        if user:
            file, line = user[-1].filename, user[-1].lineno
    same = _same(file, Path(target).resolve()) if Path(target).suffix == ".py" else False
    where = ("" if same else f"in {file}") + (", " if line and not same else "")
    where += f"line {line}" if line else ""
    if isinstance(exc, SyntaxError):
        detail = f"SyntaxError: {exc.msg}"
        if exc.text and exc.text.strip():
            detail += f": {shown(exc.text.strip(), 80)}"
    else:
        detail = f"{type(exc).__name__}: {shown(str(exc), 300, quote=False)}".rstrip(": ")
    hint = "Fix it and run again"
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        hint = f"Install {exc.name!r} or fix the import"
    where = f" ({where})" if where else ""
    detail = detail.rstrip(".")
    return PipelineImportError(f"Cannot load {what} {target}: {detail}{where}. {hint}.")


_LOOPML = str(Path(__file__).resolve().parent.parent) + os.sep


def _in_loopml(file: str) -> bool:
    return file.startswith(_LOOPML)


def _same(file: Any, path: Path) -> bool:
    try:
        return Path(file).resolve() == path
    except (OSError, TypeError):
        return False
