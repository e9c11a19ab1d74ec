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
* A copy is made by the kernel (``copy_file_range``). ``add`` hashes the bytes it stores
  (once: a small file is read once, hashed and written; a large one is hashed, copied, and
  hashed again only if its stat changed meanwhile); ``checkout`` copies objects it verified.
"""

from __future__ import annotations

import errno
import os
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from loopml.data.cache import CHUNK, READ_ONLY
from loopml.exceptions import InvalidConfig

__all__ = ["CHUNK", "READ_ONLY", "Linker", "copy_fd", "copy_file", "parse_order", "write_new"]

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

    write_new(src, dst, 0o644, lambda fd_in, fd_out: fcntl.ioctl(fd_out, _FICLONE, fd_in))


def copy_file(src: str, dst: str, mode: int = 0o644) -> None:
    """Copy ``src`` to the new file ``dst`` (removed again if the copy fails).

    The kernel copies the bytes (``copy_file_range``, as ``cp`` does) where it can, else they
    go through a buffer. Nothing is hashed here: callers copy objects they have verified, or
    hash what they copied themselves (:meth:`loopml.data.cache.Cache.store`).
    """
    write_new(src, dst, mode, copy_fd)


T = TypeVar("T")


def write_new(src: str, dst: str, mode: int, fill: Callable[[int, int], T]) -> T:
    """Create the new file ``dst`` and ``fill(src_fd, dst_fd)`` it from ``src``; ``dst`` is
    removed again if that fails. Returns what ``fill`` returns."""
    fd_in = os.open(src, os.O_RDONLY)
    try:
        fd_out = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            result = fill(fd_in, fd_out)
        except BaseException:
            os.close(fd_out)
            os.unlink(dst)
            raise
        os.close(fd_out)
        return result
    finally:
        os.close(fd_in)


def copy_fd(fd_in: int, fd_out: int) -> None:
    """Copy everything from ``fd_in`` (at offset 0) to ``fd_out``: in the kernel when it can."""
    if _kernel_copy(fd_in, fd_out):
        return
    while chunk := os.read(fd_in, CHUNK):
        view = memoryview(chunk)
        while view:
            view = view[os.write(fd_out, view) :]


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
