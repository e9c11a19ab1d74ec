"""The workspace: one metadata database and one blob store, opened lazily from settings."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from loopml.config import Settings, load_settings, write_default_config
from loopml.registry.api import RegistryAPI
from loopml.store.blobs import BlobStore
from loopml.store.db import Database
from loopml.tracking.api import TrackingAPI
from loopml.validation.contracts import ContractsAPI


class Workspace(TrackingAPI, RegistryAPI, ContractsAPI):
    """Where loopml keeps facts (metadata DB) and bytes (blob store).

    >>> ws = Workspace.open()                 # the nearest loopml.toml above the cwd
    >>> ws = Workspace.open("path/to/project")
    >>> ws = Workspace.open(store_url="sqlite://", artifacts_url="memory://tmp")
    Nothing is opened until first used.
    """

    def __init__(self, settings: Settings, *, create: bool = True, **storage_options: Any) -> None:
        self.settings = settings
        self.create = create
        self._storage_options = storage_options
        self._db: Database | None = None
        self._blobs: BlobStore | None = None
        self._lock = threading.Lock()
        self._init_tracking()

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        store_url: str | None = None,
        artifacts_url: str | None = None,
        create: bool = True,
        **storage_options: Any,
    ) -> Workspace:
        """Open a workspace: a folder with ``loopml.toml``, or explicit URLs.

        A SQLite metadata store that does not exist yet is created on first use (a fresh
        clone has ``loopml.toml`` but no ``.loopml/``); ``create=False`` makes that an error
        (:class:`~loopml.exceptions.StoreNotFound`), as read-only CLI commands do.
        """
        if path is not None and "://" in str(path) and store_url is None:
            store_url, path = str(path), None
        if store_url is not None and path is None:
            settings = _url_settings(store_url, artifacts_url)
        else:
            settings = load_settings(path, store_url=store_url, artifacts_url=artifacts_url)
        return cls(settings, create=create, **storage_options)

    @classmethod
    def init(cls, path: str | os.PathLike[str] = ".") -> Workspace:
        """Create ``loopml.toml`` and ``.loopml/`` in ``path`` (kept if present) and open it."""
        folder = Path(path)
        write_default_config(folder)
        ws = cls.open(folder)
        ws.db.connect()  # create and migrate the metadata store now
        return ws

    @property
    def root(self) -> Path:
        return self.settings.root

    @property
    def db(self) -> Database:
        if self._db is None:
            with self._lock:
                if self._db is None:
                    self._db = Database(self.settings.store_url, create=self.create)
        return self._db

    @property
    def blobs(self) -> BlobStore:
        if self._blobs is None:
            with self._lock:
                if self._blobs is None:
                    self._blobs = BlobStore(self.settings.artifacts_url, **self._storage_options)
        return self._blobs

    def close(self) -> None:
        """End live runs of this workspace, flush metrics, release connections."""
        self._shutdown("FINISHED", None)
        writer = self._tracking.writer
        if writer is not None:
            writer.close()
            self._tracking.writer = None
        if self._db is not None:
            self._db.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Workspace(store={self.db.safe_url!r}, artifacts={self.settings.artifacts_url!r})"


def _url_settings(store_url: str, artifacts_url: str | None) -> Settings:
    from loopml.config import url_settings

    return url_settings(store_url, artifacts_url)


_default: Workspace | None = None
_default_lock = threading.Lock()


def default_workspace() -> Workspace:
    """The workspace the module-level functions use: discovered from the cwd and LOOPML_*."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Workspace.open()
    return _default


def set_default_workspace(workspace: Workspace | None) -> None:
    """Make ``workspace`` the one module-level functions use (None: discover again)."""
    global _default
    with _default_lock:
        _default = workspace
