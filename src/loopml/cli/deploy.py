"""``loopml deploy``: create deployments, change their strategy (shadow, canary, blue-green,
A/B, champion/challenger), read or roll back their history, and report an A/B test's or a
champion/challenger's statistics (``deploy report``, ``deploy promote-challenger``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import click

from loopml.cli.context import CliError, pass_workspace
from loopml.cli.render import console, emit_json, format_time, json_option, table, text

if TYPE_CHECKING:
    from loopml.serving.deployments import Deployment
    from loopml.workspace import Workspace

_REASON_HELP = "Why; recorded in the deployment's history."


def reason_option(f: Any) -> Any:
    return click.option("--reason", help=_REASON_HELP)(f)


def _serving(deployment: Deployment) -> str:
    """``primary churn@production 95%, canary churn/4 5%, shadow churn/5 (off path)``."""
    parts = []
    for v in deployment.variants:
        model = v.model.removeprefix("models:/")
        if v.role == "shadow":
            share = "off path"
        elif v.role == "standby":
            share = "standby"
        else:
            share = f"{v.weight:g}%"
        parts.append(f"{v.name} {model} {share}")
    return ", ".join(parts)


def _step(deployment: Deployment) -> str | None:
    if deployment.strategy != "canary" or "steps" not in deployment.settings:
        return None
    steps = list(deployment.settings["steps"])
    index = int(deployment.settings.get("step", 0))
    return f"step {index + 1} of {len(steps)} ({', '.join(f'{s:g}' for s in steps)}%)"


def _changed(deployment: Deployment, as_json: bool) -> None:
    """What a write command prints: the new revision in one line, or its JSON."""
    if as_json:
        emit_json(deployment.to_dict())
        return
    step = _step(deployment)
    click.echo(
        f"{deployment.name}: revision {deployment.revision}, {deployment.strategy}"
        + (f" at {step}" if step else "")
        + f": {_serving(deployment)}"
    )


@click.group()
def deploy() -> None:
    """Deployments: which registry models a server answers with, and how traffic moves
    between them (shadow, canary, blue-green, A/B, champion/challenger)."""


@deploy.command("create")
@click.argument("name")
@click.option("--model", "model", required=True, metavar="REF", help="e.g. churn@production.")
@click.option("--key", metavar="FIELD", help="Request field that keys sticky assignment.")
@click.option("--feature-service", metavar="SERVICE", help="Fill features from the online store.")
@reason_option
@json_option
@pass_workspace
def create(
    ws: Workspace,
    name: str,
    model: str,
    key: str | None,
    feature_service: str | None,
    reason: str | None,
    as_json: bool,
) -> None:
    """Create deployment NAME serving one model (NAME@ALIAS follows the alias)."""
    created = ws.deployments.create(
        name, model, key=key, feature_service=feature_service, reason=reason
    )
    _changed(created, as_json)


@deploy.command("shadow")
@click.argument("name")
@click.option("--candidate", required=True, metavar="REF", help="e.g. churn/4.")
@reason_option
@json_option
@pass_workspace
def shadow(ws: Workspace, name: str, candidate: str, reason: str | None, as_json: bool) -> None:
    """The primary answers; CANDIDATE scores every request off the response path."""
    _changed(ws.deployments.shadow(name, candidate, reason=reason), as_json)


def _steps(value: str) -> list[float]:
    try:
        return [float(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise CliError(
            f"--steps {value!r}: percentages separated by commas, e.g. 5,25,50,100."
        ) from None


def _duration(value: str) -> float:
    from loopml.cli.scheduler import parse_duration

    try:
        return parse_duration(value)
    except click.BadParameter as exc:
        raise CliError(f"--step-duration {exc.message}") from exc


@deploy.command("canary")
@click.argument("name")
@click.option("--candidate", required=True, metavar="REF", help="e.g. churn/4.")
@click.option(
    "--steps", default="5,25,50,100", show_default=True, help="Traffic percent of each step."
)
@click.option("--step-duration", default="10m", show_default=True, help="How long each step lasts.")
@click.option(
    "--min-requests",
    default=200,
    show_default=True,
    type=click.IntRange(min=0),
    help="Requests a step must see before it can advance.",
)
@click.option(
    "--abort",
    "aborts",
    multiple=True,
    metavar="CONDITION",
    help="Roll back when it holds, e.g. 'error_rate > 0.02' (repeatable). Metrics: "
    "error_rate, p99_ms, p50_ms, prediction_psi, accuracy.",
)
@reason_option
@json_option
@pass_workspace
def canary(
    ws: Workspace,
    name: str,
    candidate: str,
    steps: str,
    step_duration: str,
    min_requests: int,
    aborts: tuple[str, ...],
    reason: str | None,
    as_json: bool,
) -> None:
    """Ramp CANDIDATE's share of the traffic step by step; roll back when an abort holds."""
    started = ws.deployments.canary(
        name,
        candidate,
        _steps(steps),
        step_duration=_duration(step_duration),
        min_requests=min_requests,
        aborts=list(aborts),
        reason=reason,
    )
    _changed(started, as_json)


@deploy.command("blue-green")
@click.argument("name")
@click.option("--candidate", required=True, metavar="REF", help="e.g. churn/4.")
@reason_option
@json_option
@pass_workspace
def blue_green(ws: Workspace, name: str, candidate: str, reason: str | None, as_json: bool) -> None:
    """Load CANDIDATE warm beside the live model, with no traffic until `deploy switch`."""
    _changed(ws.deployments.blue_green(name, candidate, reason=reason), as_json)


@deploy.command("switch")
@click.argument("name")
@reason_option
@json_option
@pass_workspace
def switch(ws: Workspace, name: str, reason: str | None, as_json: bool) -> None:
    """Blue-green: move all traffic to the standby side at once (again: move it back)."""
    _changed(ws.deployments.switch(name, reason=reason), as_json)


def _variant(value: str) -> tuple[str, tuple[str, float | None]]:
    """``a=churn/3:50`` → ``("a", ("churn/3", 50.0))``; the weight may be left out."""
    label, sep, rest = value.partition("=")
    if not sep or not label or not rest:
        raise CliError(f"--variant {value!r}: write NAME=MODEL:WEIGHT, e.g. a=churn/3:50.")
    model, colon, weight = rest.rpartition(":")
    if colon and not weight.startswith("/"):
        try:
            return label, (model, float(weight))
        except ValueError:
            raise CliError(
                f"--variant {value!r}: weight {weight!r} is not a number; write "
                "NAME=MODEL:WEIGHT, e.g. a=churn/3:50."
            ) from None
    return label, (rest, None)


@deploy.command("ab")
@click.argument("name")
@click.option(
    "--variant",
    "variants",
    multiple=True,
    required=True,
    metavar="NAME=MODEL:WEIGHT",
    help="An arm, e.g. a=churn/3:50 (repeatable; without weights the split is even).",
)
@click.option("--key", metavar="FIELD", help="Request field that keys the sticky split.")
@click.option(
    "--metric",
    default="conversion",
    show_default=True,
    type=click.Choice(["conversion", "value"]),
    help="Outcome: conversion (binary) or value (continuous).",
)
@reason_option
@json_option
@pass_workspace
def ab(
    ws: Workspace,
    name: str,
    variants: tuple[str, ...],
    key: str | None,
    metric: str,
    reason: str | None,
    as_json: bool,
) -> None:
    """Split traffic between variants, sticky per key, for an A/B test."""
    parsed = [_variant(v) for v in variants]
    labels = [label for label, _ in parsed]
    if len(set(labels)) != len(labels):
        raise CliError(f"--variant names repeat: {', '.join(labels)}.")
    given = [w for _, (_, w) in parsed if w is not None]
    if given and len(given) != len(parsed):
        raise CliError(
            "Give every --variant a weight (NAME=MODEL:WEIGHT), or none for an even split."
        )
    arms = {
        label: (model, weight if weight is not None else 100.0 / len(parsed))
        for label, (model, weight) in parsed
    }
    _changed(ws.deployments.ab(name, arms, key=key, metric=metric, reason=reason), as_json)


@deploy.command("champion-challenger")
@click.argument("name")
@click.option("--challenger", required=True, metavar="REF", help="e.g. churn/4.")
@reason_option
@json_option
@pass_workspace
def champion_challenger(
    ws: Workspace, name: str, challenger: str, reason: str | None, as_json: bool
) -> None:
    """The champion answers everything; CHALLENGER scores every request off the response
    path, to be compared on the same requests once labels arrive."""
    _changed(ws.deployments.champion_challenger(name, challenger, reason=reason), as_json)


@deploy.command("status")
@click.argument("name")
@json_option
@pass_workspace
def status(ws: Workspace, name: str, as_json: bool) -> None:
    """What deployment NAME serves now: revision, strategy, variants, canary step."""
    current = ws.deployments.get(name)
    if as_json:
        emit_json(current.to_dict())
        return
    out = console()
    out.print(
        text(f"{current.name}  revision {current.revision}  {current.strategy}", "bold"),
    )
    out.print(
        text(
            f"  changed {format_time(current.created_at)} by {current.actor or '-'}"
            + (f": {current.reason}" if current.reason else "")
        )
    )
    out.print(
        text(
            f"  key: {current.key or 'request id'}   "
            f"feature service: {current.feature_service or '-'}"
        )
    )
    step = _step(current)
    if step:
        settings = current.settings
        out.print(
            text(
                f"  canary {step}; each step {settings.get('step_duration_s', 0):g}s and "
                f"{settings.get('min_requests', 0)} requests; aborts: "
                + (", ".join(settings.get("aborts", [])) or "none")
            )
        )
    if current.strategy == "ab":
        out.print(text(f"  metric: {current.settings.get('metric', 'conversion')}"))
    grid = table("Variant", "Role", "Traffic", "Model")
    for v in current.variants:
        traffic = "off path" if v.role == "shadow" else f"{v.weight:g}%"
        grid.add_row(text(v.name), v.role, traffic, text(v.model.removeprefix("models:/")))
    out.print(grid)


@deploy.command("history")
@click.argument("name")
@json_option
@pass_workspace
def history(ws: Workspace, name: str, as_json: bool) -> None:
    """Every revision of deployment NAME, oldest first: when, who, why and what it served."""
    revisions = ws.deployments.history(name)
    if as_json:
        emit_json([r.to_dict() for r in revisions])
        return
    grid = table("Rev", "When", "Who", "Strategy", "Serving", "Why", no_wrap={"When"})
    for r in revisions:
        grid.add_row(
            str(r.revision),
            format_time(r.created_at),
            text(r.actor or "-"),
            r.strategy,
            text(_serving(r)),
            text(r.reason or "-"),
        )
    console().print(grid)


@deploy.command("rollback")
@click.argument("name")
@reason_option
@json_option
@pass_workspace
def rollback(ws: Workspace, name: str, reason: str | None, as_json: bool) -> None:
    """Make what served before NAME's current setup current again, at once: a canary (at any
    step, or completed) goes back to what served before it; rollbacks walk back."""
    _changed(ws.deployments.rollback(name, reason=reason), as_json)


@deploy.command("list")
@json_option
@pass_workspace
def list_deployments(ws: Workspace, as_json: bool) -> None:
    """Every deployment with what it serves now."""
    found = ws.deployments.list()
    if as_json:
        emit_json([x.to_dict() for x in found])
        return
    out = console()
    if not found:
        out.print("No deployments yet. Create one with `loopml deploy create NAME --model REF`.")
        return
    grid = table("Name", "Rev", "Strategy", "Serving", "Changed", no_wrap={"Changed"})
    for x in found:
        grid.add_row(
            text(x.name),
            str(x.revision),
            x.strategy,
            text(_serving(x)),
            format_time(x.created_at),
        )
    out.print(grid)


@deploy.command("watch")
@click.argument("name")
@click.option("--once", is_flag=True, help="Decide once and exit.")
@click.option(
    "--interval",
    default="10s",
    show_default=True,
    help="How often to look at the canary's traffic (e.g. 10s, 1m).",
)
@pass_workspace
def watch(ws: Workspace, name: str, once: bool, interval: str) -> None:
    """Run the canary controller of NAME: each look at the current step's logged traffic
    waits, advances, aborts back to the primary or completes (gated promotion), printed in
    one line; loops until NAME is no longer a canary (Ctrl-C stops it)."""
    import time

    from loopml.cli.scheduler import parse_duration
    from loopml.serving.controller import watch_once

    try:
        every = parse_duration(interval)
    except click.BadParameter as exc:
        raise CliError(f"--interval {exc.message}") from exc
    if every <= 0:
        raise CliError(f"--interval {interval!r}: a positive duration, e.g. 10s.")
    try:
        while True:
            current = ws.deployments.get(name)
            if current.strategy != "canary":
                if once:
                    raise CliError(
                        f"Deployment {name!r} runs {current.strategy}, not a canary: nothing "
                        f"to watch. Start one with `loopml deploy canary {name} --candidate REF`."
                    )
                click.echo(f"{name}: {current.strategy} (revision {current.revision}), done.")
                return
            decision = watch_once(ws, name)
            click.echo(f"{name}: {decision.line()}")
            if once or decision.action in ("abort", "complete"):
                return
            time.sleep(every)
    except KeyboardInterrupt:
        click.echo(f"{name}: stopped watching.")


def _moment(value: str | None, option: str) -> datetime | None:
    """``--since``/``--until``: an ISO time, or a duration back from now (``6h``, ``7d``)."""
    if value is None:
        return None
    from loopml.cli.render import parse_time
    from loopml.cli.scheduler import parse_duration

    try:
        return datetime.now(UTC) - timedelta(seconds=parse_duration(value))
    except click.BadParameter:
        pass
    try:
        return parse_time(value, option)
    except ValueError:
        raise CliError(
            f"{option} {value!r}: use a duration back from now (6h, 7d) or an ISO time like "
            "2026-11-30T16:32:07-05:00."
        ) from None


def _number(value: str | None, option: str) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        raise CliError(f"{option} {value!r} is not a number.") from None


def report_options(f: Any) -> Any:
    """The options of `deploy report` (and `deploy promote-challenger`, which reads the
    same report)."""
    options = [
        click.option(
            "--since", metavar="TIME", help="Requests from here: an ISO time or e.g. 6h, 7d back."
        ),
        click.option("--until", metavar="TIME", help="Requests before here (same forms)."),
        click.option(
            "--metric",
            type=click.Choice(
                ["conversion", "value", "accuracy", "squared_error", "absolute_error"]
            ),
            help="A/B: conversion (0/1) or value (the deployment's by default); "
            "champion/challenger: accuracy, squared_error or absolute_error (by the labels).",
        ),
        click.option(
            "--mde",
            metavar="X",
            help="Minimum detectable effect, absolute in the metric's units (0.02 = two "
            "points of conversion): plans the sample and lets the fixed test decide there.",
        ),
        click.option("--alpha", default="0.05", show_default=True, help="Significance level."),
        click.option("--power", default="0.8", show_default=True, help="Power for --mde."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _report_args(
    since: str | None,
    until: str | None,
    metric: str | None,
    mde: str | None,
    alpha: str,
    power: str,
) -> dict[str, Any]:
    return {
        "since": _moment(since, "--since"),
        "until": _moment(until, "--until"),
        "metric": metric,
        "mde": _number(mde, "--mde"),
        "alpha": _number(alpha, "--alpha"),
        "power": _number(power, "--power"),
    }


@deploy.command("report")
@click.argument("name")
@report_options
@json_option
@pass_workspace
def report(
    ws: Workspace,
    name: str,
    since: str | None,
    until: str | None,
    metric: str | None,
    mde: str | None,
    alpha: str,
    power: str,
    as_json: bool,
) -> None:
    """Statistics of the A/B test or champion/challenger NAME from feedback: per-variant
    outcomes, the test (z / Welch; McNemar / paired t), effect size, confidence interval,
    planned sample for --mde, an always-valid sequential p-value, and what to do next.
    Read-only: promote a winning challenger with `loopml deploy promote-challenger`."""
    found = ws.deployments.report(name, **_report_args(since, until, metric, mde, alpha, power))
    if as_json:
        emit_json(found.to_dict())
        return
    click.echo(found.render(format_time))


@deploy.command("promote-challenger")
@click.argument("name")
@report_options
@reason_option
@json_option
@pass_workspace
def promote_challenger(
    ws: Workspace,
    name: str,
    since: str | None,
    until: str | None,
    metric: str | None,
    mde: str | None,
    alpha: str,
    power: str,
    reason: str | None,
    as_json: bool,
) -> None:
    """Promote NAME's challenger when `deploy report` recommends it: it serves alone and
    goes through the registry's gated promotion (a blocked gate puts the
    champion/challenger back). Refused, changing nothing, when the report says otherwise."""
    from loopml.exceptions import PromotionBlocked

    try:
        _, stored = ws.deployments.promote_challenger(
            name, reason=reason, **_report_args(since, until, metric, mde, alpha, power)
        )
    except PromotionBlocked as exc:
        # The gate's summary spans lines; the CLI says it in one.
        raise CliError(" ".join(str(exc).split())) from exc
    _changed(stored, as_json)
