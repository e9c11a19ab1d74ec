"""A task's code fingerprint: what its result depends on besides its arguments.

The cache key of a task call is its fingerprint plus its inputs. The fingerprint covers

- the task function's code as loaded: its bytecode, constants and names (not line numbers
  or comments, and not the file on disk, which may have changed since it was imported);
- every module-level value its code names (``K = 2``, ``FEATURES = [...]``), hashed by value;
- every function and class of the project it reaches, followed transitively (a helper in
  another module of the project, a class and its methods), each by its code, with the
  values *they* name;
- the installed version of each third-party package it calls (``numpy``, ``sklearn``).

A new Python version changes bytecode, so it recomputes everything once.

    >>> fp = fingerprint(len)
    >>> sorted(fp.components)
    ['source']

With ``@task(version="2")`` the fingerprint is pinned: only the task's name and that version
count, so a refactor does not recompute anything until the version is bumped.

"Project" code is any module whose file is outside the interpreter's installation folders
(an editable install of your own project counts as project code). Values that can't
be pickled (a lock, a connection) count by their type only.
"""

from __future__ import annotations

import functools
import inspect
import pickle
import sys
import sysconfig
import types
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path, PurePath
from typing import Any

import blake3

#: Bumped when the recipe changes, so old cache entries never match new keys.
RECIPE = "2"

#: Values pickled larger than this are hashed all the same; this only bounds the recursion
#: of containers walked item by item.
_MAX_DEPTH = 20


@dataclass(frozen=True)
class Fingerprint:
    """The digest of what a task's code depends on, and its parts (label → digest or
    version), so that a changed part can be named."""

    digest: str
    components: dict[str, str] = field(default_factory=dict)


def fingerprint(fn: Callable[..., Any], version: str = "", name: str = "") -> Fingerprint:
    """The :class:`Fingerprint` of ``fn``; pinned to ``version`` when one is given."""
    if version:
        components = {"version": version, "task": name or _qualname(fn)}
    else:
        walker = _Walker()
        walker.function(fn, "source")
        components = walker.components
    hasher = blake3.blake3(f"loopml-task-{RECIPE}\0".encode())
    for label in sorted(components):
        hasher.update(f"{label}\0{components[label]}\0".encode())
    return Fingerprint(hasher.hexdigest(), dict(components))


def changed_components(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """Human-readable differences between two fingerprints' components.

    >>> changed_components({"global K": "a", "source": "s"}, {"global K": "b", "source": "s"})
    ['global K changed']
    """
    lines = []
    for label in sorted(set(before) | set(after)):
        old, new = before.get(label), after.get(label)
        if old == new:
            continue
        if old is None:
            lines.append(f"{label} added" + (f" ({new})" if label.startswith("package ") else ""))
        elif new is None:
            lines.append(f"{label} removed")
        elif label.startswith("package ") or label == "version":
            lines.append(f"{label} changed from {old} to {new}")
        else:
            lines.append(f"{label} changed")
    return lines


# -- classifying modules ---------------------------------------------------------------------


PROJECT, PACKAGE, IGNORED = "project", "package", "ignored"


@functools.cache
def _all_distributions() -> dict[str, list[str]]:
    return {k: list(v) for k, v in metadata.packages_distributions().items()}


@functools.cache
def _distributions_of(top: str) -> list[str]:
    """The installed distributions that provide the top-level module ``top``. Most are
    named like their module (``pandas``): found directly, without reading every installed
    package's file list (a quarter of a second) unless the names differ (``sklearn``)."""
    try:
        dist = metadata.distribution(top)
    except (metadata.PackageNotFoundError, ValueError):
        return _all_distributions().get(top, [])
    name = dist.metadata["Name"]
    return [name] if name else _all_distributions().get(top, [])


@functools.cache
def _installed_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    roots = {paths.get(key, "") for key in ("stdlib", "platstdlib", "purelib", "platlib")}
    return tuple(str(Path(r).resolve()) for r in roots if r)


@functools.cache
def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


def _normal(name: str) -> str:
    return name.lower().replace("-", "_").replace(".", "_")


@functools.cache
def _installed_beside(top: str) -> str | None:
    """The distribution installed in the folder that holds the top-level module ``top``
    (its ``*.dist-info`` next to it), or None: then it is project code."""
    module = sys.modules.get(top)
    file = getattr(module, "__file__", None)
    if not file:
        return None
    here = Path(file).resolve().parent
    folder = here.parent if hasattr(module, "__path__") else here
    for dist in metadata.distributions(path=[str(folder)]):
        if dist.read_text("RECORD") is None:  # an .egg-info of `setup.py develop`: yours
            continue
        name = dist.metadata["Name"] or ""
        tops = (dist.read_text("top_level.txt") or "").split()
        if top in tops or _normal(name) == _normal(top):
            return str(name)
    return None


@functools.cache
def classify(module_name: str) -> tuple[str, str]:
    """``(PROJECT | PACKAGE | IGNORED, label)`` for a module: project code is followed,
    a package counts by its installed version, Python's own modules not at all.

    A module whose file is outside the interpreter's installation folders is project code
    (an editable install of your project included); one inside them belongs to the
    distribution that installed it.

    >>> classify("json")
    ('ignored', '')
    """
    if not module_name or module_name == "builtins":
        return IGNORED, ""
    top = module_name.split(".")[0]
    if top in sys.stdlib_module_names or top.startswith("_frozen"):
        return IGNORED, ""
    if top == "loopml":  # the framework: its version, never its insides
        return PACKAGE, f"loopml=={_version('loopml')}"
    module = sys.modules.get(module_name) or sys.modules.get(top)
    file = getattr(module, "__file__", None)
    if file:
        try:
            resolved = str(Path(file).resolve())
        except OSError:
            return IGNORED, ""
        if not any(resolved.startswith(root + "/") for root in _installed_roots()):
            beside = _installed_beside(top)  # `pip install --target DIR`, on PYTHONPATH
            return (PACKAGE, f"{beside}=={_version(beside)}") if beside else (PROJECT, "")
    elif module_name == "__main__":
        return PROJECT, ""
    dists = _distributions_of(top)
    if dists:
        return PACKAGE, f"{dists[0]}=={_version(dists[0])}"
    version = getattr(sys.modules.get(top), "__version__", None)
    if isinstance(version, str):
        return PACKAGE, f"{top}=={version}"
    return (PACKAGE, top) if file else (IGNORED, "")


def _module_label(module_name: str) -> str:
    """A readable module name: a pipeline file loaded by path shows as its file stem."""
    module = sys.modules.get(module_name)
    if module_name == "__main__" or module_name.startswith("loopml_pipeline_file_"):
        file = getattr(module, "__file__", None)
        return Path(file).stem if file else module_name
    return module_name


def _qualname(obj: Any) -> str:
    module = getattr(obj, "__module__", None) or ""
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None) or repr(obj)
    return f"{_module_label(module)}.{name}" if module else str(name)


# -- hashing values --------------------------------------------------------------------------


def value_digest(value: Any) -> str:
    """A digest of a module-level value that is the same in every process for equal values:
    containers item by item (sets in a stable order), paths by their text, other objects by
    their pickle, and what can't be pickled by its type.

    >>> value_digest({"b", "a"}) == value_digest({"a", "b"})
    True
    """
    hasher = blake3.blake3()
    _feed(hasher, value, 0)
    return str(hasher.hexdigest())


def _feed(hasher: Any, value: Any, depth: int) -> None:
    if depth > _MAX_DEPTH:
        hasher.update(b"\0deep")
        return
    if value is None or isinstance(value, bool | int | float | complex | str | bytes):
        hasher.update(b"\0c" + type(value).__name__.encode() + b":" + repr(value).encode())
    elif isinstance(value, PurePath):
        hasher.update(b"\0p" + str(value).encode())
    elif type(value) in (list, tuple):
        hasher.update(b"\0[" + type(value).__name__.encode())
        for item in value:
            _feed(hasher, item, depth + 1)
        hasher.update(b"\0]")
    elif type(value) is dict:
        hasher.update(b"\0{")
        for key, item in value.items():
            _feed(hasher, key, depth + 1)
            _feed(hasher, item, depth + 1)
        hasher.update(b"\0}")
    elif type(value) in (set, frozenset):
        hasher.update(b"\0s")
        for digest in sorted(value_digest(item) for item in value):
            hasher.update(digest.encode())
        hasher.update(b"\0S")
    else:
        try:
            data = pickle.dumps(value, protocol=4)
        except Exception:
            data = None
        if data is not None:
            hasher.update(b"\0o" + blake3.blake3(data).digest())
            return
        kind = f"{type(value).__module__}.{type(value).__qualname__}"
        try:
            text = repr(value)
        except Exception:
            text = kind
        if " at 0x" in text:  # an address: differs every run, so the type stands for it
            text = kind
        hasher.update(b"\0r" + text.encode())


def _code_digest(fn: Any) -> str:
    """A digest of the code a function *runs*: its bytecode, constants and names, without
    file name or line numbers (moving it or editing a comment changes nothing). Not its
    source file, which a long-lived process (the scheduler) may see edited after it
    imported the function: the digest must match the code that produced the output."""
    code = getattr(fn, "__code__", None)
    hasher = blake3.blake3()
    if isinstance(code, types.CodeType):
        _feed_code(hasher, code)
    else:
        hasher.update(repr(fn).encode())
    return str(hasher.hexdigest())


def _feed_code(hasher: Any, code: types.CodeType) -> None:
    """Feed what defines ``code``'s behaviour, field by field (``marshal`` output is not
    stable between processes: it depends on reference counts)."""
    hasher.update(b"\0code" + code.co_code)
    hasher.update(getattr(code, "co_exceptiontable", b""))
    counts = (code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount, code.co_flags)
    hasher.update(repr(counts).encode())
    for names in (code.co_names, code.co_varnames, code.co_freevars, code.co_cellvars):
        hasher.update(("\0n" + ",".join(names)).encode())
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _feed_code(hasher, const)
        elif isinstance(const, frozenset):  # its order follows each process's str hashing
            hasher.update(("\0f" + repr(sorted(repr(i) for i in const))).encode())
        else:
            hasher.update(b"\0k" + type(const).__name__.encode() + repr(const).encode())


def _class_digest(cls: type) -> str:
    """A digest of a class as loaded: its bases, and each attribute (a method by its code,
    a value by :func:`value_digest`)."""
    hasher = blake3.blake3(f"{cls.__qualname__}\0".encode())
    for base in cls.__bases__:
        hasher.update(f"base {base.__module__}.{base.__qualname__}\0".encode())
    for name, attr in sorted(vars(cls).items()):
        if name in ("__dict__", "__weakref__", "__module__", "__dataclass_fields__"):
            continue
        target = attr.__func__ if isinstance(attr, staticmethod | classmethod) else attr
        if isinstance(target, property):
            parts = [_code_digest(f) for f in (target.fget, target.fset, target.fdel) if f]
            digest = ",".join(parts)
        elif isinstance(target, types.FunctionType):
            digest = _code_digest(target)
        else:
            digest = value_digest(target)
        hasher.update(f"{name}\0{digest}\0".encode())
    return str(hasher.hexdigest())


def _code_objects(code: types.CodeType) -> Iterator[types.CodeType]:
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_objects(const)


# -- walking the references ------------------------------------------------------------------


class _Walker:
    """Collects the components of one fingerprint, following project code transitively
    (each object once, so that cycles end)."""

    def __init__(self) -> None:
        self.components: dict[str, str] = {}
        self.seen: set[int] = set()

    def _first(self, obj: Any) -> bool:
        if id(obj) in self.seen:
            return False
        self.seen.add(id(obj))
        return True

    def function(self, fn: Any, label: str | None = None) -> None:
        fn = inspect.unwrap(fn) if callable(fn) else fn
        if not self._first(fn):
            return
        self.components[label or f"function {_qualname(fn)}"] = _code_digest(fn)
        code = getattr(fn, "__code__", None)
        if code is None:
            return
        names = {n for c in _code_objects(code) for n in c.co_names}
        scope = getattr(fn, "__globals__", {}) or {}
        where = _module_label(getattr(fn, "__module__", None) or "")
        for name in sorted(names):
            if name in scope:
                self.reference(f"{where}.{name}", scope[name], names)
        closure = getattr(fn, "__closure__", None) or ()
        for name, cell in zip(code.co_freevars, closure, strict=False):
            try:
                value = cell.cell_contents
            except ValueError:  # an empty cell
                continue
            self.reference(f"{_qualname(fn)}.<closure {name}>", value, names, closure=True)
        defaults = (getattr(fn, "__defaults__", None), getattr(fn, "__kwdefaults__", None))
        if any(defaults):
            self.components[f"defaults of {_qualname(fn)}"] = value_digest(defaults)

    def reference(self, name: str, value: Any, names: set[str], closure: bool = False) -> None:
        """A name the code uses, bound to ``value``. A value that can't even be inspected
        makes the key unique (the task always runs) rather than failing the task."""
        try:
            self._reference(name, value, names, closure)
        except Exception as exc:  # an object whose attributes or pickling raise
            self.components[f"unreadable {name}"] = f"{type(exc).__name__} {uuid.uuid4().hex}"

    def _reference(self, name: str, value: Any, names: set[str], closure: bool) -> None:
        from loopml.pipelines.pipeline import Pipeline
        from loopml.pipelines.tasks import Task

        if isinstance(value, Task):
            if value.spec.version:
                self.components[f"task {value.spec.name}"] = f"version {value.spec.version}"
            else:
                self.function(value.fn)
            return
        if isinstance(value, Pipeline):
            self.function(value.fn)
            return
        if isinstance(value, types.ModuleType):
            self.module(value, names)
            return
        if isinstance(value, functools.partial):
            self.reference(name, value.func, names)
            self.components[f"partial {name}"] = value_digest((value.args, value.keywords))
            return
        if isinstance(value, types.MethodType):
            self.reference(name, value.__func__, names)
            return
        if isinstance(value, types.FunctionType | type | types.BuiltinFunctionType):
            self.code_object(value)
            return
        # A value: a constant, a list of features, a config object (and its class).
        self.components[f"{'closure' if closure else 'global'} {name}"] = value_digest(value)
        cls = type(value)
        if not isinstance(value, type) and classify(cls.__module__)[0] == PROJECT:
            self.cls(cls)
        elif classify(cls.__module__)[0] == PACKAGE:
            self.package(cls.__module__)

    def code_object(self, value: Any) -> None:
        """A function or class: followed into when it is project code, else its package."""
        module = getattr(value, "__module__", None) or ""
        kind, _ = classify(module)
        if kind == PACKAGE:
            self.package(module)
        elif kind == PROJECT:
            if isinstance(value, type):
                self.cls(value)
            elif isinstance(value, types.FunctionType):
                self.function(value)

    def cls(self, cls: type) -> None:
        if not self._first(cls):
            return
        self.components[f"class {_qualname(cls)}"] = _class_digest(cls)
        for base in cls.__bases__:
            if base is not object:
                self.code_object(base)
        for attr in vars(cls).values():
            target = attr
            if isinstance(attr, staticmethod | classmethod):
                target = attr.__func__
            elif isinstance(attr, property):
                for accessor in (attr.fget, attr.fset, attr.fdel):
                    if isinstance(accessor, types.FunctionType):
                        self.function(accessor)
                continue
            if isinstance(target, types.FunctionType):
                self.function(target)

    def module(self, module: types.ModuleType, names: set[str]) -> None:
        kind, _ = classify(module.__name__)
        if kind == PACKAGE:
            self.package(module.__name__)
            return
        if kind != PROJECT or not self._first(module):
            return
        # `helpers.scale(x)`: the code names both `helpers` and `scale`.
        for attr in sorted(names):
            if attr.startswith("__") or attr not in vars(module):
                continue
            self.reference(f"{_module_label(module.__name__)}.{attr}", vars(module)[attr], names)

    def package(self, module_name: str) -> None:
        kind, label = classify(module_name)
        if kind != PACKAGE or not label:
            return
        dist, _, version = label.partition("==")
        self.components[f"package {dist}"] = version or "unknown"


__all__ = ["Fingerprint", "changed_components", "classify", "fingerprint", "value_digest"]
