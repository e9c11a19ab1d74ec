"""MLflow's proxied artifacts API: uploads streamed into loopml's blob store, run paths as the
run's loopml artifacts, other paths (MLflow 3's logged models) in proxied_artifacts, path
traversal refused, interrupted uploads invisible."""

from __future__ import annotations

import os
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from loopml.server.context import OpenAccess
from loopml.server.errors import ApiError
from loopml.server.mlflow_api.paths import clean_path, list_tree
from loopml.store.blobs import hash_bytes
from loopml.workspace import Workspace
from services import drop_postgres_database, fresh_postgres_url, fresh_s3_bucket, s3_endpoint

ART = "/api/2.0/mlflow-artifacts/artifacts"


@pytest.fixture
def run_path(sqlite_ws: Workspace) -> tuple[Workspace, str, str]:
    """(ws, experiment id, run id) of a run started through loopml."""
    with sqlite_ws.runs.start(experiment="arts", log_environment=False) as run:
        pass
    return sqlite_ws, str(run.experiment_id), run.id


def raw_request(url: str, head: str, body: bytes = b"") -> tuple[int, bytes]:
    """Send a request exactly as written (no client normalising ``..`` away); → (status,
    body)."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(head.encode("latin-1") + b"\r\n" + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    status_line, _, rest = data.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


def test_upload_list_download_delete_on_a_run(
    server: Callable[..., str], run_path: tuple[Workspace, str, str], tmp_path: Path
) -> None:
    ws, exp, run_id = run_path
    url = server(ws)
    base = f"{url}{ART}/{exp}/{run_id}/artifacts"
    data = os.urandom(3 * 1024 * 1024 + 17)  # several chunks
    assert httpx.put(f"{base}/model/weights.bin", content=data).is_success
    assert httpx.put(f"{base}/model/MLmodel", content=b"flavors: {}\n").is_success
    assert httpx.put(f"{base}/notes.txt", content=b"hi").is_success

    # loopml sees the run's files, with their digests.
    infos = {a.path: a for a in ws.runs.list_artifacts(run_id)}
    assert set(infos) == {"model/weights.bin", "model/MLmodel", "notes.txt"}
    assert infos["model/weights.bin"].digest == hash_bytes(data)
    assert infos["model/weights.bin"].size == len(data)

    listing = httpx.get(f"{url}{ART}", params={"path": f"{exp}/{run_id}/artifacts"}).json()
    assert listing == {
        "files": [
            {"path": "model", "is_dir": True},
            {"path": "notes.txt", "is_dir": False, "file_size": 2},
        ]
    }
    inner = httpx.get(f"{url}{ART}", params={"path": f"{exp}/{run_id}/artifacts/model"}).json()
    assert [f["path"] for f in inner["files"]] == ["MLmodel", "weights.bin"]
    file_listing = httpx.get(f"{url}{ART}", params={"path": f"{exp}/{run_id}/artifacts/notes.txt"})
    assert file_listing.json() == {"files": []}

    with httpx.stream("GET", f"{base}/model/weights.bin") as answer:
        assert answer.status_code == 200
        assert answer.headers["content-length"] == str(len(data))
        assert b"".join(answer.iter_bytes()) == data

    # The older listing, by run id, with paths from the run's artifact root.
    old = httpx.get(
        f"{url}/api/2.0/mlflow/artifacts/list", params={"run_id": run_id, "path": "model"}
    ).json()
    assert old["root_uri"] == f"mlflow-artifacts:/{exp}/{run_id}/artifacts"
    assert [f["path"] for f in old["files"]] == ["model/MLmodel", "model/weights.bin"]

    assert httpx.delete(f"{base}/model").is_success
    assert {a.path for a in ws.runs.list_artifacts(run_id)} == {"notes.txt"}
    missing = httpx.get(f"{base}/model/MLmodel")
    assert missing.status_code == 404
    assert missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    assert httpx.delete(f"{base}/model").status_code == 404


def test_logged_model_paths_are_proxied_and_listed_as_a_tree(
    server: Callable[..., str], run_path: tuple[Workspace, str, str]
) -> None:
    ws, exp, _run_id = run_path
    url = server(ws)
    root = f"{exp}/models/m-0123/artifacts"
    files = {"MLmodel": b"flavors: {}\n", "model.pkl": b"\x80\x04pickle", "sub/env.yaml": b"x: 1"}
    for path, data in files.items():
        assert httpx.put(f"{url}{ART}/{root}/{path}", content=data).is_success
    assert list_tree(ws, root) == {p: (hash_bytes(d), len(d)) for p, d in files.items()}
    assert list_tree(ws, f"{root}/sub") == {"env.yaml": (hash_bytes(b"x: 1"), 4)}
    assert list_tree(ws, f"{exp}/models/nothing") == {}
    listing = httpx.get(f"{url}{ART}", params={"path": f"{exp}/models"}).json()
    assert listing == {"files": [{"path": "m-0123", "is_dir": True}]}
    assert httpx.get(f"{url}{ART}/{root}/model.pkl").content == files["model.pkl"]
    assert ws.blobs.get_bytes(hash_bytes(files["MLmodel"])) == files["MLmodel"]
    # The experiment's folder shows its runs with artifacts beside the models.
    assert httpx.put(f"{url}{ART}/{exp}/{_run_id}/artifacts/a.txt", content=b"a").is_success
    top = httpx.get(f"{url}{ART}", params={"path": exp}).json()["files"]
    assert {f["path"] for f in top} == {"models", _run_id}


@pytest.mark.parametrize(
    "target",
    [
        "{exp}/{run}/artifacts/../../../etc/passwd",
        "{exp}/{run}/artifacts/%2e%2e/%2e%2e/x",
        "{exp}/{run}/artifacts/%2E%2E%2Fx",
        "{exp}/{run}/artifacts/%252e%252e/x",
        "{exp}/{run}/artifacts/..%5c..%5cx",
        "{exp}/{run}/artifacts/a\\b",
        "%2Fetc%2Fpasswd",
        "/{exp}/x",
        "C:/x",
        "../{exp}/x",
        "notanexperiment/x",
    ],
)
def test_path_traversal_is_refused(
    server: Callable[..., str], run_path: tuple[Workspace, str, str], target: str
) -> None:
    ws, exp, run_id = run_path
    url = server(ws)
    path = target.format(exp=exp, run=run_id)
    host = urlsplit(url).netloc
    for method in ("PUT", "GET", "DELETE"):
        body = b"evil" if method == "PUT" else b""
        status, answer = raw_request(
            url,
            f"{method} {ART}/{path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n",
            body,
        )
        assert status == 400, (method, path, answer)
        assert b"INVALID_PARAMETER_VALUE" in answer
    status, answer = raw_request(
        url,
        f"GET {ART}?path={path.replace(' ', '%20')} HTTP/1.1\r\nHost: {host}\r\n"
        "Connection: close\r\n",
    )
    assert status == 400, (path, answer)
    assert ws.runs.list_artifacts(run_id) == []
    assert list_tree(ws, "") == {}


@pytest.mark.parametrize("raw", ["a/../b", "/abs", "a\\b", "%2e%2e/x", "a/%252E%252E/b", "x\x00"])
def test_clean_path_refuses(raw: str) -> None:
    with pytest.raises(ApiError) as info:
        clean_path(raw)
    assert info.value.code == "INVALID_PARAMETER_VALUE"


def test_clean_path_drops_empty_and_dot_parts() -> None:
    assert clean_path("1/./a//b/") == "1/a/b"
    assert clean_path("1/a..b/c.") == "1/a..b/c."  # dots inside a name are a name


@pytest.fixture
def upload_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Where the server (in this process) keeps uploads while they arrive."""
    folder = tmp_path / "uploads"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    yield folder


def _requests_done(url: str, route: str, status: int) -> float:
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if (
            line.startswith("loopml_server_requests_total{")
            and f'route="{route}"' in line
            and f'status="{status}"' in line
        ):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_an_upload_cut_off_half_way_leaves_nothing(
    server: Callable[..., str], run_path: tuple[Workspace, str, str], upload_tmp: Path
) -> None:
    ws, exp, run_id = run_path
    url = server(ws)
    parts = urlsplit(url)
    sent = os.urandom(256 * 1024)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(
            (
                f"PUT {ART}/{exp}/{run_id}/artifacts/big.bin HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                f"Content-Length: {4 * 1024 * 1024}\r\n\r\n"
            ).encode()
            + sent
        )
        # Wait until the server has started storing the upload, then hang up on it.
        deadline = time.monotonic() + 20
        while not any(upload_tmp.iterdir()):
            assert time.monotonic() < deadline, "the upload never started"
            time.sleep(0.01)
    deadline = time.monotonic() + 20
    while _requests_done(url, "artifacts.upload", 400) < 1:
        assert time.monotonic() < deadline, "the server never saw the upload end"
        time.sleep(0.02)
    assert ws.runs.list_artifacts(run_id) == []
    assert list(upload_tmp.iterdir()) == []  # its partial file is gone
    assert not ws.blobs.exists(hash_bytes(sent))
    listing = httpx.get(f"{url}{ART}", params={"path": f"{exp}/{run_id}/artifacts"}).json()
    assert listing == {"files": []}
    # The same upload, complete, then works.
    assert httpx.put(f"{url}{ART}/{exp}/{run_id}/artifacts/big.bin", content=sent).is_success
    assert [a.path for a in ws.runs.list_artifacts(run_id)] == ["big.bin"]


def test_an_upload_over_the_limit_is_413(
    server: Callable[..., str], run_path: tuple[Workspace, str, str], upload_tmp: Path
) -> None:
    ws, exp, run_id = run_path
    ws.settings = ws.settings.with_overrides(
        server=replace(ws.settings.server, max_artifact_bytes=1000)
    )
    url = server(ws)
    answer = httpx.put(f"{url}{ART}/{exp}/{run_id}/artifacts/a.bin", content=b"x" * 1001)
    assert answer.status_code == 413
    assert answer.json()["error_code"] == "REQUEST_TOO_LARGE"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(3):
            yield b"y" * 600

    answer = httpx.put(f"{url}{ART}/{exp}/{run_id}/artifacts/b.bin", content=chunks())
    assert answer.status_code == 413
    assert ws.runs.list_artifacts(run_id) == []
    assert list(upload_tmp.iterdir()) == []


def test_a_corrupted_blob_is_never_served_whole(
    server: Callable[..., str], run_path: tuple[Workspace, str, str]
) -> None:
    ws, exp, run_id = run_path
    url = server(ws)
    data = os.urandom(2 * 1024 * 1024 + 5)
    assert httpx.put(f"{url}{ART}/{exp}/{run_id}/artifacts/w.bin", content=data).is_success
    blob = Path(ws.blobs.path_of(hash_bytes(data)))
    blob.chmod(0o644)
    blob.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with (
        pytest.raises(httpx.HTTPError),
        httpx.stream("GET", f"{url}{ART}/{exp}/{run_id}/artifacts/w.bin") as answer,
    ):
        b"".join(answer.iter_bytes())


def test_unknown_runs_and_experiments_are_404(
    server: Callable[..., str], run_path: tuple[Workspace, str, str]
) -> None:
    ws, exp, run_id = run_path
    url = server(ws)
    for path in (f"{exp}/{'0' * 32}/artifacts/x", f"{int(exp) + 1}/{run_id}/artifacts/x", "9999/x"):
        answer = httpx.put(f"{url}{ART}/{path}", content=b"x")
        assert answer.status_code == 404, path
        assert answer.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"


class _Denied(OpenAccess):
    """Every check fails: who may not read gets the same 404 as an unknown id."""

    def __init__(self) -> None:
        self.checked: list[tuple[str, str, str]] = []

    def check(self, conn: Any, kind: Any, key: str, level: Any) -> None:
        self.checked.append((kind, key, level))
        raise ApiError("PERMISSION_DENIED", f"no {level} on {kind} {key}")

    def readable(self, conn: Any, kind: Any) -> set[str] | None:
        return set()


def test_every_artifact_route_checks_access(
    server: Callable[..., str], run_path: tuple[Workspace, str, str]
) -> None:
    ws, exp, run_id = run_path
    access = _Denied()
    url = server(ws, access=access)
    base = f"{url}{ART}/{exp}/{run_id}/artifacts"
    calls = [
        ("PUT", f"{base}/a.txt", "edit"),
        ("GET", f"{base}/a.txt", "read"),
        ("DELETE", f"{base}/a.txt", "edit"),
        ("GET", f"{url}{ART}?path={exp}/{run_id}/artifacts", "read"),
    ]
    for method, target, level in calls:
        access.checked.clear()
        answer = httpx.request(method, target, content=b"a" if method == "PUT" else None)
        assert answer.status_code == 403, (method, target)
        assert access.checked == [("experiment", exp, level)]
    assert httpx.get(f"{url}{ART}").json() == {"files": []}  # the root lists nothing unreadable
    assert ws.runs.list_artifacts(run_id) == []


@pytest.mark.postgres
@pytest.mark.s3
def test_the_mlflow_client_on_postgres_and_s3(
    server: Callable[..., str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mlflow = pytest.importorskip("mlflow")
    database = fresh_postgres_url()
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint())
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    folder = tmp_path / "team"
    folder.mkdir()
    (folder / "loopml.toml").write_text(
        f'[store]\nurl = "{database}"\n\n[artifacts]\nurl = "s3://{fresh_s3_bucket()}/blobs"\n'
    )
    ws = Workspace.init(folder)
    try:
        url = server(ws)
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        fluent = pytest.importorskip("mlflow.tracking.fluent")
        monkeypatch.setattr(fluent, "_active_experiment_id", None)
        monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
        mlflow.set_tracking_uri(url)
        data = tmp_path / "data.bin"
        data.write_bytes(os.urandom(1024 * 1024 + 3))
        mlflow.set_experiment("team")
        with mlflow.start_run() as run:
            mlflow.log_params({"lr": 0.1})
            mlflow.log_metrics({"loss": 0.5}, step=1)
            mlflow.log_artifact(str(data), "inputs")
        record = ws.runs.get(run.info.run_id)
        assert record.params == {"lr": "0.1"} and record.metrics == {"loss": 0.5}
        (info,) = ws.runs.list_artifacts(run.info.run_id)
        assert info.path == "inputs/data.bin"
        assert ws.blobs.get_bytes(info.digest) == data.read_bytes()
        back = mlflow.artifacts.download_artifacts(
            run_id=run.info.run_id, artifact_path="inputs/data.bin", dst_path=str(tmp_path / "b")
        )
        assert Path(back).read_bytes() == data.read_bytes()
        found = mlflow.search_runs(filter_string="metrics.loss < 1", search_all_experiments=True)
        assert found["run_id"].tolist() == [run.info.run_id]
    finally:
        mlflow.set_tracking_uri(None)
        ws.close()
        drop_postgres_database(database)
