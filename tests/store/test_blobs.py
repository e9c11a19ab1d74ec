"""The blob-store contract, run on a local folder, memory:// and an S3-compatible server."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import blake3
import pytest

from loopml.exceptions import BlobNotFound, CorruptBlob, InvalidInput, StoreUnavailable
from loopml.store.blobs import BlobStore, hash_file

BLOB_BACKENDS = ["file", "memory", "s3"]


@pytest.fixture(params=BLOB_BACKENDS)
def store(
    request: pytest.FixtureRequest, blob_url_factory: Callable[[str], tuple[str, dict[str, Any]]]
) -> BlobStore:
    url, options = blob_url_factory(request.param)
    return BlobStore(url, **options)


def _corrupt(store: BlobStore, digest: str) -> None:
    path = store.path_of(digest)
    if store.is_local:
        os.chmod(path, 0o644)
        Path(path).write_bytes(b"tampered")
    else:
        store.fs.pipe_file(path, b"tampered")


def test_bytes_round_trip(store: BlobStore) -> None:
    digest = store.put_bytes(b"hello")
    assert digest == blake3.blake3(b"hello").hexdigest()
    assert store.exists(digest)
    assert store.get_bytes(digest) == b"hello"
    assert store.put_bytes(b"hello") == digest  # idempotent


def test_file_round_trip(store: BlobStore, tmp_path: Path) -> None:
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(5 * 2**20))  # past the memory-mapped hashing threshold
    digest = store.put_file(src)
    assert digest == hash_file(src) == blake3.blake3(src.read_bytes()).hexdigest()
    out = store.get_file(digest, tmp_path / "out" / "copy.bin")
    assert out.read_bytes() == src.read_bytes()


def test_missing_blob(store: BlobStore, tmp_path: Path) -> None:
    digest = blake3.blake3(b"never stored").hexdigest()
    assert not store.exists(digest)
    with pytest.raises(BlobNotFound, match=digest):
        store.get_bytes(digest)
    with pytest.raises(BlobNotFound):
        store.get_file(digest, tmp_path / "x")
    with pytest.raises(BlobNotFound):
        store.delete(digest)
    assert not (tmp_path / "x").exists()


def test_delete(store: BlobStore) -> None:
    digest = store.put_bytes(b"bye")
    store.delete(digest)
    assert not store.exists(digest)


def test_corruption_is_detected_and_never_served(store: BlobStore, tmp_path: Path) -> None:
    digest = store.put_bytes(b"original bytes")
    _corrupt(store, digest)
    with pytest.raises(CorruptBlob, match="corrupted"):
        store.get_bytes(digest)
    with pytest.raises(CorruptBlob):
        store.get_file(digest, tmp_path / "dst.bin")
    assert not (tmp_path / "dst.bin").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_invalid_digest(store: BlobStore) -> None:
    with pytest.raises(InvalidInput, match="Not a blob digest"):
        store.get_bytes("../../etc/passwd")


def test_local_writes_leave_no_temporary_files(tmp_path: Path) -> None:
    store = BlobStore(str(tmp_path / "b"))
    for i in range(20):
        store.put_bytes(f"object {i}".encode())
    leftovers = [p for p in (tmp_path / "b").rglob(".tmp-*")]
    assert leftovers == []
    digest = store.put_bytes(b"ro")
    assert not os.access(store.path_of(digest), os.W_OK) or os.geteuid() == 0
    assert oct(os.stat(store.path_of(digest)).st_mode & 0o777) == "0o444"


@pytest.mark.slow
def test_unreachable_s3_is_a_clear_error() -> None:
    store = BlobStore(
        "s3://nobucket/x",
        client_kwargs={"endpoint_url": "http://127.0.0.1:1"},
        config_kwargs={"connect_timeout": 1, "retries": {"max_attempts": 1}},
    )
    with pytest.raises(StoreUnavailable, match="unavailable"):
        store.put_bytes(b"x")


@pytest.mark.slow
def test_s3_endpoint_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from services import fresh_s3_bucket, s3_endpoint

    bucket = fresh_s3_bucket()
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint())  # what the README tells teams to set
    store = BlobStore(f"s3://{bucket}/env", skip_instance_cache=True)
    digest = store.put_bytes(b"via AWS_ENDPOINT_URL")
    assert store.get_bytes(digest) == b"via AWS_ENDPOINT_URL"


def test_locate_hands_engines_a_readable_location(store: BlobStore, tmp_path: Path) -> None:
    import fsspec

    digest = store.put_bytes(b"a,b\n1,2\n")
    loc = store.locate(digest)
    if store.is_local:
        assert loc.path is not None and Path(loc.path).read_bytes() == b"a,b\n1,2\n"
        assert loc.url == loc.path
    else:
        assert loc.path is None and "://" in loc.url
        # Any fsspec-speaking engine opens it from the URL and options alone.
        with fsspec.open(loc.url, "rb", **loc.storage_options) as fh:
            assert fh.read() == b"a,b\n1,2\n"
        assert loc.filesystem.cat_file(loc.url) == b"a,b\n1,2\n"
    with pytest.raises(BlobNotFound):
        store.locate(blake3.blake3(b"never stored").hexdigest())


def test_locate_parquet_reads_in_place(store: BlobStore, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    src = tmp_path / "t.parquet"
    pq.write_table(pa.table({"x": [1, 2, 3]}), src)
    loc = store.locate(store.put_file(src))
    if loc.path is not None:
        table = pq.read_table(loc.path)
    else:
        table = pq.read_table(loc.url, filesystem=loc.filesystem)
    assert table.column("x").to_pylist() == [1, 2, 3]
