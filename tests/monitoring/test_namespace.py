"""``ws.monitors``: references, run, windows, the metric time series, notebook drift and
alerts through one namespace."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest

from loopml.monitoring.namespace import Monitors
from loopml.monitoring.rules import AlertRule
from loopml.monitoring.settings import MonitorSettings
from loopml.workspace import Workspace
from monitoring.traffic import HOUR, START, deploy, features, log


def test_the_workspace_has_one_monitors_namespace(sqlite_ws: Workspace) -> None:
    assert isinstance(sqlite_ws.monitors, Monitors)
    assert sqlite_ws.monitors is sqlite_ws.monitors
    assert sqlite_ws.monitors.metrics("nothing").empty
    assert sqlite_ws.monitors.windows("nothing") == []


@pytest.mark.slow
def test_notebook_drift_needs_no_store() -> None:
    reference = pd.DataFrame({"x": range(1000), "c": ["a", "b"] * 500})
    current = pd.DataFrame({"x": range(500, 1500), "c": ["a", "b"] * 500})
    table = Monitors.drift(reference, current)
    assert table.loc[0, "feature"] == "x" and table.loc[0, "band"] == "significant"


@pytest.mark.slow
def test_reference_run_windows_metrics_and_alerts(sqlite_ws: Workspace) -> None:
    ws = sqlite_ws
    deploy(ws)
    reference = ws.monitors.reference("churn/1")
    assert reference is not None and set(reference.profile.features) == {"x", "z", "c"}
    assert ws.monitors.reference("churn") == reference  # the latest version
    assert ws.monitors.reference("models:/churn/1") == reference  # a URI as it is
    rule = AlertRule(name="drift", when="max(psi) > 0.25", deployment="churn")
    ws.settings = ws.settings.with_overrides(monitor=MonitorSettings(alerts=(rule,), window="30m"))
    every = timedelta(seconds=30)
    log(ws, features(100, seed=30), start=START, spacing=every)
    log(ws, features(100, seed=31, shift=3.0), start=START + HOUR, prefix="d", spacing=every)
    results = ws.monitors.run("churn", now=START + 2 * HOUR + timedelta(minutes=1))
    assert [r.end - r.start for r in results] == [timedelta(minutes=30)] * 4  # [monitor] window
    assert [w.start for w in ws.monitors.windows("churn", since=START + HOUR)] == [
        START + HOUR,
        START + HOUR + timedelta(minutes=30),
    ]
    series = ws.monitors.metrics("churn", metric="psi", feature="x")
    assert list(series.columns) == ["start", "end", "status", "model", "feature", "metric", "value"]
    assert len(series) == 4 and set(series["model"]) == {"churn/1"}
    assert series["value"].iloc[-1] > 0.25 > series["value"].iloc[0]
    [alert] = ws.monitors.alerts(open_only=True)
    assert alert.rule == "drift"
    assert ws.monitors.ack(alert.id, by="ana").acked_by == "ana"
