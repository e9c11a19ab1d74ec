"""Helpers for tests that need the external test services started by ``.ci/services.sh``.

The services are found through environment variables that the script prints::

    eval "$(bash .ci/services.sh)"

When a variable is missing, a test asking for that service is skipped on a developer machine
and fails under CI (``CI=true``), so a CI run can never pass by silently skipping them.

Typical use in a test module (``tests/`` is on ``sys.path`` under pytest's default import
mode, so this module is imported as ``services``)::

    from services import fresh_postgres_url, drop_postgres_database

    @pytest.fixture
    def pg_url() -> Iterator[str]:
        url = fresh_postgres_url()
        yield url
        drop_postgres_database(url)

or, equivalently, ``with postgres_database() as url: ...``.
"""

from __future__ import annotations

import importlib
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any, NoReturn
from urllib.parse import unquote, urlsplit, urlunsplit

import pytest

POSTGRES_ENV = "LOOPML_TEST_POSTGRES_URL"
REDIS_ENV = "LOOPML_TEST_REDIS_URL"
S3_ENV = "LOOPML_TEST_S3_ENDPOINT"

HINT = 'run eval "$(bash .ci/services.sh)"'


def in_ci() -> bool:
    """True when running under CI (``CI=true``), where missing services are failures."""
    return os.environ.get("CI") == "true"


def _missing(message: str) -> NoReturn:
    if in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def chromium() -> str:
    """Debian's chromium for Playwright, or a skip (a failure under CI, which installs it)."""
    import shutil

    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        _missing("chromium is not installed: apt-get install -y chromium (.ci/run does)")
    return path


def watch_page(page: Any, origin: str, problems: list[str], foreign: list[str]) -> None:
    """Collect what a Playwright ``page`` does wrong: console errors and warnings, page
    errors and HTTP errors into ``problems``, and requests leaving ``origin`` (a page that
    must load nothing from elsewhere) into ``foreign``."""
    page.on(
        "console",
        lambda m: (
            problems.append(f"{page.url}: {m.type}: {m.text}")
            if m.type in {"error", "warning"}
            else None
        ),
    )
    page.on("pageerror", lambda e: problems.append(f"{page.url}: pageerror: {e}"))
    page.on(
        "request",
        lambda r: None if r.url.startswith((origin, "data:")) else foreign.append(r.url),
    )
    page.on(
        "response",
        lambda r: problems.append(f"{r.url}: HTTP {r.status}") if r.status >= 400 else None,
    )


def _require_env(var: str, what: str) -> str:
    value = os.environ.get(var, "").strip()
    if not value:
        _missing(f"{what} test service missing ({var} is not set); {HINT}")
    return value


def require_module(name: str) -> ModuleType:
    """Import ``name``; skip the test if it is not installed, or fail under CI."""
    if not in_ci():
        module: ModuleType = pytest.importorskip(name)
        return module
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        pytest.fail(
            f"python package {name!r} is not installed ({exc}); pip install -e '.[all,dev]'",
            pytrace=False,
        )


def postgres_url() -> str:
    """SQLAlchemy URL (``postgresql+psycopg://...``) of the test PostgreSQL database."""
    return _require_env(POSTGRES_ENV, "PostgreSQL")


def redis_url() -> str:
    """URL (``redis://host:port/db``) of the test Redis server."""
    return _require_env(REDIS_ENV, "Redis")


def s3_endpoint() -> str:
    """HTTP endpoint of the S3-compatible (moto) test server."""
    return _require_env(S3_ENV, "S3 (moto)")


# --------------------------------------------------------------------------- PostgreSQL


def psycopg_conninfo(url: str) -> str:
    """Turn a SQLAlchemy URL (``postgresql+psycopg://...``) into a libpq URI for psycopg."""
    parts = urlsplit(url)
    scheme = parts.scheme.split("+", 1)[0]
    if scheme not in ("postgresql", "postgres"):
        raise ValueError(f"not a PostgreSQL URL: {url!r}")
    return urlunsplit(parts._replace(scheme="postgresql"))


def _database_name(url: str) -> str:
    name = unquote(urlsplit(url).path.lstrip("/"))
    if not name:
        raise ValueError(f"PostgreSQL URL names no database: {url!r}")
    return name


def _with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


def fresh_postgres_url() -> str:
    """Create a brand-new empty database on the test server; return its SQLAlchemy URL.

    Drop it again with :func:`drop_postgres_database` (or use :func:`postgres_database`).
    """
    base = postgres_url()
    psycopg = require_module("psycopg")
    from psycopg import sql

    name = f"loopml_test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(psycopg_conninfo(base), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return _with_database(base, name)


def drop_postgres_database(url: str) -> None:
    """Drop the database named by ``url`` (made by :func:`fresh_postgres_url`).

    Idempotent and safe in finalizers: a database that is already gone is fine, and
    connections still open to it (e.g. a leftover SQLAlchemy pool) are terminated.
    Refuses to drop the main test database itself.
    """
    base = postgres_url()
    name = _database_name(url)
    if name == _database_name(base):
        raise ValueError(f"refusing to drop the main test database {name!r}")
    psycopg = require_module("psycopg")
    from psycopg import sql

    with psycopg.connect(psycopg_conninfo(base), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@contextmanager
def postgres_database() -> Iterator[str]:
    """Context manager: a fresh empty database's SQLAlchemy URL, dropped on exit."""
    url = fresh_postgres_url()
    try:
        yield url
    finally:
        drop_postgres_database(url)


# --------------------------------------------------------------------------- S3


def s3_filesystem() -> Any:
    """An s3fs filesystem pointed at the moto test server (s3fs is the project's own S3
    client, so the tests need no boto3)."""
    endpoint = s3_endpoint()
    s3fs = require_module("s3fs")
    return s3fs.S3FileSystem(
        key=os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
        secret=os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
        client_kwargs={"endpoint_url": endpoint},
        skip_instance_cache=True,
    )


def fresh_s3_bucket() -> str:
    """Create a uniquely named, empty bucket on the moto test server; return its name."""
    name = f"loopml-test-{uuid.uuid4().hex[:16]}"
    s3_filesystem().mkdir(name)
    return name
