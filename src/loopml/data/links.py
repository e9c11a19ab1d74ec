"""How a file gets from the workspace into the cache and back: reflink, hardlink or copy.

The order is configurable (``[data] link = ["reflink", "hardlink", "copy"]`` in
``loopml.toml``, or ``--link``); the first strategy the file system supports wins, and one that
fails for a pair of devices is not tried again for that pair.

* A reflink is a copy-on-write clone (btrfs, xfs, apfs): instant and independent.
* A hardlink is the same inode, so it is made read-only: the cache can't be edited through the
  workspace. ``add`` uses the same order, so an added file *is* the cache object from then on
  (DVC's ``cache.type = hardlink``); ``loopml data unprotect`` turns such files into writable
  copies, and ``link = ["reflink", "copy"]`` keeps added files independent. Read-only does not
  stop root, so when loopml runs as root the default order leaves hardlinks out (an in-place
  rewrite such as ``df.to_csv(path)`` would silently change the cached version); name
  ``hardlink`` in ``[data] link`` to use it anyway.
* A copy is hashed as it is written, so a copy is verified.
"""

from __future__ import annotations

import errno
import os
import sys
import threading
from collections.abc import Sequence
from typing import IO, Any

from loopml.data.cache import CHUNK, READ_ONLY
from loopml.exceptions import InvalidConfig

__all__ = ["CHUNK", "READ_ONLY", "Linker", "copy_hashed", "parse_order"]

STRATEGIES = ("reflink", "hardlink", "copy")
DEFAULT_ORDER = ("reflink", "hardlink", "copy")
# Read-only files don't stop root from writing through a hardlink into the cache.
ROOT_DEFAULT_ORDER = ("reflink", "copy")


def default_order() -> tuple[str, ...]:
    """reflink → hardlink → copy; reflink → copy for root (see the module docstring)."""
    geteuid = getattr(os, "geteuid", None)
    return ROOT_DEFAULT_ORDER if geteuid is not None and geteuid() == 0 else DEFAULT_ORDER


_FICLONE = 0x40049409  # linux/fs.h: _IOW(0x94, 9, int)
# errnos meaning "this file system (pair) can't do that", as opposed to a real I/O failure.
_UNSUPPORTED = {
    errno.EXDEV,
    errno.EPERM,
    errno.EINVAL,
    errno.ENOTTY,
    errno.ENOSYS,
    errno.EOPNOTSUPP,
    getattr(errno, "ENOTSUP", errno.EOPNOTSUPP),
}


def parse_order(value: Any, source: str) -> tuple[str, ...]:
    """Validate a strategy list: a TOML list or a comma-separated ``--link`` value."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not items:
        raise InvalidConfig(
            f"{source} must be a list of link strategies from {', '.join(STRATEGIES)}; "
            f"got {value!r}"
        )
    order: list[str] = []
    for item in items:
        name = item.strip() if isinstance(item, str) else item
        if name not in STRATEGIES:
            raise InvalidConfig(
                f"{source}: unknown link strategy {name!r}; choose from {', '.join(STRATEGIES)}"
            )
        if name not in order:
            order.append(name)
    return tuple(order)


class LinkUnsupported(OSError):
    """No strategy in the order works for this pair of locations."""


class Linker:
    """Creates ``dst`` (which must not exist) from ``src`` with the first strategy that works."""

    def __init__(self, order: Sequence[str]) -> None:
        self.order = tuple(order)
        self._broken: set[tuple[str, int, int]] = set()
        self._lock = threading.Lock()

    def first_choice(self, src_dev: int, dst_dev: int) -> str | None:
        """The strategy to try first between these devices (None: none left)."""
        for strategy in self.order:
            if (strategy, src_dev, dst_dev) not in self._broken:
                return strategy
        return None

    def failed(self, strategy: str, src_dev: int, dst_dev: int, exc: OSError) -> bool:
        """Record that ``strategy`` failed with ``exc``; True when the next strategy should
        be tried (the file system can't do it), False when ``exc`` is a real error."""
        if exc.errno == errno.EMLINK:  # this inode has too many links: try the next
            return True
        if exc.errno not in _UNSUPPORTED:
            return False
        with self._lock:
            self._broken.add((strategy, src_dev, dst_dev))
        return True

    def link(self, src: str, dst: str, src_dev: int, dst_dev: int) -> str:
        """Make ``dst`` from ``src`` without copying bytes; return the strategy used, or
        ``"copy"`` when the caller has to copy (it hashes while copying)."""
        for strategy in self.order:
            if strategy == "copy":
                return "copy"
            if (strategy, src_dev, dst_dev) in self._broken:
                continue
            try:
                if strategy == "hardlink":
                    os.link(src, dst)
                else:
                    _reflink(src, dst)
                return strategy
            except OSError as exc:
                if not self.failed(strategy, src_dev, dst_dev, exc):
                    raise
        raise LinkUnsupported(
            errno.EOPNOTSUPP,
            f"none of the link strategies {', '.join(self.order)} works from {src} to {dst}; "
            'add "copy" to [data] link in loopml.toml',
        )


def _reflink(src: str, dst: str) -> None:
    if not sys.platform.startswith("linux"):
        raise OSError(errno.EOPNOTSUPP, "reflink is implemented for Linux only")
    import fcntl

    src_fd = os.open(src, os.O_RDONLY)
    try:
        dst_fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            fcntl.ioctl(dst_fd, _FICLONE, src_fd)
        except BaseException:
            os.close(dst_fd)
            os.unlink(dst)
            raise
        os.close(dst_fd)
    finally:
        os.close(src_fd)


def copy_hashed(src: str, dst: str, mode: int = 0o644) -> tuple[str, int]:
    """Copy ``src`` to the new file ``dst`` and hash what was written; (digest, size).

    Large files are copied by the kernel (``copy_file_range``) and the copy is then hashed
    (from the page cache): three times faster than pushing the bytes through Python. Small
    files are hashed on the way through, in one read and one write.
    """
    with open(src, "rb") as fin:
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            with os.fdopen(fd, "wb") as fout:
                size = os.fstat(fin.fileno()).st_size
                if size >= KERNEL_COPY and _kernel_copy(fin.fileno(), fout.fileno()):
                    fout.flush()
                    from loopml.data.cache import hash_path

                    return hash_path(dst, None), os.fstat(fout.fileno()).st_size
                return _copy_through(fin, fout)
        except BaseException:
            os.unlink(dst)
            raise


KERNEL_COPY = 1 << 20


def _kernel_copy(fd_in: int, fd_out: int) -> bool:
    """Copy the whole file in the kernel; False (and nothing written) when it can't."""
    copy_range = getattr(os, "copy_file_range", None)
    if copy_range is None:
        return False
    copied = 0
    try:
        while n := copy_range(fd_in, fd_out, 1 << 30):
            copied += n
    except OSError as exc:
        if copied or exc.errno not in _UNSUPPORTED | {errno.ENOSYS, errno.EBADF}:
            raise
        return False
    return True


def _copy_through(fin: IO[bytes], fout: IO[bytes]) -> tuple[str, int]:
    import blake3

    hasher = blake3.blake3()
    size = 0
    while chunk := fin.read(CHUNK):
        hasher.update(chunk)
        fout.write(chunk)
        size += len(chunk)
    return hasher.hexdigest(), size
