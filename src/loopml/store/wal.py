"""Turning on SQLite's write-ahead log when several connections open one file at once.

``PRAGMA journal_mode = WAL`` on a database another connection is switching at the same moment
fails with "database is locked" at once: SQLite does not call the busy handler for it (four
threads opening a new file together hit it about once in 200 tries). Every SQLite file loopml
opens from several threads or processes (the metadata store, the online store, the data
index) switches through :func:`enable_wal`, which retries until ``timeout`` seconds.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any


def enable_wal(cursor: Any, timeout: float = 30.0) -> None:
    """Run ``PRAGMA journal_mode = WAL`` on ``cursor`` (a sqlite3 connection or cursor),
    retrying while the file is locked by another connection doing the same, up to ``timeout``
    seconds; then the last error is raised."""
    deadline = time.monotonic() + timeout
    pause = 0.001
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.05)
