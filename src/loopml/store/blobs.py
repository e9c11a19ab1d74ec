"""The content-addressed blob store: every byte loopml keeps, named by its BLAKE3 digest.

Objects live at ``<root>/<digest[:2]>/<digest[2:]>`` on any fsspec filesystem: a local folder
(the default), ``memory://`` for tests, ``s3://bucket/prefix`` for teams (the S3 endpoint comes
from ``AWS_ENDPOINT_URL`` or the ``storage_options``). Writes are atomic: a local object is
written to a temporary file and renamed into place; object stores publish a PUT whole.
Reads verify the digest, so a corrupted object is reported, never served.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import blake3

from loopml.exceptions import (
    BlobNotFound,
    CorruptBlob,
    InvalidConfig,
    InvalidInput,
    StoreUnavailable,
    missing_dependency,
)

CHUNK = 1 << 20
_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_CLOUD_SDKS = {"botocore", "aiobotocore", "aiohttp", "s3fs", "gcsfs", "google", "adlfs", "azure"}
_PROTOCOL_EXTRAS = {"s3": ("s3fs", "s3"), "gs": ("gcsfs", "gcs"), "gcs": ("gcsfs", "gcs")}


def hash_bytes(data: bytes) -> str:
    return blake3.blake3(data).hexdigest()


def hash_file(path: str | os.PathLike[str]) -> str:
    """BLAKE3 of a file, streamed (memory-mapped and multithreaded for large files)."""
    size = os.path.getsize(path)
    if size >= 4 * CHUNK:
        return blake3.blake3(max_threads=blake3.blake3.AUTO).update_mmap(path).hexdigest()
    hasher = blake3.blake3()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


def check_digest(digest: str) -> str:
    if not isinstance(digest, str) or not _DIGEST.match(digest):
        raise InvalidInput(f"Not a blob digest: {digest!r} (expected 64 lowercase hex characters)")
    return digest


@dataclass(frozen=True)
class BlobLocation:
    """Where one blob lives: ``path`` on a local disk (else None), or ``url`` with the
    ``storage_options`` (or the open fsspec ``filesystem``) that reach it."""

    url: str
    path: str | None
    storage_options: dict[str, Any]
    filesystem: Any


class BlobStore:
    """A content-addressed store over one fsspec URL.

    The seam: ``put_file``, ``put_bytes``, ``exists``, ``get_bytes``, ``get_file``, ``delete``;
    ``locate`` hands engines that read by path or URL the object's place.
    A miss raises :class:`BlobNotFound`; a digest mismatch raises :class:`CorruptBlob`.
    """

    def __init__(self, url: str, **storage_options: Any) -> None:
        self.url = url
        protocol = url.split("://", 1)[0] if "://" in url else "file"
        self.protocol = protocol
        self.is_local = protocol in {"file", "local"}
        if self.is_local:
            self.root = url.split("://", 1)[1] if "://" in url else url
            self.fs: Any = None
            return
        try:
            from fsspec.core import url_to_fs

            self.fs, self.root = url_to_fs(url, **storage_options)
        except ImportError as exc:
            package, extra = _PROTOCOL_EXTRAS.get(protocol, (protocol, "all"))
            raise missing_dependency(package, extra, f"A {protocol}:// blob store") from exc
        except ValueError as exc:
            raise InvalidConfig(f"Not a usable blob store URL {url!r}: {exc}") from exc
        self.root = self.root.rstrip("/")

    def __repr__(self) -> str:
        return f"BlobStore({self.url!r})"

    def path_of(self, digest: str) -> str:
        check_digest(digest)
        return f"{self.root}/{digest[:2]}/{digest[2:]}"

    # -- writes ----------------------------------------------------------------------------

    def put_bytes(self, data: bytes) -> str:
        digest = hash_bytes(data)
        target = self.path_of(digest)
        if self.is_local:
            if not os.path.exists(target):
                self._atomic_local_write(target, lambda fh: fh.write(data))
        else:
            self._remote_write(lambda: self.exists(digest) or self.fs.pipe_file(target, data))
        return digest

    def put_file(self, path: str | os.PathLike[str]) -> str:
        digest = hash_file(path)
        target = self.path_of(digest)
        if self.is_local:
            if not os.path.exists(target):

                def copy(fh: IO[bytes]) -> None:
                    with open(path, "rb") as src:
                        shutil.copyfileobj(src, fh, CHUNK)

                self._atomic_local_write(target, copy)
        else:
            self._remote_write(
                lambda: self.exists(digest) or self.fs.put_file(os.fspath(path), target)
            )
        return digest

    def _atomic_local_write(self, target: str, write: Any) -> None:
        folder = os.path.dirname(target)
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                write(fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o444)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    # -- reads -----------------------------------------------------------------------------

    def exists(self, digest: str) -> bool:
        target = self.path_of(digest)
        if self.is_local:
            return os.path.exists(target)
        return bool(self._remote(lambda: self.fs.exists(target)))

    def locate(self, digest: str) -> BlobLocation:
        """Where an engine that reads by path or URL (DuckDB, pyarrow, Ray) finds the object,
        without copying it: a local path, or an fsspec URL plus the storage options to open
        it with. The object is not verified here (engines read it as is); raises
        :class:`BlobNotFound` when it is missing.

        >>> loc = store.locate(digest)                                     # doctest: +SKIP
        >>> pyarrow.parquet.read_table(loc.url, filesystem=loc.filesystem) # doctest: +SKIP
        """
        target = self.path_of(digest)
        if not self.exists(digest):
            raise self._missing(digest)
        if self.is_local:
            path = os.path.abspath(target)
            return BlobLocation(url=path, path=path, storage_options={}, filesystem=None)
        url = target if "://" in target else f"{self.protocol}://{target.lstrip('/')}"
        return BlobLocation(
            url=url, path=None, storage_options=dict(self.fs.storage_options), filesystem=self.fs
        )

    def get_bytes(self, digest: str) -> bytes:
        target = self.path_of(digest)
        try:
            if self.is_local:
                with open(target, "rb") as fh:
                    data = fh.read()
            else:
                data = self._remote(lambda: self.fs.cat_file(target))
        except FileNotFoundError as exc:
            raise self._missing(digest) from exc
        if hash_bytes(data) != digest:
            raise self._corrupt(digest)
        return bytes(data)

    def get_file(self, digest: str, dst: str | os.PathLike[str]) -> Path:
        """Copy the object to ``dst`` (atomically), verifying its digest on the way."""
        target = self.path_of(digest)
        dst = Path(dst)
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(f".{dst.name}.{uuid.uuid4().hex[:8]}.tmp")
        hasher = blake3.blake3()
        try:
            try:
                src: Any = open(target, "rb") if self.is_local else self.fs.open(target, "rb")  # noqa: SIM115
            except FileNotFoundError as exc:
                raise self._missing(digest) from exc
            with src, open(tmp, "wb") as out:
                while chunk := src.read(CHUNK):
                    hasher.update(chunk)
                    out.write(chunk)
            if hasher.hexdigest() != digest:
                raise self._corrupt(digest)
            os.replace(tmp, dst)
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()
        return dst

    def delete(self, digest: str) -> None:
        target = self.path_of(digest)
        try:
            if self.is_local:
                os.unlink(target)
            elif not self.exists(digest):  # object stores delete missing keys silently
                raise FileNotFoundError(target)
            else:
                self._remote(lambda: self.fs.rm_file(target))
        except FileNotFoundError as exc:
            raise self._missing(digest) from exc

    # -- errors ----------------------------------------------------------------------------

    def _missing(self, digest: str) -> BlobNotFound:
        return BlobNotFound(f"Blob {digest} is not in the blob store {self.url}.")

    def _corrupt(self, digest: str) -> CorruptBlob:
        return CorruptBlob(
            f"Blob {digest} in {self.url} is corrupted: its bytes no longer match their BLAKE3 "
            "digest. It was not used. Delete the object and log the artifact again, or restore "
            "it from a remote."
        )

    def _remote_write(self, call: Any) -> Any:
        """A write to an object store: "not found" there means the bucket (or the endpoint)
        is wrong, never a missing blob."""
        try:
            return self._remote(call)
        except FileNotFoundError as exc:
            raise StoreUnavailable(
                f"The blob store {self.url} answered Not Found on a write: the bucket does not "
                "exist or the endpoint is not an S3 server. Check the bucket name and "
                "AWS_ENDPOINT_URL (or the endpoint_url storage option)."
            ) from exc

    def _remote(self, call: Any) -> Any:
        try:
            return call()
        except (FileNotFoundError, BlobNotFound, CorruptBlob):
            raise
        except PermissionError as exc:
            raise StoreUnavailable(f"The blob store {self.url} refused access: {exc}") from exc
        except OSError as exc:
            raise StoreUnavailable(f"The blob store {self.url} is unavailable: {exc}") from exc
        except Exception as exc:
            # Cloud SDK errors (missing credentials, endpoint unreachable) are not OSErrors.
            if type(exc).__module__.split(".")[0] in _CLOUD_SDKS:
                raise StoreUnavailable(
                    f"The blob store {self.url} is unavailable: {type(exc).__name__}: {exc}"
                ) from exc
            raise


def open_blob_store(url: str, **storage_options: Any) -> BlobStore:
    """Open the blob store at ``url`` (a folder path or any fsspec URL)."""
    return BlobStore(url, **storage_options)
