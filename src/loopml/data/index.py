"""The stat index: ``path → (inode, size, mtime_ns, digest)`` in a small SQLite file.

A file whose stat is unchanged since it was hashed is not hashed again, so ``status`` on an
unchanged tree reads no file bytes, and a one-file change hashes one file. Cache objects are
recorded the same way, so a checkout verifies an object by one ``stat`` unless it changed.

The index is only a cache: a damaged file is deleted and rebuilt, costing one re-hash. The
stdlib ``sqlite3`` (not SQLAlchemy) keeps the CLI's start-up short.

A versioned folder found unchanged by ``status`` also gets a *tree snapshot*: one digest of
every file's (path, inode, size, mtime_ns), with the version it matched. The next ``status``
walks and stats the folder, and when the snapshot's digest comes out the same it is done:
no per-file lookups, no manifest comparison.

Racily clean files (git's term): a file modified again within the file system's timestamp
granularity after it was hashed could keep its stat. So a stat is only recorded once its
mtime is :data:`RACY_NS` older than the moment the stat was taken; a file written just now is
simply hashed again next time.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

from loopml.store.wal import enable_wal

RACY_NS = 2_000_000_000  # covers 2 s timestamp granularity (FAT); ext4/xfs/apfs are finer
SCHEMA_VERSION = 3

# Not the ctime: linking and unlinking a hardlinked cache object changes it, and checkouts
# link and unlink all the time. Writing the bytes changes the mtime.
Stamp = tuple[int, int, int]  # (inode, size, mtime_ns)


Row = tuple[str, int, int, int, str]  # (key, inode, size, mtime_ns, digest)


class TreeSnapshot(NamedTuple):
    """A folder's stats digest and the version its files matched then."""

    stats: str
    hash: str
    files: int
    size: int


def stamp(st: os.stat_result) -> Stamp:
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def digest_if_unchanged(row: Row | None, st: os.stat_result) -> str | None:
    """The recorded digest when the file's stat is the one recorded with it."""
    if (
        row is not None
        and row[1] == st.st_ino
        and row[2] == st.st_size
        and row[3] == st.st_mtime_ns
    ):
        return row[4]
    return None


def is_racy(st: os.stat_result, seen_ns: int) -> bool:
    """True when the file was modified too shortly before ``seen_ns`` to trust its stat."""
    return st.st_mtime_ns >= seen_ns - RACY_NS


class StatIndex:
    """Stat-keyed digests, keyed by path relative to the workspace root (or absolute)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            try:
                self._conn = self._open()
            except sqlite3.DatabaseError:
                self._discard()
                self._conn = self._open()
        return self._conn

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        try:
            enable_wal(conn)
            conn.execute("PRAGMA synchronous=OFF")  # a lost write costs one re-hash
            if conn.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
                conn.execute("DROP TABLE IF EXISTS stats")
                conn.execute("DROP TABLE IF EXISTS trees")
                conn.execute(
                    "CREATE TABLE stats (path TEXT PRIMARY KEY, ino INTEGER, size INTEGER, "
                    "mtime_ns INTEGER, digest TEXT) WITHOUT ROWID"
                )
                conn.execute(
                    "CREATE TABLE trees (path TEXT PRIMARY KEY, stats TEXT, hash TEXT, "
                    "files INTEGER, size INTEGER) WITHOUT ROWID"
                )
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except BaseException:
            conn.close()
            raise
        return conn

    def _discard(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(f"{self.path}{suffix}")

    def _query(self, sql: str, params: tuple[str, ...]) -> list[Row]:
        with self._lock:
            try:
                return self._connection().execute(sql, params).fetchall()
            except sqlite3.DatabaseError:
                self._discard()
                return []

    def load(self, key: str) -> dict[str, Row]:
        """Rows ``(key, inode, size, mtime_ns, digest)`` for ``key`` and, when it names a
        folder (ends with ``/``), for all keys below it."""
        if key.endswith("/"):
            # '0' sorts right after '/': the half-open range holds exactly the keys below.
            rows = self._query(
                "SELECT * FROM stats WHERE path >= ? AND path < ?", (key, key[:-1] + "0")
            )
        else:
            rows = self._query("SELECT * FROM stats WHERE path = ?", (key,))
        return {r[0]: r for r in rows}

    def record(self, rows: Iterable[tuple[str, Stamp, str]]) -> None:
        """Remember ``(key, stamp, digest)`` rows (callers filter out racy ones)."""
        # In key order: B-tree appends, a third faster than random inserts for 100,000 rows.
        self._write(
            "INSERT OR REPLACE INTO stats VALUES (?, ?, ?, ?, ?)",
            sorted([(k, s[0], s[1], s[2], d) for k, s, d in rows]),
        )

    def snapshot(self, key: str) -> TreeSnapshot | None:
        """The tree snapshot of the folder ``key`` (see the module docstring), if any."""
        rows: list[Any] = self._query(
            "SELECT stats, hash, files, size FROM trees WHERE path = ?", (key,)
        )
        return TreeSnapshot(*rows[0]) if rows else None

    def record_snapshot(self, key: str, snapshot: TreeSnapshot) -> None:
        self._write("INSERT OR REPLACE INTO trees VALUES (?, ?, ?, ?, ?)", [(key, *snapshot)])

    def forget(self, keys: Iterable[str]) -> None:
        self._write("DELETE FROM stats WHERE path = ?", [(k,) for k in keys])

    def _write(self, sql: str, data: list[tuple[object, ...]]) -> None:
        if not data:
            return
        with self._lock:
            try:
                conn = self._connection()
                conn.execute("BEGIN")
                conn.executemany(sql, data)
                conn.execute("COMMIT")
            except sqlite3.OperationalError:
                # Locked by another process for longer than the timeout: the index is a cache.
                with contextlib.suppress(sqlite3.Error):
                    self._connection().execute("ROLLBACK")
            except sqlite3.DatabaseError:
                self._discard()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
