"""Registry workspaces whose blobs live in a local folder or on the S3-compatible test server.

A model package is bytes in the blob store, so register, load, promote, rollback, lineage and
the model cache run on both. The S3 workspace is configured the way a team configures one: the
``s3://`` URL in ``loopml.toml`` and the endpoint in ``AWS_ENDPOINT_URL``, so reopening the
folder, or a child process opening it, reaches the same bucket. Under ``CI=true`` a missing S3
service fails the test (``services.fresh_s3_bucket``), never skips it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from loopml.workspace import Workspace
from services import drop_postgres_database, fresh_postgres_url, fresh_s3_bucket, s3_endpoint

BLOB_BACKENDS = ["local", pytest.param("s3", marks=pytest.mark.s3)]
STORE_BACKENDS = [
    "sqlite-file",
    "sqlite-memory",
    pytest.param("postgres", marks=pytest.mark.postgres),
]


@pytest.fixture
def registry_ws_factory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Workspace]]:
    """``make(blobs, store="sqlite-file")`` → an open workspace folder (closed after the test).

    ``blobs`` is ``"local"`` (the folder's default blob store) or ``"s3"`` (a fresh bucket on
    the test server); ``store`` is the metadata backend.
    """
    opened: list[Workspace] = []
    databases: list[str] = []

    def make(blobs: str, store: str = "sqlite-file") -> Workspace:
        folder = tmp_path / f"ws{len(opened)}"
        folder.mkdir()
        lines = []
        if store == "postgres":
            databases.append(fresh_postgres_url())
            lines.append(f'[store]\nurl = "{databases[-1]}"\n')
        elif store == "sqlite-memory":
            lines.append('[store]\nurl = "sqlite://"\n')
        elif store != "sqlite-file":
            raise ValueError(store)
        if blobs == "s3":
            monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint())
            monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
            monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
            lines.append(f'[artifacts]\nurl = "s3://{fresh_s3_bucket()}/blobs"\n')
        elif blobs != "local":
            raise ValueError(blobs)
        (folder / "loopml.toml").write_text("\n".join(lines))
        ws = Workspace.init(folder)  # keeps the loopml.toml written above
        opened.append(ws)
        return ws

    yield make
    for ws in opened:
        ws.close()
    for url in databases:
        drop_postgres_database(url)


@pytest.fixture(params=BLOB_BACKENDS)
def blob_backend(request: pytest.FixtureRequest) -> str:
    """Where the blobs live: ``"local"`` or ``"s3"``."""
    return str(request.param)


@pytest.fixture
def registry_ws(blob_backend: str, registry_ws_factory: Callable[..., Workspace]) -> Workspace:
    """A SQLite workspace folder whose blobs are in a local folder, then on S3."""
    return registry_ws_factory(blob_backend)


@pytest.fixture(params=STORE_BACKENDS)
def registry_store_ws(
    request: pytest.FixtureRequest,
    blob_backend: str,
    registry_ws_factory: Callable[..., Workspace],
) -> Workspace:
    """Every metadata backend crossed with every blob backend (the registry contract)."""
    return registry_ws_factory(blob_backend, request.param)
