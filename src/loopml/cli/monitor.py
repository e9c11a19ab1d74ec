"""``loopml monitor``: store a model version's reference profile, compute a deployment's
monitoring windows (drift, data quality, performance, latency and errors), and show the
stored time series, or write it as one self-contained HTML report."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import click

from loopml.cli.context import pass_workspace
from loopml.cli.render import (
    TIME_HELP,
    console,
    emit_json,
    format_time,
    json_option,
    parse_time,
    table,
    text,
)

if TYPE_CHECKING:
    from loopml.monitoring.windows import WindowResult
    from loopml.workspace import Workspace

SINCE_HELP = f"From this time, or this long ago (7d, 12h). {TIME_HELP}"
#: The window-level metrics `monitor show` lists by default, in this order.
SHOWN = ("rows", "error_rate", "p99_ms", "invalid_rows", "accuracy", "estimated_accuracy")


def _moment(value: str | None, option: str) -> datetime | None:
    """An ISO time, or a duration (``7d``) meaning that long ago."""
    if value is None:
        return None
    from loopml.exceptions import InvalidConfig
    from loopml.monitoring.settings import duration_seconds

    try:
        seconds = duration_seconds(value)
    except InvalidConfig:
        return parse_time(value, option)
    return datetime.now(UTC) - timedelta(seconds=seconds)


def _number(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.4g}"


def _worst(result: WindowResult, metric: str = "psi") -> tuple[str, float] | None:
    """The input feature with the highest ``metric`` in a window, with its value."""
    found = [
        (feature, value)
        for (feature, name), value in result.metrics.items()
        if name == metric and feature not in ("", "__prediction__") and not math.isnan(value)
    ]
    return max(found, key=lambda item: item[1]) if found else None


@click.group()
def monitor() -> None:
    """Monitoring: reference profiles, drift and data quality per time window, performance
    once labels land, latency and errors; alert rules run over the results."""


@monitor.command("set-reference")
@click.argument("model_ref", metavar="MODEL_REF")
@click.option(
    "--data",
    "data",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="The training data (.parquet or .csv).",
)
@json_option
@pass_workspace
def set_reference(ws: Workspace, model_ref: str, data: str, as_json: bool) -> None:
    """Store the reference profile of MODEL_REF (churn@production, churn/4, churn) from its
    training data: frozen bins, category frequencies, null rates, ranges and a sample. Its
    windows are compared with it from now on; a second call replaces it."""
    reference = ws.monitors.set_reference(model_ref, data)
    profile = reference.profile
    if as_json:
        emit_json(
            {
                "model": reference.model,
                "version": reference.version,
                "rows": reference.rows,
                "features": list(profile.features),
                "predictions": profile.predictions is not None,
                "source": reference.source,
                "created_at": reference.created_at.isoformat(),
            }
        )
        return
    predicted = ", and its predictions" if profile.predictions is not None else ""
    click.echo(
        f"{reference.model}/{reference.version}: reference of {reference.rows:,} rows, "
        f"{len(profile.features)} feature(s){predicted} (from {reference.source})"
    )


@monitor.command("run")
@click.argument("deployment")
@click.option("--window", help="Window length (15m, 1h, 1d); default: [monitor] window.")
@click.option("--since", help=f"Recompute every window from here. {SINCE_HELP}")
@click.option("--until", help=f"Compute windows that end by then. {TIME_HELP}")
@click.option(
    "--executor",
    help="threads (the default for many windows), processes, inline, ray or ray://host:port.",
)
@click.option(
    "--restart",
    is_flag=True,
    help="Delete DEPLOYMENT's stored windows first and compute them again (to change "
    "--window: every window of a deployment has one length).",
)
@json_option
@pass_workspace
def run(
    ws: Workspace,
    deployment: str,
    window: str | None,
    since: str | None,
    until: str | None,
    executor: str | None,
    restart: bool,
    as_json: bool,
) -> None:
    """Compute DEPLOYMENT's closed windows not yet computed (or every one from --since),
    store their metrics and evaluate the alert rules over them. Every window of a
    deployment has one length: another --window is refused unless --restart."""
    from loopml.cli.progress import progress_bar

    begin, finish = _moment(since, "--since"), _moment(until, "--until")
    with progress_bar(
        "Monitoring", unit="window", show_bytes=False, enabled=not as_json
    ) as tracker:
        results = ws.monitors.run(
            deployment,
            window=window,
            since=begin,
            until=finish,
            executor=executor,
            progress=tracker,
            restart=restart,
        )
    if as_json:
        emit_json([r.to_dict() for r in results])
        return
    if not results:
        click.echo(f"{deployment}: no closed window to compute.")
        return
    grid = table("start", "status", "model", "rows", "error rate", "p99 ms", "worst psi")
    for r in results:
        worst = _worst(r)
        grid.add_row(
            format_time(r.start),
            r.status,
            text(r.model or ""),
            str(r.rows),
            _number(r.value("error_rate")),
            _number(r.value("p99_ms")),
            f"{worst[0]} {worst[1]:.3g}" if worst else "",
        )
    console().print(grid)
    for r in results:
        for warning in r.warnings:
            click.echo(f"{format_time(r.start)}: {warning}", err=True)
    empty = sum(r.status == "empty" for r in results)
    click.echo(
        f"{len(results)} window(s) computed"
        + (f", {empty} empty (no traffic)" if empty else "")
        + "."
    )


@monitor.command("show")
@click.argument("deployment")
@click.option("--metric", help="One metric (psi, p99_ms, accuracy, …), per feature.")
@click.option("--feature", help="One feature ('' for the window's own metrics).")
@click.option("--since", help=SINCE_HELP)
@json_option
@pass_workspace
def show(
    ws: Workspace,
    deployment: str,
    metric: str | None,
    feature: str | None,
    since: str | None,
    as_json: bool,
) -> None:
    """The stored monitoring time series of DEPLOYMENT: by default one line per window with
    its main metrics; with --metric, that metric per window and feature."""
    begin = _moment(since, "--since")
    if metric is not None:
        _check_metric(ws, deployment, metric)
    if as_json:
        series = ws.monitors.metrics(deployment, metric=metric, feature=feature, since=begin)
        emit_json(
            [
                {
                    **row,
                    "start": row["start"].isoformat(),
                    "end": row["end"].isoformat(),
                    "value": None if math.isnan(row["value"]) else row["value"],
                }
                for row in series.to_dict(orient="records")
            ]
        )
        return
    if metric is not None or feature is not None:
        series = ws.monitors.metrics(deployment, metric=metric, feature=feature, since=begin)
        if series.empty:
            click.echo(f"{deployment}: no stored values{_what(metric, feature)}.")
            return
        grid = table("start", "feature", "metric", "value")
        for row in series.to_dict(orient="records"):
            grid.add_row(
                format_time(row["start"].to_pydatetime()),
                text(row["feature"] or "(window)"),
                str(row["metric"]),
                _number(row["value"]),
            )
        console().print(grid)
        return
    windows = ws.monitors.windows(deployment, since=begin)
    if not windows:
        click.echo(
            f"{deployment}: no computed windows yet; compute them with "
            f"`loopml monitor run {deployment}`."
        )
        return
    grid = table("start", "status", "model", *SHOWN, "worst psi")
    for w in windows:
        worst = _worst(w)
        grid.add_row(
            format_time(w.start),
            w.status,
            text(w.model or ""),
            *(_number(w.value(name)) for name in SHOWN),
            f"{worst[0]} {worst[1]:.3g}" if worst else "",
        )
    console().print(grid)


def _check_metric(ws: Workspace, deployment: str, metric: str) -> None:
    """Refuse a --metric that monitoring never computes and no stored window has (a known
    metric with no values yet is fine: it prints that)."""
    import difflib

    from sqlalchemy import select

    from loopml.exceptions import InvalidInput
    from loopml.monitoring.rules import FEATURE_METRICS, WINDOW_METRICS
    from loopml.monitoring.tables import monitor_metrics, monitor_windows

    with ws.db.read() as conn:
        stored = conn.execute(
            select(monitor_metrics.c.metric)
            .join(monitor_windows, monitor_windows.c.id == monitor_metrics.c.window_id)
            .where(monitor_windows.c.deployment == deployment)
            .distinct()
        ).scalars()
        present = sorted(set(stored))
    known = {*FEATURE_METRICS, *WINDOW_METRICS, "missing", *present}
    if metric in known:
        return
    close = difflib.get_close_matches(metric, sorted(known), n=1)
    hint = f"Did you mean {close[0]!r}? " if close else ""
    listed = (
        f"{deployment}'s windows have {', '.join(present)}"
        if present
        else f"{deployment} has no stored window yet; the metrics are "
        f"{', '.join((*WINDOW_METRICS, *FEATURE_METRICS))}"
    )
    raise InvalidInput(f"Unknown metric {metric!r}. {hint}{listed}.")


def _what(metric: str | None, feature: str | None) -> str:
    parts = [f"of {metric}" if metric else "", f"for feature {feature!r}" if feature else ""]
    return "".join(" " + p for p in parts if p)


@monitor.command("report")
@click.argument("deployment")
@click.option("--since", help=SINCE_HELP)
@click.option("--until", help=f"Windows that start before then. {TIME_HELP}")
@click.option(
    "-o",
    "--output",
    default="report.html",
    show_default=True,
    type=click.Path(dir_okay=False, writable=True),
    help="The HTML file to write (replaced atomically).",
)
@json_option
@pass_workspace
def report(
    ws: Workspace,
    deployment: str,
    since: str | None,
    until: str | None,
    output: str,
    as_json: bool,
) -> None:
    """Write DEPLOYMENT's monitoring report: one self-contained HTML file (no network
    needed to open it) with the drift summary worst first, reference-vs-current
    histograms, PSI, performance, latency and error rate over time, and the period's
    alerts, from the windows `loopml monitor run` computed."""
    import os

    from loopml.monitoring.report import collect, render, write_text

    data = collect(
        deployment,
        since=_moment(since, "--since"),
        until=parse_time(until, "--until") if until else None,
        workspace=ws,
    )
    path = write_text(output, render(data))
    size = os.path.getsize(path)
    start, end = data.windows[0].start, data.windows[-1].end
    if as_json:
        emit_json(
            {
                "path": str(path),
                "bytes": size,
                "deployment": deployment,
                "windows": len(data.windows),
                "start": start.isoformat(),
                "end": end.isoformat(),
                "alerts": len(data.alerts),
            }
        )
        return
    click.echo(
        f"wrote {path} ({size / 1024:,.0f} KiB): {deployment}, {len(data.windows)} window(s) "
        f"from {format_time(start)} to {format_time(end)}, {len(data.alerts)} alert(s)."
    )
