"""The local cache of unpacked model packages, keyed by the package (manifest) digest.

``load_model`` unpacks a version's files once and reuses the folder: a promotion that loads
three models, or a server that reloads on every alias move, reads the blob store once per
package and leaves nothing behind. The cache lives in the workspace's ``.loopml/model-cache``
(else, for a workspace of URLs only, in ``<tmp>/loopml-<user>/model-cache``)::

    model-cache/
      <digest>/          # one package, complete: it appears by an atomic rename
      .tmp-<digest>-…/   # a package being fetched (removed if its fetch fails)

An entry's folder modification time is its last use. After each fetch the least recently
used entries are removed until at most ``max_models`` entries and ``max_bytes`` bytes remain
(the entry just loaded is always kept). Settings, in ``loopml.toml``::

    [registry]
    model_cache_max_models = 16
    model_cache_max_bytes = 4_000_000_000

A package's files are made read-only and checked against their manifest's sizes on each use;
a damaged entry is fetched again. A :class:`~loopml.registry.PythonModel` should read its
artifacts in ``load_context``: an entry can be evicted once more than ``max_models`` other
packages have been loaded since.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from loopml.registry.settings import DEFAULT_MAX_BYTES, DEFAULT_MAX_MODELS, RegistrySettings

MANIFEST = ".loopml-manifest.json"  # the package's manifest, kept to check the entry on use
_TMP_PREFIX = ".tmp-"
_STALE_TMP_S = 3600.0  # a fetch interrupted this long ago is abandoned
CacheFiller = Callable[[Path], list[tuple[str, str, int]]]


@dataclass(frozen=True)
class CacheLimits:
    max_models: int = DEFAULT_MAX_MODELS
    max_bytes: int = DEFAULT_MAX_BYTES

    @classmethod
    def from_settings(cls, settings: RegistrySettings) -> CacheLimits:
        """Limits from the ``[registry]`` section of ``loopml.toml`` (checked when loaded)."""
        return cls(settings.model_cache_max_models, settings.model_cache_max_bytes)


def default_root(workspace_root: Path, state_dir: str = ".loopml") -> Path:
    """``<workspace>/.loopml/model-cache`` when the workspace has a state folder, else a
    per-user folder in the system's temporary directory."""
    state = workspace_root / state_dir
    if state.is_dir():
        return state / "model-cache"
    user = str(os.getuid()) if hasattr(os, "getuid") else "user"
    return Path(tempfile.gettempdir()) / f"loopml-{user}" / "model-cache"


class ModelCache:
    """Unpacked model packages under ``root``, one folder per package digest."""

    def __init__(self, root: Path, limits: CacheLimits | None = None) -> None:
        self.root = root
        self.limits = limits or CacheLimits()

    def folder(self, digest: str, fill: CacheFiller) -> Path:
        """The folder of package ``digest``; on a miss ``fill(tmp)`` writes its files into
        ``tmp`` and returns the manifest entries ``(path, digest, size)``, and the folder
        appears whole by a rename. Safe for concurrent callers, threads or processes."""
        entry = self.root / digest
        if self._usable(entry):
            _touch(entry)
            return entry
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f"{_TMP_PREFIX}{digest}-{uuid.uuid4().hex[:12]}"
        tmp.mkdir()
        try:
            entries = fill(tmp)
            (tmp / MANIFEST).write_text(json.dumps(entries))
            _make_read_only(tmp)
            if entry.exists() and not self._usable(entry):
                _remove(entry)  # damaged: replace it
            try:
                os.rename(tmp, entry)
            except OSError:
                if not self._usable(entry):  # not another caller's complete copy
                    raise
        finally:
            if tmp.exists():
                _remove(tmp)
        _touch(entry)
        self.evict(keep=digest)
        return entry

    def entries(self) -> list[Path]:
        """Complete entries, least recently used first."""
        try:
            found = [p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")]
        except FileNotFoundError:
            return []
        return sorted(found, key=_last_use)

    def evict(self, keep: str | None = None) -> list[str]:
        """Remove least recently used entries beyond the limits, and temp folders of fetches
        interrupted over an hour ago; returns the evicted digests."""
        self._sweep_stale_temp()
        entries = [p for p in self.entries() if p.name != keep]
        sizes = {p.name: _size(p) for p in entries}
        kept = self.root / keep if keep else None
        count = len(entries) + (1 if kept is not None and kept.is_dir() else 0)
        total = sum(sizes.values()) + (_size(kept) if kept is not None and kept.is_dir() else 0)
        evicted = []
        for path in entries:
            if count <= self.limits.max_models and total <= self.limits.max_bytes:
                break
            _remove(path)
            evicted.append(path.name)
            count -= 1
            total -= sizes[path.name]
        return evicted

    def clear(self) -> int:
        """Remove every entry; returns how many there were."""
        entries = self.entries()
        for path in entries:
            _remove(path)
        self._sweep_stale_temp(0.0)
        return len(entries)

    def _usable(self, entry: Path) -> bool:
        """A complete entry whose files still have their manifest's sizes."""
        try:
            listed = json.loads((entry / MANIFEST).read_text())
            return all((entry / rel).stat().st_size == size for rel, _digest, size in listed)
        except (OSError, ValueError, TypeError):
            return False

    def _sweep_stale_temp(self, older_than_s: float = _STALE_TMP_S) -> None:
        cutoff = time.time() - older_than_s
        with contextlib.suppress(FileNotFoundError):
            for path in self.root.iterdir():
                if path.name.startswith(_TMP_PREFIX):
                    with contextlib.suppress(OSError):
                        if path.stat().st_mtime <= cutoff:
                            _remove(path)


def _touch(path: Path) -> None:
    with contextlib.suppress(OSError):
        os.utime(path)


def _last_use(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _size(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_size
    return total


def _make_read_only(folder: Path) -> None:
    """Files read-only, so a model that writes into its artifacts can't change the copy the
    next load gets (folders stay writable: eviction removes them)."""
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            path = os.path.join(dirpath, name)
            mode = os.lstat(path).st_mode
            os.chmod(path, stat.S_IMODE(mode) & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def _remove(path: Path) -> None:
    """Remove a folder: renamed aside first, so no reader finds it half deleted."""
    aside = path.with_name(f"{_TMP_PREFIX}gone-{uuid.uuid4().hex[:12]}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return
    except OSError:
        aside = path
    shutil.rmtree(aside, ignore_errors=True)
