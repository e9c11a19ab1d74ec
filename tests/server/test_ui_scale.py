"""The web UI over a big workspace (slow): the runs page shows one page of the runs
``ws.runs.page`` finds, in its order, and a metric of 1,000,000 points reaches the browser
as about 1,000. Made by the generator of ``benchmarks/server_ui.py`` at a smaller scale."""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from loopml.workspace import Workspace

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "server_ui.py"


def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("server_ui_bench", BENCHMARK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def ui_server(server: Callable[..., str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., str]:
    from loopml.server import app

    monkeypatch.setattr(app, "ROUTES", tuple(r for r in app.ROUTES if "server.ui:" in r[1]))
    return server


@pytest.mark.slow
def test_the_runs_page_of_a_big_experiment_is_one_page_of_the_search(
    ui_server: Callable[..., str], sqlite_ws: Workspace
) -> None:
    exp = bench().generate(sqlite_ws, runs=3000, params=20, metrics=20)
    url = ui_server(sqlite_ws)
    query = {"filter": "metrics.m0 > 0.5 and params.p1 = 'v1'", "order": "metrics.m1 DESC"}
    response = httpx.get(f"{url}/experiments/{exp}", params=query, timeout=60)
    assert response.status_code == 200
    assert float(response.headers["server-timing"].split("dur=")[1]) > 0
    shown = re.findall(r'class="run-link" href="/runs/([0-9a-f]+)"', response.text)
    expected = sqlite_ws.runs.page([exp], query["filter"], [query["order"]], page_size=50).records
    assert shown == [r["run_id"] for r in expected] and len(shown) == 50
    assert 'id="next-page"' in response.text
    # Picked columns only: 2 of the 40 keys.
    picked = httpx.get(
        f"{url}/experiments/{exp}",
        params={**query, "cols": ["metrics.m1", "params.p3"]},
        timeout=60,
    ).text
    assert re.findall(r'<th class="(\w+)">', picked) == ["metrics", "params"]


@pytest.mark.slow
def test_a_million_point_metric_is_drawn_from_about_a_thousand(
    ui_server: Callable[..., str], sqlite_ws: Workspace
) -> None:
    with sqlite_ws.runs.start(experiment="long", name="long") as run:
        run.log_param("points", 1_000_000)
    bench().long_metric(sqlite_ws, run.id, "loss", 1_000_000)
    url = ui_server(sqlite_ws)
    body = httpx.get(f"{url}/runs/{run.id}/history", params={"key": "loss"}, timeout=120).json()
    assert body["total"] == 1_000_000
    assert 500 <= len(body["steps"]) <= 1000 and len(body["values"]) == len(body["steps"])
    assert body["steps"][0] == 0 and body["steps"][-1] == 999_999
    assert body["steps"] == sorted(body["steps"])
    # The curve decays from about 1 to about 0.007: its envelope is kept.
    assert max(body["values"]) > 0.99 and min(body["values"]) < 0.01
    page = httpx.get(f"{url}/runs/{run.id}", timeout=60).text
    assert 'class="chart"' in page
