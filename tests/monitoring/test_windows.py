"""``loopml monitor run`` over real prediction logs: which windows are computed, empty and
rerun windows, drift on the shifted features only, data quality (missing, all-null and
mistyped fields, unseen categories), a version without a reference, shadow rows and other
versions left out, labels landing late, alerts, parallel backfills, PostgreSQL."""

from __future__ import annotations

import doctest
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from loopml.exceptions import InvalidInput
from loopml.monitoring import logrows, windows
from loopml.monitoring.alerts import list_alerts
from loopml.monitoring.rules import AlertRule
from loopml.monitoring.settings import MonitorSettings
from loopml.monitoring.tables import monitor_metrics, monitor_windows
from loopml.monitoring.windows import (
    PREDICTION,
    WINDOW,
    WindowResult,
    align,
    parse_window,
    run,
)
from loopml.workspace import Workspace
from monitoring.traffic import HOUR, START, deploy, features, label, log, predictions

LATER = START + timedelta(hours=6)


def counts(ws: Workspace) -> tuple[int, int]:
    """Stored windows and metric rows."""
    with ws.db.read() as conn:
        windows = conn.execute(select(func.count()).select_from(monitor_windows)).scalar()
        metrics = conn.execute(select(func.count()).select_from(monitor_metrics)).scalar()
    return int(windows or 0), int(metrics or 0)


def by_start(results: list[WindowResult]) -> dict[datetime, WindowResult]:
    return {r.start: r for r in results}


def test_doctests() -> None:
    for module in (windows, logrows):
        result = doctest.testmod(module)
        assert result.attempted and result.failed == 0, module.__name__


def test_window_sizes_and_alignment() -> None:
    assert parse_window("1h") == timedelta(hours=1)
    assert parse_window("15m") == timedelta(minutes=15)
    assert parse_window("1d") == timedelta(days=1)
    for bad in ("90s", "soon", "0m", "1.5m"):
        with pytest.raises(InvalidInput, match="[Ww]indow"):
            parse_window(bad)
    moment = datetime(2026, 11, 30, 10, 47, 12, tzinfo=UTC)
    assert align(moment, timedelta(minutes=15)) == datetime(2026, 11, 30, 10, 45, tzinfo=UTC)
    assert align(moment, timedelta(days=1)) == datetime(2026, 11, 30, tzinfo=UTC)


@pytest.mark.slow
def test_closed_windows_once_then_only_new_ones(sqlite_ws: Workspace) -> None:
    ws = sqlite_ws
    deploy(ws)
    log(ws, features(120, seed=2), start=START)
    log(ws, features(120, seed=3), start=START + 2 * HOUR, prefix="s")
    # At 13:30 the 13:00 window is still open: 10:00, 11:00 (empty) and 12:00 are computed.
    first = run("churn", window="1h", now=START + timedelta(hours=3, minutes=30), workspace=ws)
    assert [r.start for r in first] == [START, START + HOUR, START + 2 * HOUR]
    assert [r.status for r in first] == ["ok", "empty", "ok"]
    empty = first[1]
    assert empty.rows == 0 and dict(empty.metrics) == {(WINDOW, "rows"): 0.0}
    ok = first[0]
    assert ok.model == "churn/1" and ok.rows == 120
    assert ok.value("requests") == 120 and ok.value("errors") == 0
    assert ok.value("p50_ms") is not None and ok.value("p99_ms") >= ok.value("p50_ms")
    assert ok.value("invalid_rows") == 0
    # Nothing new is closed: nothing to do; later, only the new windows.
    assert run("churn", window="1h", now=START + timedelta(hours=3, minutes=40), workspace=ws) == []
    later = run("churn", window="1h", now=START + timedelta(hours=5, minutes=1), workspace=ws)
    assert [r.start for r in later] == [START + 3 * HOUR, START + 4 * HOUR]
    assert counts(ws)[0] == 5


@pytest.mark.slow
def test_a_rerun_replaces_windows_with_the_same_values(sqlite_ws: Workspace) -> None:
    ws = sqlite_ws
    deploy(ws)
    ids = log(ws, features(150, seed=4), start=START)
    label(ws, {i: 1 for i in ids[:60]}, at=START + timedelta(minutes=30))
    first = run("churn", window="1h", now=LATER, workspace=ws)
    stored = counts(ws)
    again = run("churn", window="1h", since=START, now=LATER, workspace=ws)
    assert counts(ws) == stored
    assert [r.start for r in again] == [r.start for r in first]
    for before, after in zip(first, again, strict=True):
        assert before.metrics.keys() == after.metrics.keys()
        for key, value in before.metrics.items():
            assert after.metrics[key] == pytest.approx(value, nan_ok=True), key
    listed = ws.monitors.windows("churn")
    assert [w.start for w in listed] == [r.start for r in first]
    assert listed[0].value("psi", feature="x") == pytest.approx(first[0].value("psi", "x"))


@pytest.mark.slow
def test_a_drifted_stream_has_high_psi_on_the_shifted_feature_only(sqlite_ws: Workspace) -> None:
    ws = sqlite_ws
    deploy(ws)
    log(ws, features(400, seed=5), start=START, spacing=timedelta(seconds=5))
    log(ws, features(400, seed=6, shift=2.0), start=START + HOUR, prefix="d")
    calm, drifted = run(
        "churn", window="1h", now=START + 2 * HOUR + timedelta(minutes=1), workspace=ws
    )
    assert calm.value("psi", "x") < 0.1 and calm.value("psi", "z") < 0.1
    assert drifted.value("psi", "x") > 0.25
    assert drifted.value("ks_pvalue", "x") < 1e-6
    assert drifted.value("out_of_range", "x") > 0
    assert drifted.value("psi", "z") < 0.1 and drifted.value("psi", "c") < 0.1
    assert drifted.value("chi2_pvalue", "c") > 0.001
    # The model's outputs moved with x: prediction drift.
    assert drifted.value("psi", PREDICTION) > calm.value("psi", PREDICTION)
    assert drifted.summary["features"]["x"]["band"] == "significant"
    series = ws.monitors.metrics("churn", metric="psi", feature="x")
    assert list(series["value"] > 0.25) == [False, True]


@pytest.mark.slow
def test_data_quality_missing_null_mistyped_and_unseen(sqlite_ws: Workspace) -> None:
    ws = sqlite_ws
    deploy(ws)
    log(ws, features(100, seed=7), start=START, drop=["z"])
    log(ws, features(100, seed=8), start=START + HOUR, prefix="n", nulls=["z"])
    log(ws, features(100, seed=9, categories=("a", "d")), start=START + 2 * HOUR, prefix="u")
    missing, null, unseen = run(
        "churn", window="1h", now=START + 3 * HOUR + timedelta(minutes=1), workspace=ws
    )
    # z is in no logged row: reported as missing, not a crash; every row breaks the signature.
    assert missing.value("missing", "z") == 1.0
    assert missing.value("psi", "z") is None
    assert any("['z']" in w and "no logged row" in w for w in missing.warnings)
    assert missing.value("invalid_rows") == 100
    assert missing.value("psi", "x") is not None
    # z logged as null everywhere: its null rate jumps; a float column may be null.
    assert null.value("null_rate", "z") == 1.0
    assert null.value("null_rate_change", "z") == pytest.approx(1.0)
    assert null.value("invalid_rows") == 0
    # c = "d" never seen in the reference.
    assert 0.3 < unseen.value("unseen", "c") < 0.7
    assert unseen.value("psi", "c") > 0.25


@pytest.mark.slow
def test_mistyped_and_extra_fields_are_invalid_rows(sqlite_ws: Workspace) -> None:
    ws = sqlite_ws
    deploy(ws)
    frame = features(20, seed=10)
    ids = log(ws, frame.head(10), start=START)
    mistyped = frame.tail(10).assign(x="high")
    ids += log(ws, mistyped, start=START + timedelta(minutes=20), prefix="t")
    extra = frame.head(5).assign(extra=1)
    ids += log(ws, extra, start=START + timedelta(minutes=40), prefix="e")
    label(ws, {rid: i % 2 for i, rid in enumerate(ids)}, at=START + timedelta(minutes=50))
    [window] = run("churn", window="1h", now=START + HOUR + timedelta(minutes=1), workspace=ws)
    assert window.rows == 25
    assert window.value("invalid_rows") == 15
    # Every row is labelled; only the 10 valid ones could be rescored for probabilities.
    assert window.value("labels") == 25
    assert math.isfinite(window.value("log_loss")) and math.isfinite(window.value("roc_auc"))
    # Text where x is numeric counts as null for its drift, not as a crash.
    assert window.value("null_rate", "x") == pytest.approx(10 / 25)


@pytest.mark.slow
def test_a_version_without_a_reference_gets_operational_and_performance_only(
    sqlite_ws: Workspace,
) -> None:
    ws = sqlite_ws
    deploy(ws, reference=False)
    ids = log(ws, features(50, seed=11), start=START, errors=5)
    label(ws, dict.fromkeys(ids, 1), at=START + timedelta(minutes=5))
    [window] = run("churn", window="1h", now=START + HOUR + timedelta(minutes=1), workspace=ws)
    assert window.status == "ok" and window.rows == 45
    assert window.value("error_rate") == pytest.approx(0.1)
    assert window.value("labels") == 45
    assert window.value("accuracy") is not None
    assert not [k for k in window.metrics if k[1] == "psi"]
    assert any(
        "no reference profile for churn/1" in w and "loopml monitor set-reference" in w
        for w in window.warnings
    )


@pytest.mark.slow
def test_shadow_rows_and_other_versions_are_left_out(sqlite_ws: Workspace) -> None:
    ws = sqlite_ws
    deploy(ws, versions=2)
    log(ws, features(80, seed=12), start=START)
    # The shadow is another model's opinion on the same requests: not counted at all.
    log(ws, features(80, seed=12, shift=3.0), start=START, model="churn/2", shadow=True)
    # churn/2 answered a few requests (a canary): counted as requests, not in the drift.
    log(
        ws,
        features(10, seed=13, shift=3.0),
        start=START + timedelta(minutes=30),
        prefix="k",
        model="churn/2",
    )
    [window] = run("churn", window="1h", now=START + HOUR + timedelta(minutes=1), workspace=ws)
    assert window.model == "churn/1" and window.rows == 80
    assert window.value("requests") == 90
    assert window.value("psi", "x") < 0.25
    assert window.summary["versions"] == {"churn/1": 80, "churn/2": 10}
    assert any("churn/2 (10 of 90 rows)" in w for w in window.warnings)


@pytest.mark.slow
def test_labels_that_land_later_recompute_their_window(sqlite_ws: Workspace) -> None:
    ws = sqlite_ws
    deploy(ws)
    frame = features(100, seed=14)
    ids = log(ws, frame, start=START)
    [first] = run("churn", window="1h", now=START + HOUR + timedelta(minutes=1), workspace=ws)
    assert first.value("labels") == 0 and first.value("accuracy") is None
    assert 0.5 < first.value("estimated_accuracy") <= 1.0
    # Labels arrive two hours later: the model was right on all but 20 of 60 labelled ones.
    truth = predictions(frame)
    labels = {
        rid: int(truth[i]) if i >= 20 else 1 - int(truth[i]) for i, rid in enumerate(ids[:60])
    }
    label(ws, labels, at=START + 3 * HOUR)
    results = run("churn", window="1h", now=START + 4 * HOUR + timedelta(minutes=1), workspace=ws)
    recomputed = by_start(results)[START]
    assert recomputed.value("labels") == 60
    assert recomputed.value("accuracy") == pytest.approx(40 / 60)
    assert recomputed.value("accuracy_drop") == pytest.approx(0.95 - 40 / 60)
    # Nothing new after that: the window isn't recomputed again.
    again = run("churn", window="1h", now=START + 4 * HOUR + timedelta(minutes=2), workspace=ws)
    assert START not in by_start(again)


@pytest.mark.slow
def test_an_empty_window_raises_no_alert_and_a_drifted_one_does(sqlite_ws: Workspace) -> None:
    ws = sqlite_ws
    deploy(ws)
    rule = AlertRule(name="input drift", when="max(psi) > 0.25", deployment="churn")
    ws.settings = ws.settings.with_overrides(monitor=MonitorSettings(alerts=(rule,)))
    log(ws, features(200, seed=15), start=START)
    log(ws, features(200, seed=16, shift=2.5), start=START + 2 * HOUR, prefix="d")
    results = run("churn", window="1h", now=START + 2 * HOUR + timedelta(minutes=1), workspace=ws)
    assert [r.status for r in results] == ["ok", "empty"]
    assert list_alerts(workspace=ws) == []
    run("churn", window="1h", now=START + 3 * HOUR + timedelta(minutes=1), workspace=ws)
    [alert] = list_alerts(workspace=ws)
    assert alert.rule == "input drift" and alert.deployment == "churn"


def test_a_second_window_length_is_refused_until_a_restart(sqlite_ws: Workspace) -> None:
    ws = sqlite_ws
    deploy(ws)
    log(ws, features(120, seed=2), start=START)
    at = START + timedelta(hours=2, minutes=30)
    hourly = run("churn", window="1h", now=at, workspace=ws)
    before = counts(ws)
    with pytest.raises(windows.WindowLengthMismatch) as caught:
        run("churn", window="7m", now=at, workspace=ws)
    message = str(caught.value)
    assert "The stored windows of 'churn' are 1h long, not 7m" in message
    assert "Keep --window 1h" in message
    assert "`loopml monitor run churn --window 7m --restart`" in message
    assert counts(ws) == before  # nothing stored, no 7-minute window beside the hourly ones
    assert windows.stored_lengths(ws.db, "churn") == [HOUR]
    # the stored length goes on as before
    assert run("churn", window="60m", now=at + HOUR, workspace=ws)[0].start == START + 2 * HOUR
    # --restart: the hourly windows are deleted and 7-minute ones computed from the log
    fine = run("churn", window="7m", now=at, restart=True, workspace=ws)
    assert windows.stored_lengths(ws.db, "churn") == [timedelta(minutes=7)]
    assert len(windows.list_windows("churn", workspace=ws)) == len(fine) > len(hourly)
    assert sum(r.rows for r in fine) == 120


def test_window_lengths_read_as_they_are_written() -> None:
    assert windows.format_length(timedelta(minutes=7)) == "7m"
    assert windows.format_length(timedelta(days=2)) == "2d"
    assert windows.format_length(timedelta(minutes=90)) == "90m"


def test_a_rule_naming_a_feature_the_reference_lacks(sqlite_ws: Workspace) -> None:
    from loopml.exceptions import LoopmlWarning
    from loopml.monitoring.rules import InvalidAlertRule

    ws = sqlite_ws
    deploy(ws)  # churn/1's reference has x, z and c
    log(ws, features(60, seed=2), start=START)
    at = START + timedelta(hours=1, minutes=30)
    named = AlertRule(name="x drift", when="psi[xx] > 0.2", deployment="churn")
    ws.settings = ws.settings.with_overrides(monitor=MonitorSettings(alerts=(named,)))
    with pytest.raises(InvalidAlertRule) as caught:
        run("churn", window="1h", now=at, workspace=ws)
    assert str(caught.value) == (
        '[[monitor.alerts]] "x drift": when = "psi[xx] > 0.2" names feature \'xx\', which '
        "the reference of churn/1 (served by 'churn') doesn't have: it has x, z, c; did you "
        "mean 'x'?"
    )
    assert counts(ws) == (0, 0)
    # a rule for every deployment may be meant for another model: a warning, the run goes on
    everywhere = AlertRule(name="x drift", when="psi[xx] > 0.2")
    ws.settings = ws.settings.with_overrides(monitor=MonitorSettings(alerts=(everywhere,)))
    with pytest.warns(LoopmlWarning, match="did you mean 'x'.*by '\\*'; for this deployment"):
        assert run("churn", window="1h", now=at, workspace=ws)
    # the prediction, a window metric and a feature the reference has are fine
    fine = tuple(
        AlertRule(name=f"r{i}", when=when, deployment="churn")
        for i, when in enumerate(("psi[x] > 0.2", "prediction_psi > 0.2", "error_rate > 0.1"))
    )
    ws.settings = ws.settings.with_overrides(monitor=MonitorSettings(alerts=fine))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run("churn", window="1h", now=at, workspace=ws)


@pytest.mark.slow
def test_a_threaded_backfill_equals_a_serial_one(
    workspace_factory: Callable[..., Workspace],
) -> None:
    results = []
    for executor in ("inline", "threads"):
        ws = workspace_factory("sqlite-file")
        deploy(ws)
        for hour in range(8):
            log(
                ws,
                features(40, seed=hour, shift=hour / 4),
                start=START + hour * HOUR,
                prefix=f"h{hour}-",
            )
        results.append(
            run(
                "churn",
                window="30m",
                now=START + 9 * HOUR + timedelta(minutes=1),
                executor=executor,
                workspace=ws,
            )
        )
    serial, threaded = results
    assert len(serial) == 18
    assert [r.start for r in serial] == [r.start for r in threaded]
    for a, b in zip(serial, threaded, strict=True):
        assert a.status == b.status and a.metrics.keys() == b.metrics.keys()
        for key, value in a.metrics.items():
            assert b.metrics[key] == pytest.approx(value, nan_ok=True), (a.start, key)


@pytest.mark.slow
@pytest.mark.postgres
def test_windows_on_postgresql(workspace_factory: Callable[..., Workspace]) -> None:
    ws = workspace_factory("postgres")
    deploy(ws)
    ids = log(ws, features(60, seed=17), start=START)
    label(ws, {ids[0]: 1, ids[0] + "-unknown": 0}, at=START + timedelta(minutes=2))
    [window] = run("churn", window="1h", now=START + HOUR + timedelta(minutes=1), workspace=ws)
    stored = counts(ws)
    [again] = run(
        "churn", window="1h", since=START, now=START + HOUR + timedelta(minutes=1), workspace=ws
    )
    assert counts(ws) == stored
    assert again.value("labels") == 1 and again.value("labels_unknown") == 1
    [listed] = ws.monitors.windows("churn")
    assert listed.value("psi", "x") == pytest.approx(window.value("psi", "x"))
    assert math.isnan(listed.value("roc_auc"))  # one class labelled: undefined, stored NULL


@pytest.mark.slow
def test_other_processes_cannot_see_an_in_memory_store(
    workspace_factory: Callable[..., Workspace],
) -> None:
    ws = workspace_factory("sqlite-memory")
    deploy(ws)
    log(ws, features(10, seed=18), start=START)
    with pytest.raises(InvalidInput, match='in-memory store.*executor="threads"'):
        run("churn", window="1h", now=LATER, executor="processes", workspace=ws)
    assert len(run("churn", window="1h", now=LATER, executor="threads", workspace=ws)) == 5
