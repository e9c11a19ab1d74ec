"""The web UI's ``/status`` page over HTTP and in a real browser: where the loop stands and
its maturity level, as ``loopml status`` prints it, with only what the caller may read."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from loopml.monitoring.settings import MonitorSettings
from loopml.workspace import Workspace
from server.test_ui_browser import COUNT_COLOURS
from server.test_ui_pages import OnlyAccess, get, text_of
from services import chromium, require_module, watch_page
from status.test_status import RULE, by_pipeline


@pytest.fixture
def ui_server(server: Callable[..., str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., str]:
    """``server`` with only the UI mounted."""
    from loopml.server import app

    monkeypatch.setattr(app, "ROUTES", tuple(r for r in app.ROUTES if "server.ui:" in r[1]))
    return server


@pytest.fixture
def loop(default_ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    """A workspace at level 1: a pipeline registered churn's Production version, deployed as
    ``churn`` and watched by an alert rule, with no alert trigger and no gate yet."""
    monkeypatch.chdir(default_ws.root)
    default_ws.settings = default_ws.settings.with_overrides(
        monitor=MonitorSettings(alerts=(RULE,))
    )
    version = by_pipeline(default_ws)
    default_ws.models.promote("churn", version)
    default_ws.deployments.create("churn", "churn@production")
    return default_ws


def test_the_status_page_shows_each_model_pipelines_and_the_grade(
    ui_server: Callable[..., str], loop: Workspace
) -> None:
    url = ui_server(loop)
    html = get(f"{url}/status")
    page = text_of(html)
    assert "Maturity: level 1 (automated training pipeline)" in page
    assert "Missing for level 2:" in page and "no drift alert is wired" in page
    assert (
        'href="/models/churn/versions/1"' in html
        and "(promoted; its gate checked only the signature)" in page
    )
    assert "pipeline train_churn , run" in page
    assert "churn rev 1, single: primary churn@production 100%" in page
    assert "no window computed ; rules: input drift" in page
    assert 'id="status-pipelines"' in html and 'href="/pipelines/train_churn"' in html
    # Linked from every page's navigation, and marked there when open.
    assert '<a href="/status" class="on">Status</a>' in html
    assert '<a href="/status" >Status</a>' in get(f"{url}/models")


def test_the_status_page_shows_only_what_the_caller_may_read(
    ui_server: Callable[..., str], loop: Workspace
) -> None:
    url = ui_server(loop, access=OnlyAccess("0", "other-model"))
    page = text_of(get(f"{url}/status"))
    assert "churn" not in page and "train_churn" not in page
    assert "Maturity: level 0 (manual)" in page and "nothing is registered yet" in page


def test_an_empty_workspace_says_what_to_run_first(
    ui_server: Callable[..., str], sqlite_ws: Workspace
) -> None:
    page = text_of(get(f"{ui_server(sqlite_ws)}/status"))
    assert "No model registered and no pipeline run yet" in page and "loopml demo" in page


@pytest.mark.slow
def test_the_status_page_in_chromium(
    ui_server: Callable[..., str], loop: Workspace, tmp_path: Path
) -> None:
    browser_path = chromium()
    sync_api = require_module("playwright.sync_api")
    url = ui_server(loop)
    problems: list[str] = []
    foreign: list[str] = []

    def watch(page: Any) -> None:
        watch_page(page, url, problems, foreign)

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            watch(page)
            page.goto(url + "/models", wait_until="load")
            page.click("header.top nav a:has-text('Status')")
            page.wait_for_selector("#maturity")
            assert page.inner_text("#maturity h2").startswith("Maturity: level 1")
            assert page.locator("#missing li").count() == 3
            png = page.screenshot(full_page=True, path=str(tmp_path / "status.png"))
            counter = browser.new_page()
            colours = counter.evaluate(COUNT_COLOURS, base64.b64encode(png).decode())
            # From the status to the pipeline that trained the Production version.
            page.click("#status-pipelines a:has-text('train_churn')")
            page.wait_for_selector("h1")
            assert page.url.endswith("/pipelines/train_churn")
        finally:
            browser.close()
    assert problems == [] and foreign == []
    assert colours > 50  # text and tables: not a blank page
