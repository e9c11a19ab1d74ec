"""Storage: the metadata database (facts) and the content-addressed blob store (bytes)."""

from loopml.store.blobs import BlobStore, open_blob_store
from loopml.store.db import Database

__all__ = ["BlobStore", "Database", "open_blob_store"]
