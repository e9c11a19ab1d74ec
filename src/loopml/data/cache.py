"""The local cache of data objects, in the blob store's layout (``<root>/<d[:2]>/<d[2:]>``).

It is the workspace's blob folder when that is local (so tracking artifacts and data versions
share bytes), else ``<root>/.loopml/cache``. Objects are read-only and appear atomically: a
hardlink appears whole, a copy or reflink is made under a temp name and renamed. Every object
handed out is verified: by its recorded stat when that is unchanged since it was hashed (see
:mod:`loopml.data.index`), else by hashing it again.

Objects are not fsync'ed: after a power loss an object may hold garbage, which the next
verification detects (its stat changed) and reports instead of serving it.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, NamedTuple

from loopml.data.index import RACY_NS, Stamp, StatIndex, digest_if_unchanged, is_racy, stamp
from loopml.data.parallel import parallel_map, threads_for
from loopml.data.progress import Progress
from loopml.exceptions import CorruptBlob
from loopml.wording import counted

if TYPE_CHECKING:
    from loopml.data.links import Linker

CHUNK = 1 << 20
READ_ONLY = 0o444
_TMP_PREFIX = ".tmp-"  # the blob store's prefix too: `loopml data gc` removes stale ones
_HEX = frozenset("0123456789abcdef")
_counter = itertools.count()


SMALL_FILE = 4 << 20  # below this, read whole with os.read; above, blobs.hash_file (mmap)


PROGRESS_STEP = 64 << 20  # a large file reports its hashing progress this often


def hash_path(path: str, size: int | None = None, progress: Progress | None = None) -> str:
    """BLAKE3 of a file: :func:`loopml.store.blobs.hash_file`, with a leaner path for small
    files (half the time on 4 KB files: no buffered reader, no extra stat). Both hash the
    same bytes the same way; a test holds them equal. ``progress`` (large files only) is
    called with ``bytes=`` every 64 MB hashed."""
    if progress is not None and (size is None or size >= SMALL_FILE):
        return _hash_in_steps(path, progress)
    if size is not None and size < SMALL_FILE:
        import blake3

        fd = os.open(path, os.O_RDONLY)
        try:
            # One read when the file still has the size it had: a short read is the end.
            data = os.read(fd, size + 1)
            if len(data) > size:
                chunks = [data]
                while chunk := os.read(fd, CHUNK):
                    chunks.append(chunk)
                data = b"".join(chunks)
        finally:
            os.close(fd)
        return blake3.blake3(data).hexdigest()
    from loopml.store.blobs import hash_file

    return hash_file(path)


def _hash_in_steps(path: str, progress: Progress) -> str:
    """BLAKE3 of a large file, memory-mapped and multithreaded like ``hash_file``, in steps."""
    import mmap

    import blake3

    hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size == 0:
            return hasher.hexdigest()
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            view = memoryview(mm)
            try:
                for start in range(0, size, PROGRESS_STEP):
                    hasher.update(view[start : start + PROGRESS_STEP])
                    progress(bytes=min(PROGRESS_STEP, size - start))
            finally:
                view.release()
    return hasher.hexdigest()


class Stored(NamedTuple):
    """The result of putting one workspace file into the cache."""

    digest: str
    size: int
    strategy: str | None  # None: the object was there already
    source_stat: os.stat_result  # the workspace file's stat afterwards
    object_stat: os.stat_result | None = None  # a copy's or reflink's, as written


class Cache:
    """Content-addressed objects in one local folder, verified through the stat index."""

    def __init__(self, root: Path, index: StatIndex, key_prefix: str) -> None:
        self.root = root
        self.index = index
        self._key_prefix = key_prefix  # the index key of `root`, ending with "/"
        self._root = os.fspath(root)
        self._dirs: set[str] = set()
        self._dev: int | None = None

    def __repr__(self) -> str:
        return f"Cache({self._root!r})"

    @property
    def dev(self) -> int:
        if self._dev is None:
            self.root.mkdir(parents=True, exist_ok=True)
            self._dev = os.stat(self._root).st_dev
        return self._dev

    def path_of(self, digest: str) -> str:
        return f"{self._root}/{digest[:2]}/{digest[2:]}"

    def key_of(self, digest: str) -> str:
        return f"{self._key_prefix}{digest[:2]}/{digest[2:]}"

    def has(self, digest: str) -> bool:
        return os.path.exists(self.path_of(digest))

    def _folder(self, digest: str) -> str:
        """The object's folder, created once per process."""
        folder = f"{self._root}/{digest[:2]}"
        if folder not in self._dirs:
            os.makedirs(folder, exist_ok=True)
            self._dirs.add(folder)
        return folder

    def _tmp(self, digest: str) -> str:
        return f"{self._folder(digest)}/{_TMP_PREFIX}{os.getpid()}-{next(_counter)}"

    # -- writes ----------------------------------------------------------------------------

    def store(
        self,
        src: str,
        st: os.stat_result,
        digest: str | None,
        linker: Linker,
        progress: Progress | None = None,
    ) -> Stored:
        """Put the workspace file ``src`` (whose stat was ``st`` before hashing) in the cache.

        ``digest`` is its known digest, or None to hash it now. A file that changed while it
        was being added is stored under the digest of the bytes actually stored.
        ``progress``: told the bytes hashed, as a large file is hashed.
        """
        first = linker.first_choice(st.st_dev, self.dev)
        if first == "copy" and st.st_size < SMALL_FILE:
            return self._store_small_copy(src, st, digest)
        if digest is None:
            digest = hash_path(src, st.st_size, progress)
        elif self.has(digest):  # known unchanged: most likely cached already
            return Stored(digest, st.st_size, None, st)
        if first == "hardlink":
            # No existence check first: linking onto an existing object fails, which says it.
            stored = self._store_hardlink(src, st, digest, linker)
            if stored is not None:
                return stored
        if self.has(digest):
            return Stored(digest, st.st_size, None, st)
        return self._store_staged(src, st, digest, linker)

    def _store_hardlink(
        self, src: str, st: os.stat_result, digest: str, linker: Linker
    ) -> Stored | None:
        # Linked straight to its final name (a link appears whole), then made read-only: the
        # workspace file *is* the object from now on. None: hardlinks don't work here.
        target = f"{self._folder(digest)}/{digest[2:]}"
        try:
            os.link(src, target)
        except FileExistsError:  # the same bytes from another file, meanwhile
            return Stored(digest, st.st_size, None, st)
        except OSError as exc:
            if linker.failed("hardlink", st.st_dev, self.dev, exc):
                return None
            raise
        os.chmod(target, READ_ONLY)
        after = os.stat(src)
        if (after.st_size, after.st_mtime_ns) != (st.st_size, st.st_mtime_ns):
            os.unlink(target)  # changed since it was hashed: store what it holds now
            return self.store(src, after, None, linker)
        return Stored(digest, after.st_size, "hardlink", after)

    def _store_staged(self, src: str, st: os.stat_result, digest: str, linker: Linker) -> Stored:
        tmp = self._tmp(digest)
        try:
            strategy = linker.link(src, tmp, st.st_dev, self.dev)
            if strategy == "copy":
                return self._store_large_copy(src, st, digest, tmp)
            os.chmod(tmp, READ_ONLY)  # a hardlink: the workspace file too
            now = os.stat(tmp)
            size = now.st_size
            if (size, now.st_mtime_ns) != (st.st_size, st.st_mtime_ns):
                digest = hash_path(tmp, size)
            after = now if strategy == "hardlink" else os.stat(src)
            self._folder(digest)  # a file changed while being added has another digest
            os.replace(tmp, self.path_of(digest))
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return Stored(digest, size, strategy, after, now if strategy == "reflink" else None)

    def _store_small_copy(self, src: str, st: os.stat_result, digest: str | None) -> Stored:
        """Copy a small file: read once, hash those bytes, write them (so the object holds
        exactly the bytes its name says, whatever happened to the file meanwhile)."""
        import blake3

        if digest is not None and self.has(digest):
            return Stored(digest, st.st_size, None, st)
        fd = os.open(src, os.O_RDONLY)
        try:
            # One read when the file still has the size it had (no chunks to join: one copy
            # of the bytes less); a short read is the end.
            data = os.read(fd, st.st_size + 1)
            if len(data) > st.st_size:
                chunks = [data]
                while chunk := os.read(fd, CHUNK):
                    chunks.append(chunk)
                data = b"".join(chunks)
            after = os.fstat(fd)
        finally:
            os.close(fd)
        digest = blake3.blake3(data).hexdigest()
        if self.has(digest):
            return Stored(digest, len(data), None, after)
        # The object keeps the file's mtime, as its links will show it (see index).
        obj = self._write_object(digest, data, (after.st_atime_ns, after.st_mtime_ns))
        return Stored(digest, len(data), "copy", after, obj)

    def _store_large_copy(self, src: str, st: os.stat_result, digest: str, tmp: str) -> Stored:
        """Copy a large file that hashed to ``digest`` into ``tmp``, then to its object name.

        The kernel copies it; the copy is hashed again only when the file's stat changed since
        it was hashed, or is too recent to vouch for its bytes (see index: racily clean).
        """
        from loopml.data.links import copy_fd, write_new

        def fill(fd: int, out: int) -> tuple[os.stat_result, os.stat_result]:
            copy_fd(fd, out)
            after = os.fstat(fd)
            os.utime(out, ns=(after.st_atime_ns, after.st_mtime_ns))
            return after, os.fstat(out)

        after, obj = write_new(src, tmp, READ_ONLY, fill)
        if stamp(after) != stamp(st) or is_racy(after, time.time_ns()):
            digest = hash_path(tmp, obj.st_size)
        self._folder(digest)
        os.replace(tmp, self.path_of(digest))
        return Stored(digest, obj.st_size, "copy", after, obj)

    def put_bytes(self, data: bytes) -> str:
        import blake3

        digest = blake3.blake3(data).hexdigest()
        if not self.has(digest):
            self._write_object(digest, data)
        return digest

    def _write_object(
        self, digest: str, data: bytes, times_ns: tuple[int, int] | None = None
    ) -> os.stat_result:
        """Write ``data`` (which hashes to ``digest``) under a temp name, then rename it into
        place; the object's stat (with ``times_ns`` as atime and mtime, when given)."""
        tmp = self._tmp(digest)
        try:
            out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, READ_ONLY)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(out, view) :]
                if times_ns is not None:
                    os.utime(out, ns=times_ns)
                obj = os.fstat(out)
            finally:
                os.close(out)
            os.replace(tmp, self.path_of(digest))
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return obj

    def receive(self, digest: str, source: IO[bytes]) -> int:
        """Write an object from a stream (a pull), verifying it; nothing half-written stays."""
        import blake3

        hasher = blake3.blake3()
        size = 0
        tmp = self._tmp(digest)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, READ_ONLY)
            with os.fdopen(fd, "wb") as out:
                while chunk := source.read(CHUNK):
                    hasher.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
            if hasher.hexdigest() != digest:
                raise CorruptBlob(
                    f"Object {digest} arrived corrupted: its bytes hash to {hasher.hexdigest()}. "
                    "It was not stored. Push it again from a workspace that has it intact."
                )
            # Verified as written, so trusted: an mtime older than the racy window lets the
            # stat index (and the files linked to it) be trusted too.
            past = time.time_ns() - 2 * RACY_NS
            os.utime(tmp, ns=(past, past))
            os.replace(tmp, self.path_of(digest))
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        self.index.record([(self.key_of(digest), stamp(os.stat(self.path_of(digest))), digest)])
        return size

    def remove(self, digest: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path_of(digest))

    # -- reads -----------------------------------------------------------------------------

    def read_verified(self, digest: str) -> bytes | None:
        """The object's bytes (None when absent); :class:`CorruptBlob` when they don't match."""
        import blake3

        try:
            with open(self.path_of(digest), "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            return None
        if blake3.blake3(data).hexdigest() != digest:
            raise self.corrupt([digest])
        return data

    def verify(
        self, digests: Iterable[str], jobs: int | None = None, deep: bool = False
    ) -> tuple[list[str], list[str]]:
        """Check objects; return (missing, corrupt). A stat unchanged since the object was last
        hashed trusts it without reading it, unless ``deep``: then every object is hashed.
        A corrupt object's recorded stat is forgotten, so nothing trusts it again."""
        wanted = sorted(set(digests))
        known = self.index.load(self._key_prefix) if len(wanted) > 16 and not deep else {}
        missing: list[str] = []
        to_hash: list[tuple[str, os.stat_result]] = []
        for digest in wanted:
            key = self.key_of(digest)
            try:
                st = os.stat(self.path_of(digest))
            except FileNotFoundError:
                missing.append(digest)
                continue
            if deep:
                to_hash.append((digest, st))
                continue
            row = known.get(key) if known else self.index.load(key).get(key)
            if digest_if_unchanged(row, st) != digest:
                to_hash.append((digest, st))
        seen_ns = time.time_ns()
        threads = threads_for(jobs, sum(st.st_size for _, st in to_hash), len(to_hash))
        hashed = parallel_map(
            lambda item: hash_path(self.path_of(item[0]), item[1].st_size), to_hash, threads
        )
        corrupt = [d for (d, _), h in zip(to_hash, hashed, strict=True) if h != d]
        good: list[tuple[str, Stamp, str]] = [
            (self.key_of(d), stamp(st), d)
            for (d, st), h in zip(to_hash, hashed, strict=True)
            if h == d and not is_racy(st, seen_ns)
        ]
        self.index.record(good)
        self.index.forget(self.key_of(d) for d in corrupt)
        return missing, corrupt

    def materialize(self, digest: str, dst: str, linker: Linker, dst_dev: int) -> str:
        """Create or replace ``dst`` with the object; return the strategy used.

        The caller has verified the object (:meth:`verify`), so a copy is not hashed again.
        """
        from loopml.data.links import copy_file

        obj = self.path_of(digest)
        if linker.first_choice(self.dev, dst_dev) == "hardlink":
            try:
                os.link(obj, dst)  # a new name appears whole: no temp file needed
                return "hardlink"
            except FileExistsError:
                pass  # replaced below, atomically
            except OSError as exc:
                if not linker.failed("hardlink", self.dev, dst_dev, exc):
                    raise
        folder, name = os.path.split(dst)
        tmp = f"{folder}/.{name}{_TMP_PREFIX}{os.getpid()}-{next(_counter)}"
        try:
            strategy = linker.link(obj, tmp, self.dev, dst_dev)
            if strategy == "copy":
                copy_file(obj, tmp)
            if strategy != "hardlink":  # like a link, a copy shows the version's mtime
                st = os.stat(obj)
                os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
            os.replace(tmp, dst)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return strategy

    def digests(self) -> Iterator[str]:
        """Every object in the cache (temp files and foreign files are skipped)."""
        try:
            outer = list(os.scandir(self._root))
        except FileNotFoundError:
            return
        for folder in outer:
            if not (_is_hex(folder.name, 2) and folder.is_dir(follow_symlinks=False)):
                continue
            with os.scandir(folder.path) as it:
                for entry in it:
                    if _is_hex(entry.name, 62):
                        yield folder.name + entry.name

    def stale_temp_files(self, older_than_s: float) -> list[str]:
        """Temp files left behind by interrupted writes, older than ``older_than_s``."""
        cutoff = time.time() - older_than_s
        found: list[str] = []
        with contextlib.suppress(FileNotFoundError), os.scandir(self._root) as outer:
            for folder in outer:
                if not folder.is_dir(follow_symlinks=False):
                    continue
                with os.scandir(folder.path) as it:
                    for entry in it:
                        if entry.name.startswith(_TMP_PREFIX):
                            with contextlib.suppress(FileNotFoundError):
                                if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                                    found.append(entry.path)
        return found

    def corrupt(self, digests: list[str]) -> CorruptBlob:
        shown = ", ".join(self.path_of(d) for d in digests[:5])
        more = f" and {len(digests) - 5} more" if len(digests) > 5 else ""
        one = len(digests) == 1
        return CorruptBlob(
            f"{counted(len(digests), 'cache object')} no longer "
            f"{'matches its' if one else 'match their'} BLAKE3 hash and "
            f"{'was' if one else 'were'} not used: {shown}{more}. Fetch "
            f"{'it' if one else 'them'} again with `loopml data pull` (it replaces corrupted "
            f"objects), or delete {'it' if one else 'them'} and `loopml data add` the data again."
        )


def _is_hex(name: str, length: int) -> bool:
    return len(name) == length and _HEX.issuperset(name)
