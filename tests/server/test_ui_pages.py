"""The web UI's pages over HTTP, against a real server over a workspace with runs, artifacts,
a registered model with a gate verdict, a pipeline run and versioned data."""

from __future__ import annotations

import re
import struct
import subprocess
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from loopml.exceptions import PromotionBlocked
from loopml.registry.gates import GatePolicy
from loopml.registry.models import PythonModel
from loopml.tracking.environment import code_file
from loopml.workspace import Workspace

PIPELINE_FILE = """
from loopml.pipelines import pipeline, task


@task
def load(day: str) -> list:
    return [1, 2, 3]


@task
def features(rows: list) -> list:
    return [r * 2 for r in rows]


@task
def labels(rows: list) -> list:
    return [r % 2 for r in rows]


@task
def train(x: list, y: list) -> float:
    return sum(x) / len(x)


@pipeline(schedule="0 3 * * *")
def nightly(day: str = "2026-11-01"):
    rows = load(day)
    return train(features(rows), labels(rows))
"""


class Doubler(PythonModel):
    def predict(self, model_input: Any) -> Any:
        return model_input["x"] * 2


class Tripler(PythonModel):
    def predict(self, model_input: Any) -> Any:
        return model_input["x"] * 3


def png(width: int = 8, height: int = 8) -> bytes:
    """A small valid PNG: a red-green gradient."""
    raw = b"".join(
        b"\x00" + b"".join(bytes([x * 30 % 256, y * 30 % 256, 90]) for x in range(width))
        for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=Ada", "-c", "user.email=ada@example.com", *args],
        cwd=root,
        check=True,
        capture_output=True,
    )


def populate(ws: Workspace, tmp_path: Path) -> dict[str, Any]:
    """Runs (one with every kind of artifact, a git diff and a data input), a model with two
    versions and a gate verdict, a pipeline run and a versioned data folder. → their ids."""
    import pandas as pd

    root = Path(ws.root)
    git(root, "init", "-q")
    (root / "data" / "raw").mkdir(parents=True)
    (root / "data" / "raw" / "rows.csv").write_text("a,b\n1,2\n")
    ws.data.add(root / "data" / "raw")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "first data")
    (root / "data" / "raw" / "rows.csv").write_text("a,b\n1,2\n3,4\n")
    ws.data.add(root / "data" / "raw")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "more rows")

    code = tmp_path / "code"
    code.mkdir()
    git(code, "init", "-q")
    (code / "train.py").write_text("lr = 0.1\n")
    git(code, "add", "-A")
    git(code, "commit", "-q", "-m", "train")
    (code / "train.py").write_text("lr = 0.2  # tuned\n")

    files = tmp_path / "files"
    files.mkdir()
    (files / "notes.txt").write_text("hello <b>world</b>\n")
    pd.DataFrame({"city": ["Oslo", "Lima"], "rows": [3, 4]}).to_csv(
        files / "table.csv", index=False
    )
    pd.DataFrame({"x": range(30), "y": [i * i for i in range(30)]}).to_parquet(
        files / "frame.parquet"
    )
    (files / "plots").mkdir()
    (files / "plots" / "curve.png").write_bytes(png())

    ids: dict[str, Any] = {}
    with code_file(code / "train.py"), ws.runs.start(experiment="churn", name="best") as run:
        run.log_params({"lr": 0.1, "model": "rf", "note": "<script>alert(1)</script>"})
        for step in range(50):
            run.log_metric("loss", 1.0 / (step + 1), step=step)
            run.log_metric("acc", step / 50, step=step)
        run.set_tag("team", "<i>growth</i>")
        for name in ("notes.txt", "table.csv", "frame.parquet"):
            run.log_artifact(files / name)
        run.log_artifact(files / "plots")
        run.log_input(root / "data" / "raw", name="raw")
        ids["best"] = run.id
        with ws.runs.start(experiment="churn", name="child", nested=True) as child:
            child.log_metric("loss", 0.5)
            ids["child"] = child.id
    with ws.runs.start(experiment="churn", name="second") as run:
        run.log_params({"lr": 0.01, "model": "rf"})
        for step in range(20):
            run.log_metric("loss", 2.0 / (step + 1), step=step)
        ids["second"] = run.id
    with ws.runs.start(experiment="other", name="elsewhere") as run:
        run.log_param("lr", 0.5)
        ids["elsewhere"] = run.id
    ids["churn"] = ws.experiments.get("churn").id
    ids["other"] = ws.experiments.get("other").id

    # Champion v1 (MAE 0.25 on the holdout), then a worse candidate v2 (MAE 2.25): blocked.
    pd.DataFrame({"x": [1, 2, 3, 4], "y": [2, 4, 6, 9]}).to_csv(root / "holdout.csv", index=False)
    policy = GatePolicy(metric="mae", holdout=str(root / "holdout.csv"), label="y")
    example = pd.DataFrame({"x": [1]})
    ws.models.register(
        "churn-model", Doubler(), run_id=ids["best"], description="first", input_example=example
    )
    ws.models.promote("churn-model", 1, policy=policy, reason="first champion")
    ws.models.register("churn-model", Tripler(), run_id=ids["second"], input_example=example)
    with pytest.raises(PromotionBlocked):
        ws.models.promote("churn-model", 2, policy=policy)
    ws.models.set_alias("churn-model", "challenger", 2)

    (root / "pipes.py").write_text(PIPELINE_FILE)
    result = ws.pipelines.run(str(root / "pipes.py") + ":nightly", executor="inline")
    ids["pipeline_run"] = result.id
    return ids


@pytest.fixture
def ui_server(server: Callable[..., str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., str]:
    """``server`` with only the UI mounted: these tests don't depend on the other areas."""
    from loopml.server import app

    monkeypatch.setattr(app, "ROUTES", tuple(r for r in app.ROUTES if "server.ui:" in r[1]))
    return server


@pytest.fixture
def ui(
    ui_server: Callable[..., str], sqlite_ws: Workspace, tmp_path: Path
) -> tuple[str, dict[str, Any]]:
    ids = populate(sqlite_ws, tmp_path)
    return ui_server(sqlite_ws), ids


def get(url: str, status: int = 200) -> str:
    response = httpx.get(url, timeout=30)
    assert response.status_code == status, (url, response.status_code, response.text[:500])
    return response.text


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_every_page_renders_and_escapes_what_users_logged(ui: tuple[str, dict[str, Any]]) -> None:
    url, ids = ui
    home = get(f"{url}/")
    assert "churn" in home and "other" in home
    runs = get(f"{url}/experiments/{ids['churn']}")
    assert "best" in runs and "second" in runs and "elsewhere" not in runs
    run = get(f"{url}/runs/{ids['best']}")
    # Logged values are text, never markup.
    assert "<script>alert(1)</script>" not in run and "&lt;script&gt;alert(1)&lt;/script&gt;" in run
    assert "<i>growth</i>" not in run and "&lt;i&gt;growth&lt;/i&gt;" in run
    assert "lr = 0.2  # tuned" in run  # the git diff the environment recorded
    assert "notes.txt" in run and "plots/" in run
    assert f'<a href="/runs/{ids["child"]}">child</a>' in run  # the nested run
    assert f'href="/runs/{ids["best"]}"' in get(f"{url}/runs/{ids['child']}")  # its parent
    inputs = run[run.index('id="inputs"') :]
    assert re.search(r"<code>[0-9a-f]{64}</code>", inputs)
    compare = get(f"{url}/compare?runs={ids['best']}&runs={ids['second']}")
    assert "0.01" in compare and "0.1" in compare
    models = get(f"{url}/models")
    assert "churn-model" in models
    model = get(f"{url}/models/churn-model")
    assert "@challenger" in model and "first champion" in model
    version = get(f"{url}/models/churn-model/versions/1")
    assert "<svg" in version and "Gate verdicts" in version and "passed" in version
    assert f"/runs/{ids['best']}" in version
    blocked = text_of(get(f"{url}/models/churn-model/versions/2"))
    # Each check, with the candidate's and the champion's score on the holdout.
    assert "beats_champion FAILED 2.25 0.25" in blocked and "against champion v1" in blocked
    pipelines = get(f"{url}/pipelines")
    assert "nightly" in pipelines
    pipeline = get(f"{url}/pipelines/nightly")
    assert "<svg" in pipeline and "0 3 * * *" in pipeline
    for task in ("load", "features", "labels", "train"):
        assert f'data-id="{task}"' in pipeline
    prun = get(f"{url}/pipeline-runs/{ids['pipeline_run']}")
    assert "COMPLETED" in prun and 'id="tasks"' in prun
    data = get(f"{url}/data")
    assert "data/raw" in data
    versions = get(f"{url}/data/versions?path=data/raw")
    assert "first data" in versions and "more rows" in versions


def test_the_runs_table_filters_sorts_picks_columns_and_pages(
    ui: tuple[str, dict[str, Any]],
) -> None:
    url, ids = ui
    base = f"{url}/experiments/{ids['churn']}"
    filtered = get(f"{base}?filter=params.lr+%3D+%270.01%27")
    assert "second" in filtered and ">best<" not in filtered
    bad = get(f"{base}?filter=metrics.acc+%3E%3E+1")
    assert 'id="filter-error"' in bad
    ordered = get(f"{base}?order=metrics.loss+ASC&cols=metrics.loss&cols=params.model")
    names = re.findall(r'class="run-link" href="/runs/[^"]+">([^<]+)<', ordered)
    assert names == ["best", "second", "child"]  # latest loss: 0.02, 0.1, 0.5
    assert "metrics.loss ↑" in ordered
    header = re.findall(r"<th class=\"(\w+)\">", ordered)
    assert header == ["metrics", "params"]
    first = get(f"{base}?size=25")
    assert "next →" not in first
    # Pages: one run per page is not a size the UI offers; 25 is the smallest.
    assert get(f"{base}?size=7", 400)


def test_pagination_moves_through_every_run(
    ui_server: Callable[..., str], sqlite_ws: Workspace
) -> None:
    for i in range(30):
        with sqlite_ws.runs.start(experiment="many", name=f"run-{i:02d}") as run:
            run.log_metric("i", i)
    url = ui_server(sqlite_ws)
    exp = sqlite_ws.experiments.get("many").id
    seen: list[str] = []
    page_url: str | None = f"{url}/experiments/{exp}?size=25&order=metrics.i+ASC"
    while page_url:
        html = get(page_url)
        seen += re.findall(r'class="run-link" href="/runs/[^"]+">([^<]+)<', html)
        found = re.search(r'<a href="([^"]+)" id="next-page">', html)
        page_url = url + found.group(1).replace("&amp;", "&") if found else None
    assert seen == [f"run-{i:02d}" for i in range(30)]


def test_artifact_previews(
    ui: tuple[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url, ids = ui
    base = f"{url}/runs/{ids['best']}/artifacts"
    text = get(f"{base}?path=notes.txt")
    assert "hello &lt;b&gt;world&lt;/b&gt;" in text
    table = get(f"{base}?path=table.csv")
    assert "<th>city</th>" in table and "<td>Lima</td>" in table
    parquet = get(f"{base}?path=frame.parquet")
    assert "<th>y</th>" in parquet and "<td>361</td>" in parquet and "of 30" in parquet
    folder = get(f"{base}?path=plots")
    assert "plots/curve.png" in folder
    image = get(f"{base}?path=plots/curve.png")
    assert "<img" in image
    raw = httpx.get(f"{url}/runs/{ids['best']}/artifact?path=plots/curve.png")
    assert raw.status_code == 200 and raw.headers["content-type"] == "image/png"
    assert raw.content == png() and "sandbox" in raw.headers["content-security-policy"]
    download = httpx.get(f"{url}/runs/{ids['best']}/artifact?path=frame.parquet")
    assert download.headers["content-disposition"].startswith("attachment")
    # Over the in-memory size, the same bytes come streamed.
    from loopml.server.ui import tracking

    monkeypatch.setattr(tracking, "IN_MEMORY_BYTES", 100)
    streamed = httpx.get(f"{url}/runs/{ids['best']}/artifact?path=frame.parquet")
    assert streamed.content == (tmp_path / "files" / "frame.parquet").read_bytes()
    assert get(f"{base}?path=../etc/passwd", 404)
    assert get(f"{url}/runs/{ids['best']}/artifact?path=nope.txt", 404)


def test_unknown_ids_get_the_404_page(ui: tuple[str, dict[str, Any]]) -> None:
    url, ids = ui
    for path in (
        "/runs/0123456789abcdef",
        "/experiments/9999",
        "/models/nope",
        "/models/churn-model/versions/99",
        "/pipelines/nope",
        "/pipeline-runs/ffffffffffff",
        "/data/versions?path=../../etc",
        "/no/such/page",
    ):
        html = get(url + path, 404)
        assert "404" in html and 'id="error-message"' in html, path
    # The API keeps MLflow's error shape for unknown endpoints.
    api = httpx.post(f"{url}/api/2.0/mlflow/nothing/here", json={})
    assert api.status_code == 404 and api.json()["error_code"] == "ENDPOINT_NOT_FOUND"
    assert get(f"{url}/compare?runs={ids['best']}", 400)


def test_static_files_are_served_from_the_package(ui: tuple[str, dict[str, Any]]) -> None:
    url, _ = ui
    for path in ("/static/ui.js", "/static/ui.css", "/static/vendor/uplot/uPlot.iife.min.js"):
        response = httpx.get(url + path)
        assert response.status_code == 200 and len(response.content) > 500, path
    html = get(f"{url}/runs/{ui[1]['best']}")
    # No page refers to another site.
    assert not re.search(r"(src|href)=\"(https?:)?//", html)


class OnlyAccess:
    """An access policy that lets the caller read one experiment and one model (what the
    auth part's AuthAccess does per user), answering 404 for the rest."""

    def __init__(self, experiment: str, model: str) -> None:
        self.allowed = {"experiment": {experiment}, "model": {model}}
        self.checked: list[tuple[str, str, str]] = []

    def middleware(self, app: Any) -> Any:
        return app

    def principal(self, conn: Any) -> Any:
        from loopml.server.context import Principal

        return Principal("reader")

    def check(self, conn: Any, kind: str, key: str, level: str) -> None:
        from loopml.server.errors import ApiError

        self.checked.append((kind, key, level))
        if key not in self.allowed[kind]:
            raise ApiError("RESOURCE_DOES_NOT_EXIST", f"No {kind} {key!r}.")

    def readable(self, conn: Any, kind: str) -> set[str] | None:
        return set(self.allowed[kind])

    def created(self, conn: Any, kind: str, key: str) -> None:
        return None


def test_pages_show_only_what_the_caller_may_read(
    ui_server: Callable[..., str], sqlite_ws: Workspace, tmp_path: Path
) -> None:
    ids = populate(sqlite_ws, tmp_path)
    sqlite_ws.models.register("secret-model", Doubler())
    access = OnlyAccess(str(ids["churn"]), "churn-model")
    url = ui_server(sqlite_ws, access=access)
    home = get(f"{url}/")
    assert f'href="/experiments/{ids["churn"]}"' in home
    assert f'href="/experiments/{ids["other"]}"' not in home
    get(f"{url}/experiments/{ids['other']}", 404)
    get(f"{url}/runs/{ids['elsewhere']}", 404)
    get(f"{url}/runs/{ids['elsewhere']}/artifacts", 404)
    get(f"{url}/runs/{ids['elsewhere']}/history?key=x", 404)
    get(f"{url}/compare?runs={ids['best']}&runs={ids['elsewhere']}", 404)
    get(f"{url}/runs/{ids['best']}")
    assert ("experiment", str(ids["churn"]), "read") in access.checked
    models = get(f"{url}/models")
    assert "churn-model" in models and "secret-model" not in models
    get(f"{url}/models/secret-model", 404)
    get(f"{url}/models/secret-model/versions/1", 404)
    get(f"{url}/models/churn-model/versions/1")
    # The pipeline's tracking run is in its own experiment ("nightly"), not readable here.
    assert "nightly" not in get(f"{url}/pipelines")
    get(f"{url}/pipeline-runs/{ids['pipeline_run']}", 404)
