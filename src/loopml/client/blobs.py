"""The blob store of a remote workspace: the server's, over ``/api/loopml/blobs/{digest}``.

It has :class:`~loopml.store.blobs.BlobStore`'s seam (``put_file``, ``put_bytes``, ``exists``,
``get_bytes``, ``get_file``), so model packages and artifacts are stored and fetched with the
same code as locally. Files are streamed both ways, never read whole into memory; the server
checks each upload against its digest, and every download is verified here too.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path
from typing import IO

from loopml.client.transport import Transport
from loopml.exceptions import BlobNotFound, CorruptBlob
from loopml.store.blobs import BlobLocation, BlobStore, check_digest, hash_bytes, hash_file


class RemoteBlobs(BlobStore):
    """The server's blob store, reached through ``transport``."""

    def __init__(self, transport: Transport) -> None:  # no fsspec URL to open
        self.transport = transport
        self.url = transport.url
        self.protocol = "http"
        self.is_local = False
        self.fs = None
        self.root = transport.url

    def __repr__(self) -> str:
        return f"RemoteBlobs({self.url!r})"

    def _path(self, digest: str) -> str:
        return f"/blobs/{check_digest(digest)}"

    def put_bytes(self, data: bytes) -> str:
        digest = hash_bytes(data)
        if not self.transport.exists(self._path(digest)):
            self.transport.upload_bytes(self._path(digest), data)
        return digest

    def put_file(self, path: str | os.PathLike[str]) -> str:
        digest = hash_file(path)
        if not self.transport.exists(self._path(digest)):
            self.transport.upload(self._path(digest), path, os.path.getsize(path))
        return digest

    def exists(self, digest: str) -> bool:
        return self.transport.exists(self._path(digest))

    def locate(self, digest: str) -> BlobLocation:
        from loopml.client.errors import not_served

        raise not_served("Locating a blob by path (BlobStore.locate)")

    def get_bytes(self, digest: str) -> bytes:
        import io

        out = io.BytesIO()
        self._fetch(digest, out)
        data = out.getvalue()
        if hash_bytes(data) != digest:
            raise self._corrupt(digest)
        return data

    def get_file(self, digest: str, dst: str | os.PathLike[str]) -> Path:
        """Download the blob to ``dst`` (atomically), verifying its digest."""
        dst = Path(dst)
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(f".{dst.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            with open(tmp, "wb") as out:
                self._fetch(digest, out)
            if hash_file(tmp) != digest:
                raise self._corrupt(digest)
            os.replace(tmp, dst)
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()
        return dst

    def _fetch(self, digest: str, out: IO[bytes]) -> None:
        try:
            self.transport.download(self._path(digest), out)
        except BlobNotFound:
            raise self._missing(digest) from None

    def delete(self, digest: str) -> None:
        from loopml.client.errors import not_served

        raise not_served("Deleting a blob")

    def _corrupt(self, digest: str) -> CorruptBlob:
        return CorruptBlob(
            f"Blob {digest} from the server {self.url} did not match its BLAKE3 digest; it "
            "was not used. Try again; if it persists, the server's blob store is damaged."
        )
