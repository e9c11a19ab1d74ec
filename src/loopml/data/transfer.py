"""``push`` and ``pull``: copy the objects of data versions between the cache and a remote.

Only missing objects move, in parallel. Each object's presence is asked for by name (one HEAD
on S3), never by listing the remote. A pull hashes every object while writing it to a temp
file and renames it into the cache only when the hash matches, so a failed or corrupted
transfer leaves nothing half-written. A folder's manifest is pushed after its files, so a
remote that has a manifest has the files it names.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from loopml.data.manifest import FILE, version_files
from loopml.data.parallel import default_jobs, parallel_map
from loopml.data.pointers import Pointer, pointer_path
from loopml.data.progress import Progress
from loopml.data.remotes import Remote, pick_remote
from loopml.data.repo import DataRepo, WorkspaceLike
from loopml.data.restore import (
    checkout_in,
    describe_objects,
    file_names,
    load_pointer,
    load_pointers,
)
from loopml.exceptions import (
    BlobNotFound,
    InvalidConfig,
    LoopmlError,
    StoreUnavailable,
    missing_dependency,
)
from loopml.wording import clause, counted

# Object stores publish a PUT whole: no temp name + rename needed there.
_ATOMIC_PUT = {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "memory", "oci", "r2"}
_EXTRAS = {
    "s3": ("s3fs", "s3"),
    "s3a": ("s3fs", "s3"),
    "gs": ("gcsfs", "gcs"),
    "gcs": ("gcsfs", "gcs"),
}
_STREAM_ABOVE = 8 << 20  # objects larger than this are streamed, smaller ones fetched whole


@dataclass(frozen=True)
class TransferResult:
    """What a push or pull moved: ``transferred`` objects (``bytes`` of them), ``present``
    ones that were there already, ``missing`` ones that could not be found, and (push with
    ``verify``) the ``replaced`` ones whose remote copy was corrupt, counted as transferred.
    ``missing_files`` names, for each ``missing`` object in the same order, the files that
    need it (as shown to the user; or the folder whose manifest it is), and
    ``missing_versions`` the versioned paths they belong to."""

    remote: str
    url: str
    transferred: int = 0
    present: int = 0
    bytes: int = 0
    missing: tuple[str, ...] = ()
    checked_out: tuple[Path, ...] = field(default_factory=tuple)
    replaced: tuple[str, ...] = ()  # remote copies that failed verification (push --verify)
    missing_files: tuple[str, ...] = ()
    missing_versions: tuple[Path, ...] = ()


class RemoteStore:
    """One remote in the blob layout, reached through fsspec (a plain folder directly)."""

    def __init__(self, remote: Remote) -> None:
        self.remote = remote
        url = remote.url
        self.protocol = url.split("://", 1)[0] if "://" in url else "file"
        self.fs: Any = None
        if self.protocol in {"file", "local"}:
            self.root = url.split("://", 1)[1] if "://" in url else url
            return
        options = dict(remote.options)
        if self.protocol in {"s3", "s3a"} and "config_kwargs" not in options:
            # Fail in about a second on an unreachable endpoint (botocore's default is ~5 s).
            options["config_kwargs"] = {"connect_timeout": 5, "retries": {"max_attempts": 2}}
        try:
            from fsspec.core import url_to_fs

            self.fs, root = url_to_fs(url, **options)
        except ImportError as exc:
            package, extra = _EXTRAS.get(self.protocol, (self.protocol, "all"))
            raise missing_dependency(package, extra, f"A {self.protocol}:// data remote") from exc
        except (ValueError, TypeError) as exc:
            raise InvalidConfig(f"Not a usable data remote {remote.name} = {url!r}: {exc}") from exc
        self.root = root.rstrip("/")

    def path_of(self, digest: str) -> str:
        return f"{self.root}/{digest[:2]}/{digest[2:]}"

    def _call(self, action: str, fn: Any) -> Any:
        # The one boundary where fsspec/botocore/network errors become loopml errors.
        try:
            return fn()
        except (LoopmlError, FileNotFoundError):
            raise
        except PermissionError as exc:
            raise StoreUnavailable(
                f"The data remote {self.remote.name} ({self.remote.url}) refused to {action}: "
                f"{clause(exc)}. Check its credentials."
            ) from exc
        except Exception as exc:
            raise StoreUnavailable(
                f"The data remote {self.remote.name} ({self.remote.url}) is unavailable "
                f"({action}: {type(exc).__name__}: {exc}). Check the URL, the network and "
                "the credentials; nothing was half-written."
            ) from exc

    def exists(self, digest: str) -> bool:
        path = self.path_of(digest)
        if self.fs is None:
            return os.path.exists(path)
        if self.protocol in {"s3", "s3a"}:
            # One HEAD; fs.exists would add a LIST to tell a missing key from a "folder".
            bucket, key, _ = self.fs.split_path(path)

            def head() -> bool:
                try:
                    self.fs.call_s3("head_object", Bucket=bucket, Key=key)
                except FileNotFoundError:
                    return False
                return True

            return bool(self._call("check an object", head))
        return bool(self._call("check an object", lambda: self.fs.exists(path)))

    def intact(self, digest: str, size: int | None) -> bool:
        """Whether the remote copy hashes to ``digest`` (False when it is gone)."""
        import blake3

        def hash_stream(fh: IO[bytes]) -> int:
            hasher = blake3.blake3()
            while chunk := fh.read(1 << 20):
                hasher.update(chunk)
            return int(hasher.hexdigest() == digest)

        try:
            return bool(self.download(digest, size, hash_stream))
        except FileNotFoundError:
            return False

    def upload(self, local: str, digest: str) -> None:
        path = self.path_of(digest)
        if self.fs is None:
            folder = os.path.dirname(path)
            os.makedirs(folder, exist_ok=True)
            tmp = f"{folder}/.tmp-{uuid.uuid4().hex}"
            try:
                shutil.copyfile(local, tmp)
                os.chmod(tmp, 0o444)
                os.replace(tmp, path)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
            return
        tmp = f"{os.path.dirname(path)}/.tmp-{uuid.uuid4().hex}"

        def put_and_rename() -> None:
            if self.protocol in _ATOMIC_PUT:
                self.fs.put_file(local, path)
                return
            self.fs.put_file(local, tmp)
            self.fs.mv(tmp, path)

        try:
            self._call("upload", put_and_rename)
        except FileNotFoundError as exc:
            # "Not found" on a write: the bucket is missing or the endpoint is not S3.
            raise StoreUnavailable(
                f"The data remote {self.remote.name} ({self.remote.url}) answered Not Found "
                "to an upload: the bucket does not exist or the endpoint is not an S3 server. "
                "Check the URL and AWS_ENDPOINT_URL; nothing was half-written."
            ) from exc

    def download(self, digest: str, size: int | None, receive: Any) -> int:
        """Feed the object to ``receive(stream)``; FileNotFoundError when it isn't there."""
        path = self.path_of(digest)
        if self.fs is None:
            with open(path, "rb") as fh:
                return int(receive(fh))
        if size is not None and size <= _STREAM_ABOVE:
            import io

            data = self._call("download", lambda: self.fs.cat_file(path))
            return int(receive(io.BytesIO(data)))

        def stream() -> int:
            fh: IO[bytes]
            with self.fs.open(path, "rb") as fh:
                return int(receive(fh))

        return int(self._call("download", stream))


def _objects(
    repo: DataRepo, target: Path, pointer: Pointer
) -> tuple[dict[str, tuple[str, int]], list[str]]:
    """(``rel → (digest, size)`` of the files, manifest objects) of one version; needs its
    manifest cached."""
    if pointer.kind == "file":
        return {FILE: (pointer.hash, pointer.size)}, []
    files = version_files(repo, pointer, str(pointer_path(target)))
    if files is None:
        raise BlobNotFound(
            f"The manifest of {repo.display(target)} ({pointer.hash[:12]}…) is not in the "
            "cache, so its files can't be pushed."
        )
    return files, [pointer.hash]


def _missing(
    gone: list[str], names: dict[str, list[str]], owners: dict[str, list[Path]]
) -> tuple[tuple[str, ...], tuple[Path, ...]]:
    """(the files that need each object in ``gone``, the versioned paths they belong to)."""
    files = []
    for digest in gone:
        held = names.get(digest) or ["a folder's manifest"]
        also = f" and {len(held) - 3} more with the same bytes" if len(held) > 3 else ""
        files.append(", ".join(held[:3]) + also)
    versions = dict.fromkeys(t for d in gone for t in owners.get(d, ()))
    return tuple(files), tuple(versions)


def push(
    path: str | os.PathLike[str] | None = None,
    *,
    remote: str | None = None,
    verify: bool = False,
    jobs: int | None = None,
    workspace: WorkspaceLike = None,
    progress: Progress | None = None,
) -> TransferResult:
    """Send the cached objects of ``path``'s version (default: every versioned path) that the
    remote lacks.

    ``verify``: hash every local object first (trusting no recorded stat), and download and
    hash every object the remote already has, replacing a copy that doesn't match its name;
    it reads every byte on both sides. ``progress`` is called with ``files=``/``bytes=`` per
    object checked or sent (totals first).
    """
    near = Path(path) if path is not None else None
    with DataRepo.open(workspace, near=near) as repo:
        targets = repo.targets([os.fspath(path)] if path is not None else None)
        chosen = pick_remote(repo, remote)
        store = RemoteStore(chosen)
        sizes: dict[str, int] = {}
        manifests: list[str] = []
        names: dict[str, list[str]] = {}  # digest → the files that hold it, as shown
        owners: dict[str, list[Path]] = {}  # digest → the versioned paths that need it
        for target in targets:
            files, extra = _objects(repo, target, load_pointer(target, None))
            sizes.update({d: s for d, s in files.values()})
            manifests.extend(extra)
            file_names(repo, target, files, names)
            for digest in extra:
                names.setdefault(digest, [f"the manifest of {repo.display(target)}"])
            for digest in {d for d, _ in files.values()} | set(extra):
                owners.setdefault(digest, []).append(target)
        local_missing, corrupt = repo.cache.verify([*sizes, *manifests], repo.jobs, deep=verify)
        if corrupt:
            raise repo.cache.corrupt(corrupt)
        gone = set(local_missing)
        replaced: list[str] = []
        if progress is not None:
            present = [d for d in dict.fromkeys([*sizes, *manifests]) if d not in gone]
            progress(
                total_files=len(present),
                total_bytes=sum(os.stat(repo.cache.path_of(d)).st_size for d in present),
            )

        def send(digest: str) -> int:
            size = os.stat(repo.cache.path_of(digest)).st_size
            try:
                if store.exists(digest):
                    if not verify or store.intact(digest, size):
                        return -1
                    replaced.append(digest)
                store.upload(repo.cache.path_of(digest), digest)
                return size
            finally:
                if progress is not None:
                    progress(files=1, bytes=size)

        workers = jobs or default_jobs(io_bound=True)
        # Files first, then the manifests that name them.
        sent = parallel_map(send, [d for d in sizes if d not in gone], workers)
        sent += parallel_map(send, [d for d in dict.fromkeys(manifests) if d not in gone], workers)
        missing_files, missing_versions = _missing(sorted(gone), names, owners)
        return TransferResult(
            chosen.name,
            chosen.url,
            transferred=sum(1 for n in sent if n >= 0),
            present=sum(1 for n in sent if n < 0),
            bytes=sum(n for n in sent if n > 0),
            missing=tuple(sorted(gone)),
            replaced=tuple(sorted(replaced)),
            missing_files=missing_files,
            missing_versions=missing_versions,
        )


def pull(
    path: str | os.PathLike[str] | None = None,
    *,
    remote: str | None = None,
    rev: str | None = None,
    checkout: bool = True,
    link: str | list[str] | None = None,
    force: bool = False,
    jobs: int | None = None,
    workspace: WorkspaceLike = None,
    progress: Progress | None = None,
    warn: Callable[[str], None] | None = None,
) -> TransferResult:
    """Fetch the objects of ``path``'s version (default: every versioned path) that the cache
    lacks (or holds corrupted), verifying each, then check the data out.

    ``progress`` is called with ``files=``/``bytes=`` per object downloaded (the total once
    the folders' manifests are in). With ``rev``, a versioned path that revision has no
    pointer file for is left alone and named to ``warn``, as by ``checkout``.
    """
    near = Path(path) if path is not None else None
    with DataRepo.open(workspace, near=near) as repo:
        targets = repo.targets([os.fspath(path)] if path is not None else None)
        chosen = pick_remote(repo, remote)
        store = RemoteStore(chosen)
        workers = jobs or default_jobs(io_bound=True)
        pointers = load_pointers(repo, targets, rev, path, warn)
        moved: list[int] = []
        missing: list[str] = []
        announced = [0, 0]  # files and bytes announced to progress so far

        def fetch_all(wanted: dict[str, int | None]) -> None:
            absent, corrupt = repo.cache.verify(wanted, repo.jobs)
            for digest in corrupt:  # replaced by a verified copy from the remote
                repo.cache.remove(digest)

            todo = sorted({*absent, *corrupt})
            if progress is not None and todo:
                progress(
                    total_files=len(todo) + announced[0],
                    total_bytes=sum(wanted[d] or 0 for d in todo) + announced[1],
                )
                announced[0] += len(todo)
                announced[1] += sum(wanted[d] or 0 for d in todo)

            def fetch(digest: str) -> int:
                try:
                    n = store.download(
                        digest, wanted[digest], lambda fh: repo.cache.receive(digest, fh)
                    )
                except FileNotFoundError:
                    missing.append(digest)
                    return -1
                if progress is not None:
                    progress(files=1, bytes=wanted[digest] or 0)
                return n

            moved.extend(parallel_map(fetch, todo, workers))

        folders = [t for t, p in pointers.items() if p.kind == "folder"]
        fetch_all({pointers[t].hash: None for t in folders})
        wanted: dict[str, int | None] = {}
        names: dict[str, list[str]] = {}
        for target in folders:
            names.setdefault(pointers[target].hash, [f"the manifest of {repo.display(target)}"])
        for target, pointer in pointers.items():
            if pointer.kind == "file":
                wanted[pointer.hash] = pointer.size
                file_names(repo, target, {FILE: (pointer.hash, pointer.size)}, names)
            elif pointer.hash not in missing:
                files = version_files(repo, pointer, str(pointer_path(target))) or {}
                wanted.update({d: s for d, s in files.values()})
                file_names(repo, target, files, names)
        fetch_all(wanted)
        if missing:
            gone = sorted(set(missing))
            raise BlobNotFound(
                f"{counted(len(gone), 'object')} {'is' if len(gone) == 1 else 'are'} "
                f"not on the data remote {chosen.name} ({chosen.url}): "
                f"{describe_objects(gone, names)}; never pushed (run `loopml data push` where "
                "the data was added). The rest were fetched."
            )
        done: list[Path] = []
        if checkout:
            linker = repo.linker(link)
            for target, pointer in pointers.items():
                checkout_in(repo, target, pointer, linker, force)
                done.append(target)
        fetched = [n for n in moved if n >= 0]
        return TransferResult(
            chosen.name,
            chosen.url,
            transferred=len(fetched),
            present=len(wanted) + len(folders) - len(fetched),
            bytes=sum(fetched),
            checked_out=tuple(done),
        )
