"""The external test services (``.ci/services.sh``) are up and usable through ``services``."""

from __future__ import annotations

import uuid

import pytest

from services import (
    drop_postgres_database,
    fresh_postgres_url,
    fresh_s3_bucket,
    postgres_database,
    postgres_url,
    psycopg_conninfo,
    redis_url,
    require_module,
    s3_filesystem,
)


@pytest.mark.postgres
def test_postgres_select_one() -> None:
    psycopg = require_module("psycopg")
    with psycopg.connect(psycopg_conninfo(postgres_url())) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


@pytest.mark.postgres
def test_postgres_url_works_with_sqlalchemy() -> None:
    require_module("psycopg")
    sqlalchemy = require_module("sqlalchemy")
    engine = sqlalchemy.create_engine(postgres_url())
    try:
        with engine.connect() as conn:
            assert conn.execute(sqlalchemy.text("SELECT 1")).scalar_one() == 1
    finally:
        engine.dispose()


def _database_exists(name: str) -> bool:
    psycopg = require_module("psycopg")
    with psycopg.connect(psycopg_conninfo(postgres_url())) as conn:
        row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    return row is not None


@pytest.mark.postgres
def test_fresh_postgres_database_create_and_drop() -> None:
    psycopg = require_module("psycopg")
    url = fresh_postgres_url()
    assert url.startswith("postgresql+psycopg://")
    name = url.rsplit("/", 1)[-1]
    assert name != postgres_url().rsplit("/", 1)[-1]
    try:
        assert _database_exists(name)
        # Left open on purpose: dropping must still work with a connection attached.
        conn = psycopg.connect(psycopg_conninfo(url), autocommit=True)
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()
        assert tables == (0,)
        conn.execute("CREATE TABLE t (x int)")
    finally:
        drop_postgres_database(url)
    assert not _database_exists(name)
    drop_postgres_database(url)  # idempotent
    conn.close()


@pytest.mark.postgres
def test_postgres_database_context_manager() -> None:
    with postgres_database() as url:
        name = url.rsplit("/", 1)[-1]
        assert _database_exists(name)
    assert not _database_exists(name)


@pytest.mark.postgres
def test_drop_refuses_main_database() -> None:
    with pytest.raises(ValueError, match="refusing"):
        drop_postgres_database(postgres_url())


@pytest.mark.s3
@pytest.mark.slow
def test_s3_bucket_put_get() -> None:
    bucket = fresh_s3_bucket()
    assert bucket != fresh_s3_bucket()
    fs = s3_filesystem()
    key = f"{bucket}/dir/{uuid.uuid4().hex}.bin"
    payload = b"loopml\x00" * 1000
    fs.pipe(key, payload)
    assert fs.cat(key) == payload
    assert fs.find(bucket) == [key]


def test_redis_set_get() -> None:
    url = redis_url()
    redis = require_module("redis")
    client = redis.Redis.from_url(url)
    try:
        key = f"loopml-test:{uuid.uuid4().hex}"
        assert client.ping()
        client.set(key, b"value", ex=60)
        assert client.get(key) == b"value"
        client.delete(key)
    finally:
        client.close()
