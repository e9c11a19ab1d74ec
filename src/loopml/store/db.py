"""The metadata database: one SQLAlchemy code path for SQLite (file or memory) and PostgreSQL.

SQLite runs in WAL mode with a busy timeout; write transactions start with ``BEGIN IMMEDIATE``
so a reader never has to upgrade its lock mid-transaction (the cause of most "database is
locked" errors), and a write that still finds the database busy is retried with backoff.
The schema is migrated by Alembic the first time a process opens the database.
"""

from __future__ import annotations

import contextlib
import fcntl
import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, Table, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, OperationalError
from sqlalchemy.pool import StaticPool

from loopml.config import STATE_DIR, ensure_state_dir
from loopml.exceptions import InvalidConfig, StoreNotFound, StoreUnavailable, missing_dependency
from loopml.store.migrations import head_revision
from loopml.store.wal import enable_wal

T = TypeVar("T")

_RETRYABLE = (
    "database is locked",
    "database is busy",
    "deadlock detected",
    "could not serialize",
    "database table is locked",
)
_MAX_WAIT_S = 120.0


def upsert(dialect: str, table: Table) -> Any:
    """``INSERT … ON CONFLICT`` for ``table`` in SQLite or PostgreSQL (same API on both)."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)


def _is_retryable(exc: BaseException) -> bool:
    message = str(exc).lower()
    return any(fragment in message for fragment in _RETRYABLE)


class Database:
    """A metadata database reached by URL; opens (and migrates) lazily on first use."""

    def __init__(self, url: str, *, create: bool = True) -> None:
        """``create=False``: a SQLite file that does not exist is an error (StoreNotFound)
        instead of a new, empty store; read-only commands open stores this way."""
        self.url = url
        self.create = create
        try:
            self._url = make_url(url)
        except ArgumentError as exc:
            raise InvalidConfig(
                f"Not a database URL: {url!r}. Use sqlite:///path/to/loopml.db or "
                "postgresql+psycopg://user@host:5432/db"
            ) from exc
        self.dialect = self._url.get_backend_name()
        if self.dialect not in {"sqlite", "postgresql"}:
            raise InvalidConfig(
                f"Unsupported metadata store {self.dialect!r} in {self.safe_url}: "
                "use sqlite:/// or postgresql+psycopg://"
            )
        self.in_memory = self.dialect == "sqlite" and self._url.database in (None, "", ":memory:")
        # One shared connection in memory mode: serialize its use across threads.
        self._lock: contextlib.AbstractContextManager[Any] = (
            threading.RLock() if self.in_memory else contextlib.nullcontext()
        )
        self._engine: Engine | None = None
        self._open_lock = threading.Lock()

    @property
    def safe_url(self) -> str:
        return self._url.render_as_string(hide_password=True)

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            with self._open_lock:
                if self._engine is None:
                    engine = self._create_engine()
                    try:
                        self._migrate(engine)
                    except BaseException:
                        engine.dispose()
                        raise
                    self._engine = engine
        return self._engine

    def connect(self) -> None:
        """Open (and migrate) the database now instead of on first use."""
        _ = self.engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def _create_engine(self) -> Engine:
        try:
            if self.dialect == "sqlite":
                return self._sqlite_engine()
            return create_engine(self._url, pool_pre_ping=True, pool_size=5, max_overflow=10)
        except NoSuchModuleError as exc:
            raise InvalidConfig(f"Unknown database driver in {self.safe_url}: {exc}") from exc
        except ModuleNotFoundError as exc:
            raise missing_dependency("psycopg", "postgres", "A PostgreSQL metadata store") from exc

    def _sqlite_engine(self) -> Engine:
        connect_args = {"check_same_thread": False, "timeout": 30}
        if self.in_memory:
            engine = create_engine(
                "sqlite://", connect_args=connect_args, poolclass=StaticPool, future=True
            )
        else:
            assert self._url.database is not None
            self._ensure_sqlite_file(Path(self._url.database).expanduser())
            engine = create_engine(self._url, connect_args=connect_args, future=True)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves, below
            cur = dbapi_conn.cursor()
            if not self.in_memory:
                enable_wal(cur)
                cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            write = conn.get_execution_options().get("loopml_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine

    def _ensure_sqlite_file(self, path: Path) -> None:
        """Refuse to invent a store: a missing file is created only when ``create`` is set,
        and only in a folder that exists (or the workspace's own ``.loopml/``)."""
        if path.exists():
            return
        if not self.create:
            raise StoreNotFound(
                f"No metadata store at {path} (store URL {self.safe_url}). Run `loopml init` "
                "in the workspace folder to create it, or point --workspace / "
                "LOOPML_STORE_URL at an existing store."
            )
        folder = path.parent
        if folder.name == STATE_DIR and folder.parent.is_dir():
            ensure_state_dir(folder.parent)
        elif not folder.is_dir():
            raise StoreNotFound(
                f"Cannot create the metadata store {path}: the folder {folder} does not exist. "
                "Check the store URL (a typo?) or create the folder first."
            )

    # -- migrations ------------------------------------------------------------------------

    def _current_revision(self, engine: Engine) -> str | None:
        with engine.connect() as conn:
            if not inspect(conn).has_table("alembic_version"):
                return None
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()

    @contextlib.contextmanager
    def _migration_lock(self, engine: Engine) -> Iterator[None]:
        if self.dialect == "postgresql":
            with engine.connect() as conn:
                conn.execute(text("SELECT pg_advisory_lock(7215001)"))
                conn.commit()
                try:
                    yield
                finally:
                    conn.execute(text("SELECT pg_advisory_unlock(7215001)"))
                    conn.commit()
        elif self.in_memory:
            yield
        else:
            assert self._url.database is not None
            lock_path = Path(self._url.database).expanduser().with_suffix(".migrate.lock")
            with lock_path.open("a") as fh:
                fcntl.flock(fh, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(fh, fcntl.LOCK_UN)

    def _migrate(self, engine: Engine) -> None:
        head = head_revision()
        try:
            if self._current_revision(engine) == head:
                return  # fast path: no Alembic import on an up-to-date store
            with self._migration_lock(engine):
                current = self._current_revision(engine)
                if current == head:
                    return
                from loopml.store.migrations import known_revisions, upgrade

                if current is not None and current not in known_revisions():
                    raise StoreUnavailable(
                        f"The metadata store {self.safe_url} is at schema revision {current!r}, "
                        "which this loopml does not know: it was written by a newer loopml. "
                        "Upgrade loopml (pip install -U loopml)."
                    )
                with engine.begin() as conn:
                    upgrade(conn)
        except DBAPIError as exc:
            raise self._unavailable(exc) from exc

    def _unavailable(self, exc: BaseException) -> StoreUnavailable:
        detail = str(getattr(exc, "orig", exc)).strip().splitlines()[0] if str(exc) else ""
        detail = detail.rstrip(".")  # ours follows: one full stop
        return StoreUnavailable(
            f"The metadata store {self.safe_url} is unavailable: {detail}. "
            "Check the URL and that the server is running."
        )

    # -- transactions ----------------------------------------------------------------------

    def transact(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn(conn)`` in one write transaction, retried while the database is busy."""
        deadline = time.monotonic() + _MAX_WAIT_S
        delay = 0.005
        while True:
            try:
                with self._lock, self.engine.connect() as conn:
                    conn.execution_options(loopml_write=True)
                    with conn.begin():
                        return fn(conn)
            except OperationalError as exc:
                if not _is_retryable(exc) or time.monotonic() > deadline:
                    raise self._unavailable(exc) from exc
            except DBAPIError as exc:
                if not _is_retryable(exc) or time.monotonic() > deadline:
                    raise
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 0.25)

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection in a read transaction (a consistent snapshot)."""
        try:
            with self._lock, self.engine.connect() as conn, conn.begin():
                yield conn
        except OperationalError as exc:
            raise self._unavailable(exc) from exc
