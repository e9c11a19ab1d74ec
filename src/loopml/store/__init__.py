"""Storage: the metadata database (facts) and the content-addressed blob store (bytes)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from loopml.store.blobs import BlobStore, open_blob_store
    from loopml.store.db import Database

# Imported on first use: `loopml.store.blobs` alone must not pull in SQLAlchemy (the data CLI
# hashes files through it and has to start fast).
_LAZY = {
    "BlobStore": "loopml.store.blobs",
    "open_blob_store": "loopml.store.blobs",
    "Database": "loopml.store.db",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'loopml.store' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = ["BlobStore", "Database", "open_blob_store"]
