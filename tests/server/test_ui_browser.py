"""The web UI in a real browser: Playwright driving Debian's chromium (never a downloaded
one) loads every page, checks the console stays clean and nothing is fetched from another
site, clicks through filter → run → compare → model → lineage, and checks the screenshots
are not blank."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from loopml.workspace import Workspace
from server.test_ui_pages import populate
from services import chromium, require_module, watch_page

COUNT_COLOURS = """
async (data) => {
  const image = new Image();
  image.src = "data:image/png;base64," + data;
  await image.decode();
  const canvas = document.createElement("canvas");
  canvas.width = image.width;
  canvas.height = image.height;
  const context = canvas.getContext("2d");
  context.drawImage(image, 0, 0);
  const pixels = new Uint32Array(
    context.getImageData(0, 0, image.width, image.height).data.buffer
  );
  return new Set(pixels).size;
}
"""


@pytest.fixture
def ui_server(server: Callable[..., str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., str]:
    from loopml.server import app

    monkeypatch.setattr(app, "ROUTES", tuple(r for r in app.ROUTES if "server.ui:" in r[1]))
    return server


@pytest.mark.slow
def test_click_through_the_ui_in_chromium(
    ui_server: Callable[..., str], sqlite_ws: Workspace, tmp_path: Path
) -> None:
    browser_path = chromium()
    sync_api = require_module("playwright.sync_api")
    ids = populate(sqlite_ws, tmp_path)
    url = ui_server(sqlite_ws)

    problems: list[str] = []
    foreign: list[str] = []
    shots: dict[str, int] = {}

    def watch(page: Any) -> None:
        watch_page(page, url, problems, foreign)

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            watch(page)
            counter = browser.new_page()

            def shot(name: str) -> None:
                png = page.screenshot(full_page=True, path=str(tmp_path / f"{name}.png"))
                shots[name] = counter.evaluate(COUNT_COLOURS, base64.b64encode(png).decode())

            # Experiments → the churn runs table.
            page.goto(url + "/", wait_until="load")
            shot("experiments")
            page.click("text=churn")
            page.wait_for_selector("#runs")
            # Filter.
            page.fill("#filter", "params.model = 'rf' and metrics.loss < 0.05")
            page.click("#apply-filter")
            page.wait_for_selector("#runs")
            names = page.locator("a.run-link").all_inner_texts()
            assert names == ["best"], names
            page.fill("#filter", "params.model = 'rf'")
            page.click("#apply-filter")
            page.wait_for_selector("#runs")
            assert sorted(page.locator("a.run-link").all_inner_texts()) == ["best", "second"]
            # Sort by a column header, then pick columns.
            page.click("a.sort:has-text('metrics.loss')")
            page.wait_for_selector("#runs")
            assert page.locator("a.run-link").all_inner_texts() == ["second", "best"]
            shot("runs")
            # Run.
            page.click("a.run-link:has-text('best')")
            page.wait_for_selector("#run-id")
            page.wait_for_function(
                "document.querySelectorAll('figure.chart[data-drawn] canvas').length >= 2"
            )
            assert page.locator("#git-diff").count() == 1
            shot("run")
            # Compare the two.
            page.go_back()
            page.wait_for_selector("#runs")
            for box in page.locator("input[name=runs]").all():
                box.check()
            page.click("#compare-button")
            page.wait_for_selector("#param-diff")
            page.wait_for_function(
                "document.querySelectorAll('figure.chart[data-drawn] canvas').length >= 1"
            )
            assert page.locator("#param-diff tr.differs").count() >= 1  # lr differs
            shot("compare")
            # Model → version → lineage.
            page.click("text=Models")
            page.click("a.model-link:has-text('churn-model')")
            page.wait_for_selector("#versions")
            shot("model")
            page.click("a.version-link:has-text('v1')")
            page.wait_for_selector("#lineage-graph svg")
            assert page.locator("#lineage-graph g.node").count() >= 4  # model, run, data, commit
            shot("lineage")
            page.click("#lineage-graph a:has(g[data-id=run])")
            page.wait_for_selector("#run-id")
            assert page.inner_text("#run-id") == ids["best"]

            # Every other page loads clean.
            for path in (
                f"/runs/{ids['best']}/artifacts?path=plots",
                f"/runs/{ids['best']}/artifacts?path=plots/curve.png",
                f"/runs/{ids['best']}/artifacts?path=table.csv",
                "/pipelines",
                "/pipelines/nightly",
                f"/pipeline-runs/{ids['pipeline_run']}",
                "/data",
                "/data/versions?path=data/raw",
            ):
                page.goto(url + path, wait_until="load")
                assert page.locator("h1").count() == 1, path
            page.wait_for_selector("#data-versions")
            shot("data")
            page.goto(url + "/pipelines/nightly", wait_until="load")
            shot("pipeline")
        finally:
            browser.close()
    assert problems == []
    assert foreign == []  # no CDN, no font, nothing from another site
    for name, colours in shots.items():
        assert colours > 50, (name, colours)  # text, tables, charts: not a blank page
        assert (tmp_path / f"{name}.png").stat().st_size > 5_000, name
