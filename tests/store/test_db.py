"""The metadata-store contract, run on SQLite (file and memory) and PostgreSQL."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import insert, inspect, select, text

from loopml.exceptions import InvalidConfig, StoreUnavailable
from loopml.store import migrations
from loopml.store.db import Database
from loopml.store.migrations import MigrationsBroken, head_of, head_revision
from loopml.store.tables import load_all
from loopml.tracking.tables import experiments

DB_BACKENDS = ["sqlite-file", "sqlite-memory", "postgres"]


@pytest.fixture(params=DB_BACKENDS)
def db(request: pytest.FixtureRequest, db_url_factory: Callable[[str], str]) -> Database:
    database = Database(db_url_factory(request.param))
    yield database
    database.close()


def test_head_revision_is_alembics_head() -> None:
    from alembic.script import ScriptDirectory

    alembic_head = ScriptDirectory.from_config(migrations._config()).get_current_head()
    assert head_revision() == alembic_head


def _migration(folder: Path, name: str, header: str) -> None:
    (folder / name).write_text(f'"""{name}"""\n\nfrom alembic import op\n\n{header}\n')


def test_head_of_follows_the_chain_as_alembic_writes_it(tmp_path: Path) -> None:
    _migration(tmp_path, "0001_a.py", 'revision = "a"\ndown_revision = None')
    _migration(tmp_path, "0002_b.py", "revision: str = 'b'  # two\ndown_revision: str | None = 'a'")
    _migration(tmp_path, "0003_c.py", 'revision = "c"\ndown_revision = "a"')
    (tmp_path / "__init__.py").write_text('revision = "not a migration"\n')
    with pytest.raises(MigrationsBroken, match=r"2 heads \(b, c\)"):
        head_of(tmp_path)
    _migration(tmp_path, "0004_merge.py", 'revision = "d"\ndown_revision = ("b", "c")')
    assert head_of(tmp_path) == "d"


def test_head_of_refuses_a_script_without_a_plain_revision(tmp_path: Path) -> None:
    _migration(tmp_path, "0001_a.py", "revision = make_id()\ndown_revision = None")
    with pytest.raises(MigrationsBroken, match="0001_a.py"):
        head_of(tmp_path)


def test_migrated_schema_matches_tables(db: Database) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    metadata = load_all()
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
        version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        migrated = set(inspect(conn).get_table_names()) - {"alembic_version"}
    assert diff == []
    assert set(metadata.tables) == migrated
    assert {"runs", "model_versions", "pipeline_runs", "events", "schemas"} <= migrated
    assert version == head_revision()


def test_transact_commits_and_rolls_back(db: Database) -> None:
    db.transact(lambda c: c.execute(insert(experiments).values(name="a", created_at=1)))
    with pytest.raises(RuntimeError):

        def failing(conn):  # type: ignore[no-untyped-def]
            conn.execute(insert(experiments).values(name="b", created_at=1))
            raise RuntimeError("boom")

        db.transact(failing)
    with db.read() as conn:
        names = conn.execute(select(experiments.c.name)).scalars().all()
    assert names == ["a"]


def test_reopening_is_idempotent(db_url_factory: Callable[[str], str], tmp_path: Path) -> None:
    url = db_url_factory("sqlite-file")
    for _ in range(3):
        database = Database(url)
        database.connect()
        database.close()
    with Database(url).read() as conn:
        assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1


def test_unknown_newer_revision_is_refused(db_url_factory: Callable[[str], str]) -> None:
    url = db_url_factory("sqlite-file")
    database = Database(url)
    database.transact(lambda c: c.execute(text("UPDATE alembic_version SET version_num='9999'")))
    database.close()
    with pytest.raises(StoreUnavailable, match="newer loopml"):
        Database(url).connect()


def test_bad_urls() -> None:
    with pytest.raises(InvalidConfig, match="Not a database URL"):
        Database("not a url")
    with pytest.raises(InvalidConfig, match="Unsupported"):
        Database("mysql://x@localhost/db")


def test_unreachable_postgres_is_a_clear_error() -> None:
    database = Database("postgresql+psycopg://nobody:secret@127.0.0.1:1/none")
    with pytest.raises(StoreUnavailable) as info:
        database.connect()
    assert "secret" not in str(info.value)
    assert "127.0.0.1:1" in str(info.value)


@pytest.mark.slow
def test_write_waits_for_a_lock_held_by_another_connection(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    database = Database(f"sqlite:///{path}")
    database.connect()
    blocker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    blocker.execute("BEGIN EXCLUSIVE")

    def release() -> None:
        time.sleep(0.5)
        blocker.execute("COMMIT")

    thread = threading.Thread(target=release)
    thread.start()
    db_insert = insert(experiments).values(name="waited", created_at=1)
    database.transact(lambda c: c.execute(db_insert))
    thread.join()
    with database.read() as conn:
        assert conn.execute(select(experiments.c.name)).scalar() == "waited"
    database.close()


@pytest.mark.slow
def test_concurrent_first_open_migrates_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'race.db'}"
    code = (
        "import sys; from loopml.store.db import Database; "
        "d = Database(sys.argv[1]); d.connect(); print('ok')"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, url], stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert outputs == ["ok"] * 4
    assert all(p.returncode == 0 for p in procs)
