"""The monitoring report: what it shows (worst features first, pooled histograms over the
frozen bins, alerts of the period, the CBPE estimate named as one), that every user string
is escaped, that it stays small with many windows × 50 features, a clear error before any
window is computed, the CLI, and that it renders in headless Chromium with no console error
and a screenshot that is not blank."""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from loopml.cli.main import cli
from loopml.monitoring.alerts import Alert, AlertRule
from loopml.monitoring.profile import FeatureProfile, Profile, Reference
from loopml.monitoring.report import (
    MAX_POINTS,
    NoWindows,
    ReportData,
    render,
    render_report,
    summarise,
    write_report,
)
from loopml.monitoring.settings import MonitorSettings
from loopml.monitoring.stats import psi
from loopml.monitoring.windows import WindowResult
from loopml.workspace import Workspace
from services import chromium, require_module

T0 = datetime(2026, 11, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
AT = datetime(2026, 12, 1, tzinfo=UTC)


def numeric_profile(name: str, bins: int = 10) -> FeatureProfile:
    return FeatureProfile(
        name,
        "numeric",
        "float64",
        0.0,
        edges=tuple(float(i) for i in range(1, bins)),
        proportions=tuple([1.0 / bins] * bins),
        min=0.0,
        max=float(bins),
        mean=bins / 2,
        std=1.0,
    )


def reference(
    features: list[FeatureProfile], predictions: FeatureProfile | None = None
) -> Reference:
    profile = Profile({f.name: f for f in features}, predictions=predictions, rows=1000)
    return Reference("churn", 1, profile, 1000, "train.parquet", T0)


def window(
    index: int,
    shares: dict[str, list[float]],
    *,
    rows: int = 100,
    psis: dict[str, float] | None = None,
    extra: dict[tuple[str, str], float] | None = None,
    categorical: dict[str, tuple[list[str], list[float], list[float]]] | None = None,
    warnings: tuple[str, ...] = (),
) -> WindowResult:
    """Window ``index`` (hours after T0) of churn/1 with these current shares per numeric
    feature (reference: uniform) and (buckets, reference, current) per categorical one."""
    features: dict[str, dict[str, object]] = {}
    metrics: dict[tuple[str, str], float] = {("", "rows"): float(rows)}
    for name, current in shares.items():
        expected = [1.0 / len(current)] * len(current)
        features[name] = {
            "kind": "numeric",
            "band": "none",
            "rows": rows,
            "current_proportions": current,
            "reference_proportions": expected,
            "buckets": [],
        }
        metrics[(name, "psi")] = (psis or {}).get(name, psi(expected, current))
        metrics[(name, "null_rate")] = 0.0
    for name, (buckets, expected, current) in (categorical or {}).items():
        features[name] = {
            "kind": "categorical",
            "band": "none",
            "rows": rows,
            "current_proportions": current,
            "reference_proportions": expected,
            "buckets": buckets,
        }
        metrics[(name, "psi")] = psi(expected, current)
    metrics.update(extra or {})
    return WindowResult(
        "churn",
        T0 + HOUR * index,
        T0 + HOUR * (index + 1),
        "ok",
        rows,
        "churn/1",
        metrics,
        warnings,
        {"features": features, "warnings": list(warnings)},
    )


def alert(message: str = "input drift on churn", rule: str = "input drift") -> Alert:
    return Alert(
        1,
        rule,
        "churn",
        "critical",
        "max(psi) > 0.25",
        0.4,
        message,
        T0 + HOUR,
        T0 + 2 * HOUR,
        AT,
    )


# -- what it computes and shows ---------------------------------------------------------------


def test_the_period_pools_shares_weighted_by_rows_and_orders_worst_first() -> None:
    ref = reference([numeric_profile("age", 2), numeric_profile("fee", 2)])
    windows = [
        window(0, {"age": [0.4, 0.6], "fee": [0.5, 0.5]}, rows=300),
        window(1, {"age": [0.0, 1.0], "fee": [0.45, 0.55]}, rows=100),
    ]
    age, fee = summarise(windows, ref)
    assert (age.name, fee.name) == ("age", "fee")  # age moved more: first
    assert age.current == pytest.approx([0.3, 0.7])  # weighted by rows (unweighted: 0.2)
    assert age.counted == 400
    assert age.psi == pytest.approx(psi([0.5, 0.5], [0.3, 0.7]))
    assert age.band == "moderate"  # psi ≈ 0.17: between the default bands
    assert age.worst_psi == pytest.approx(psi([0.5, 0.5], [0.0, 1.0]))
    assert age.last_psi == age.worst_psi and age.worst_band == "significant"
    assert age.labels == ["≤ 1", "> 1"]
    assert fee.band == "none"


def test_a_null_share_lowers_a_windows_weight_and_categories_pool_by_name() -> None:
    ref = reference([numeric_profile("age", 2)])
    half_null = window(0, {"age": [1.0, 0.0]}, extra={("age", "null_rate"): 0.5})
    full = window(1, {"age": [0.0, 1.0]})
    [age] = summarise([half_null, full], ref)
    assert age.counted == 150 and age.current == pytest.approx([50 / 150, 100 / 150])

    cats = {"plan": (["a", "b", "__other__"], [0.5, 0.5, 0.0], [0.5, 0.25, 0.25])}
    later = {"plan": (["a", "b", "__other__"], [0.5, 0.5, 0.0], [0.0, 0.5, 0.5])}
    plan = {
        s.name: s
        for s in summarise(
            [window(0, {}, categorical=cats), window(1, {}, categorical=later)], reference([])
        )
    }["plan"]
    assert plan.kind == "categorical"
    assert dict(zip(plan.labels, plan.current, strict=True)) == pytest.approx(
        {"a": 0.25, "b": 0.375, "__other__": 0.375}
    )
    assert plan.band == "significant"


def test_the_page_has_every_part_and_no_external_resource() -> None:
    ref = reference(
        [numeric_profile("age"), numeric_profile("fee")],
        predictions=numeric_profile("__prediction__", 2),
    )
    shifted = [0.0] * 8 + [0.5, 0.5]
    windows = [
        window(
            i,
            {"age": shifted if i > 2 else [0.1] * 10, "fee": [0.1] * 10},
            extra={
                ("", "requests"): 100.0,
                ("", "p50_ms"): 3.0,
                ("", "p99_ms"): 20.0 + i,
                ("", "error_rate"): 0.01 * i,
                ("", "accuracy"): 0.9 - 0.05 * i if i < 3 else math.nan,
                ("", "estimated_accuracy"): 0.88,
            },
        )
        for i in range(6)
    ]
    page = render(ReportData("churn", windows, ref, [alert()]), generated=AT)
    for part in (
        "Drift summary",
        "Alerts (1)",
        "Latency (ms)",
        "Error rate",
        "Classification</figcaption>",
        "accuracy (estimate)",
        "<strong>estimate</strong>",
        "PSI over time",
        "Reference vs current",
        "2026-11-01T00:00+00:00 to 2026-11-01T06:00+00:00",
        "generated 2026-12-01T00:00+00:00",
    ):
        assert part in page, part
    summary = page.split("Drift summary", 1)[1].split("</table>", 1)[0]
    assert summary.index(">age<") < summary.index(">fee<")  # worst first
    assert 'band-significant">significant' in summary and 'band-none">none' in summary
    assert (
        page.count("<svg") == 4 + 1 + 2
    )  # 4 over time, PSI, 2 histograms (no logged predictions: none)
    assert not re.search(r"(src|href)=\"(?!data:)", page)  # nothing fetched: no CDN, no file
    assert "<script" not in page and "@import" not in page and "url(" not in page


def test_every_user_string_is_escaped() -> None:
    evil = '<img src=x onerror="alert(1)">'
    ref = reference([numeric_profile(evil, 2)])
    page = render(
        ReportData(
            evil,
            [window(0, {evil: [0.2, 0.8]}, warnings=(f"field {evil} missing",))],
            ref,
            [alert(message=f"drift of {evil}", rule=evil)],
        ),
        generated=AT,
    )
    assert evil not in page
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page


@pytest.mark.slow
def test_many_windows_and_fifty_features_stay_small() -> None:
    """A month of half-hour windows × 50 features: aggregates only, under 2 MB."""
    names = [f"feature_{i:02d}" for i in range(50)]
    ref = reference([numeric_profile(n) for n in names], predictions=numeric_profile("p", 2))
    windows = []
    for i in range(30 * 24 * 2):
        drift = min(i / 4000, 0.09)
        shares = {n: [0.1 - drift] * 5 + [0.1 + drift] * 5 for n in names}
        extra = {("", "p99_ms"): 20.0 + i % 7, ("", "error_rate"): 0.0, ("", "requests"): 50.0}
        psis = {n: drift * (1 + k / 10) for k, n in enumerate(names)}
        windows.append(window(i, shares, rows=230, extra=extra, psis=psis))
    page = render(ReportData("churn", windows, ref, [alert()]), generated=AT)
    size = len(page.encode())
    assert size < 2_000_000, size
    assert f"More than {MAX_POINTS} windows" in page
    assert page.count('class="hist"') == 50


# -- from the store ----------------------------------------------------------------------------


@pytest.fixture
def report_ws(tmp_path: Path) -> Iterator[Workspace]:
    """A workspace folder: churn/1 deployed with its reference, 3 hours of normal traffic, 3
    drifted (x moves by 2, a category never seen), labels for the first four, an alert rule;
    its windows computed."""
    from monitoring.traffic import HOUR as TRAFFIC_HOUR
    from monitoring.traffic import START, deploy, features, label, log

    ws = Workspace.init(tmp_path / "project")
    rule = AlertRule("input drift", "max(psi) > 0.25", deployment="churn", severity="critical")
    ws.settings = ws.settings.with_overrides(monitor=MonitorSettings(alerts=(rule,)))
    deploy(ws)
    for h in range(6):
        drifted = h >= 3
        frame = features(
            150,
            seed=20 + h,
            shift=2.0 if drifted else 0.0,
            categories=("a", "q") if drifted else None,
        )
        ids = log(
            ws,
            frame,
            start=START + TRAFFIC_HOUR * h,
            prefix=f"h{h}-",
            errors=h,
            spacing=timedelta(seconds=20),
        )
        if h < 4:
            labels = {i: int(v > 0.5) for i, v in zip(ids, frame["x"], strict=True)}
            label(ws, labels, at=START + TRAFFIC_HOUR * h + timedelta(minutes=50))
    ws.monitors.run("churn", window="1h", now=START + TRAFFIC_HOUR * 7)
    yield ws
    ws.close()


@pytest.mark.slow
def test_a_report_of_stored_windows(report_ws: Workspace, tmp_path: Path) -> None:
    from monitoring.traffic import START

    out = tmp_path / "out"
    page = report_ws.monitors.report("churn", out / "r.html")
    assert (out / "r.html").read_text() == page
    assert [p.name for p in out.iterdir()] == ["r.html"]  # no temporary file left
    summary = page.split("Drift summary", 1)[1].split("</table>", 1)[0]
    first = re.findall(r"<tr><td>([^<]+)</td>", summary)
    assert first[0] in ("x", "c") and set(first) == {"x", "z", "c", "(predictions)"}
    assert "significant" in summary
    assert "Alerts (1)" in page and "input drift" in page and "critical" in page
    assert "accuracy (estimate)" in page and "Labels joined per window" in page
    # --since narrows the period: the three drifted windows only
    later = render_report("churn", since=START + timedelta(hours=3), workspace=report_ws)
    assert "3 window(s) of 1h" in later
    with pytest.raises(NoWindows, match="from 2027-01-01T00:00\\+00:00 until now"):
        write_report(
            "churn", tmp_path / "x.html", since="2027-01-01T00:00+00:00", workspace=report_ws
        )
    assert not (tmp_path / "x.html").exists()


@pytest.mark.slow
def test_no_window_yet_is_a_clear_error(tmp_path: Path) -> None:
    from monitoring.traffic import deploy

    ws = Workspace.init(tmp_path / "project")
    deploy(ws)
    with pytest.raises(NoWindows, match=r"run `loopml monitor run churn` first\.$"):
        ws.monitors.report("churn")
    out = CliRunner().invoke(
        cli, ["-w", str(ws.root), "monitor", "report", "churn", "-o", str(tmp_path / "r.html")]
    )
    ws.close()
    assert out.exit_code == 1
    assert not (tmp_path / "r.html").exists()
    assert out.stderr.strip().splitlines() == [
        "error: No monitoring windows computed for deployment 'churn': run "
        "`loopml monitor run churn` first."
    ]


@pytest.mark.slow
def test_the_cli_writes_the_report(report_ws: Workspace, tmp_path: Path) -> None:
    target = tmp_path / "out" / "report.html"
    args = ["-w", str(report_ws.root)]
    out = CliRunner().invoke(
        cli, [*args, "monitor", "report", "churn", "-o", str(target), "--json"]
    )
    assert out.exit_code == 0, out.output
    shown = json.loads(out.stdout)
    assert shown["windows"] == 6 and shown["alerts"] == 1
    assert shown["bytes"] == target.stat().st_size and shown["start"].endswith("+00:00")
    out = CliRunner().invoke(cli, [*args, "monitor", "report", "churn", "-o", str(target)])
    assert out.exit_code == 0 and out.stdout.startswith(f"wrote {target} (")


# -- in a browser ------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_report_renders_in_headless_chromium(report_ws: Workspace, tmp_path: Path) -> None:
    browser_path = chromium()
    sync_api = require_module("playwright.sync_api")

    target = tmp_path / "report.html"
    report_ws.monitors.report("churn", target)
    problems: list[str] = []
    requests: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("console", lambda m: problems.append(f"{m.type}: {m.text}"))
            page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(target.as_uri(), wait_until="load")
            heading = page.inner_text("h1")
            charts = page.locator("svg").count()
            png = page.screenshot(full_page=True)
            # Count the screenshot's colours in a blank page of the same browser (a canvas
            # decodes the PNG): no image library needed.
            counter = browser.new_page()
            colours, height = counter.evaluate(COUNT_COLOURS, base64.b64encode(png).decode())
        finally:
            browser.close()
    assert problems == []
    assert requests == [target.as_uri()]  # the page alone: no font, script or image fetched
    assert heading == "Monitoring report: churn" and charts >= 8
    assert colours > 200, colours  # text, bars, lines in several colours: not blank
    assert height > 2000  # the whole report, not one screen


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
  return [new Set(pixels).size, image.height];
}
"""
