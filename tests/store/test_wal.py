"""enable_wal: connections switching one new SQLite file to WAL at once all succeed."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from loopml.store.wal import enable_wal


def _switch_together(folder: Path, tries: int) -> list[str]:
    errors: list[str] = []

    def switch(path: Path, gate: threading.Barrier) -> None:
        con = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        try:
            gate.wait()
            enable_wal(con)
            mode = con.execute("PRAGMA journal_mode").fetchone()[0]
            if mode != "wal":
                errors.append(f"journal_mode is {mode}")
        except Exception as exc:
            errors.append(repr(exc))
        finally:
            con.close()

    for i in range(tries):
        gate = threading.Barrier(4)
        threads = [
            threading.Thread(target=switch, args=(folder / f"{i}.sqlite", gate)) for _ in range(4)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return errors


def test_four_connections_switching_one_new_file_at_once_all_succeed(tmp_path: Path) -> None:
    # A plain PRAGMA failed here with "database is locked" about once in 20 new files (the
    # busy handler isn't called for it): a partition of a feature materialization was lost so.
    assert _switch_together(tmp_path, 200) == []


def test_a_lock_held_past_the_timeout_is_still_an_error(tmp_path: Path) -> None:
    path = tmp_path / "held.sqlite"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    other = sqlite3.connect(path, timeout=0.05, isolation_level=None)
    started = time.monotonic()
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        enable_wal(other, timeout=0.3)
    assert time.monotonic() - started >= 0.3
    holder.execute("ROLLBACK")
    enable_wal(other, timeout=0.3)
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
