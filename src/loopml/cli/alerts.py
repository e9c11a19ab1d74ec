"""``loopml alerts``: list the monitoring alerts, acknowledge one, evaluate the rules and
deliver pending notices (``[[monitor.alerts]]`` in loopml.toml)."""

from __future__ import annotations

import contextlib
import sys
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import click

from loopml.cli.context import CliError, current_workspace, pass_workspace
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
from loopml.wording import counted

if TYPE_CHECKING:
    from loopml.monitoring.alerts import Alert, AlertChange
    from loopml.workspace import Workspace

_STATUS_STYLES = {"firing": "bold red", "acked": "yellow", "resolved": "green"}
_SEVERITY_STYLES = {"critical": "bold red", "warning": "yellow", "info": "cyan"}


def _since(value: str | None) -> datetime | None:
    """``--since``: an ISO time, or a duration back from now (``1d``, ``6h``)."""
    if value is None:
        return None
    from loopml.exceptions import InvalidConfig
    from loopml.monitoring.settings import duration_seconds

    try:
        return datetime.now(UTC) - timedelta(seconds=duration_seconds(value))
    except InvalidConfig:
        pass
    try:
        return parse_time(value, "--since")
    except ValueError:
        raise CliError(
            f"--since {value!r}: use a duration back from now (6h, 7d) or an ISO time like "
            "2026-11-30T16:32:07-05:00."
        ) from None


def _line(alert: Alert) -> str:
    return (
        f"alert {alert.id} {alert.status}: {alert.rule} on {alert.deployment}, "
        f"{alert.condition} (value {alert.value:.4g})"
        if alert.value is not None
        else f"alert {alert.id} {alert.status}: {alert.rule} on {alert.deployment}"
    )


@click.group()
def alerts() -> None:
    """Monitoring alerts: fired by the [[monitor.alerts]] rules over the computed windows,
    open until their condition clears."""


@alerts.command("list")
@click.option("--deployment", "-d", metavar="NAME", help="Only this deployment's alerts.")
@click.option("--open", "open_only", is_flag=True, help="Only alerts not resolved yet.")
@click.option(
    "--since",
    metavar="TIME",
    help="Only alerts fired since then: a duration back from now (6h, 7d) or a time. " + TIME_HELP,
)
@json_option
@pass_workspace
def list_alerts(
    ws: Workspace, deployment: str | None, open_only: bool, since: str | None, as_json: bool
) -> None:
    """Alerts, newest first: status (firing, acked, resolved), rule, value and window."""
    from loopml.monitoring.alerts import list_alerts as find

    found = find(deployment=deployment, open_only=open_only, since=_since(since), workspace=ws)
    if as_json:
        emit_json([alert.to_dict() for alert in found])
        return
    if not found:
        what = "open alerts" if open_only else "alerts"
        click.echo(
            f"No {what}"
            + (f" for {deployment}" if deployment else "")
            + ". Rules are [[monitor.alerts]] tables in loopml.toml; `loopml monitor run` "
            "evaluates them."
        )
        return
    out = console()
    grid = table(
        "ID",
        "Status",
        "Severity",
        "Deployment",
        "Rule",
        "Condition",
        "Value",
        "Window end",
        "Fired",
        no_wrap={"Window end", "Fired"},
    )
    for alert in found:
        grid.add_row(
            str(alert.id),
            text(alert.status, _STATUS_STYLES.get(alert.status, "")),
            text(alert.severity, _SEVERITY_STYLES.get(alert.severity, "")),
            text(alert.deployment),
            text(alert.rule),
            text(alert.condition),
            "" if alert.value is None else f"{alert.value:.4g}",
            format_time(alert.window_end),
            format_time(alert.fired_at),
        )
    out.print(grid)


@alerts.command("ack")
@click.argument("alert_id", metavar="ID", type=int)
@click.option("--by", metavar="NAME", help="Who is on it (default: LOOPML_ACTOR or your user).")
@json_option
@pass_workspace
def ack(ws: Workspace, alert_id: int, by: str | None, as_json: bool) -> None:
    """Acknowledge alert ID: someone is on it. It stays open until its condition clears."""
    from loopml.monitoring.alerts import ack as acknowledge

    alert = acknowledge(alert_id, by=by, workspace=ws)
    if as_json:
        emit_json(alert.to_dict())
        return
    click.echo(f"{_line(alert)}; acknowledged by {alert.acked_by} at {format_time(alert.acked_at)}")


@alerts.command("evaluate")
@click.argument("deployment", required=False)
@click.option("--no-deliver", is_flag=True, help="Record the changes; send nothing now.")
@json_option
@pass_workspace
def evaluate(ws: Workspace, deployment: str | None, no_deliver: bool, as_json: bool) -> None:
    """Evaluate the rules over the windows computed so far (of DEPLOYMENT or all), fire and
    resolve alerts, then deliver their notices. `loopml monitor run` does this too."""
    from loopml.monitoring.alerts import evaluate as run

    if not ws.settings.monitor.alerts:
        raise CliError(
            "No alert rules: add [[monitor.alerts]] tables to loopml.toml "
            '(name = "drift", when = "max(psi) > 0.25").'
        )
    changes = run(deployment, workspace=ws)
    if not as_json:
        for change in changes:
            click.echo(f"{change.kind}: {_line(change.alert)}")
    delivered = 0 if no_deliver else _deliver(as_json)
    if as_json:
        emit_json({"changes": [_change(c) for c in changes], "delivered": delivered})
    elif changes or delivered:
        click.echo(f"{counted(len(changes), 'change')}; {counted(delivered, 'notice')} delivered.")
    else:
        click.echo("No change.")


def _deliver(as_json: bool) -> int:
    """Deliver pending notices; with ``--json`` the stdout channel writes to stderr so that
    stdout stays one JSON document."""
    from loopml.monitoring.alerts import deliver_pending

    ws = current_workspace()
    if not as_json:
        return deliver_pending(workspace=ws)
    with contextlib.redirect_stdout(sys.stderr):
        return deliver_pending(workspace=ws)


def _change(change: AlertChange) -> dict[str, object]:
    return {
        "kind": change.kind,
        "window_start": change.window_start.isoformat(),
        "window_end": change.window_end.isoformat(),
        "value": change.value,
        "alert": change.alert.to_dict(),
    }


@alerts.command("deliver")
@json_option
@pass_workspace
def deliver(ws: Workspace, as_json: bool) -> None:
    """Send the notices not delivered yet (a webhook or SMTP server that was down)."""
    from loopml.monitoring.alerts import deliveries

    delivered = _deliver(as_json)
    left = [d for d in deliveries(workspace=ws) if d.status != "delivered"]
    if as_json:
        emit_json(
            {
                "delivered": delivered,
                "undelivered": [
                    {
                        "id": d.id,
                        "alert_id": d.alert_id,
                        "channel": d.channel,
                        "notice": d.notice,
                        "attempts": d.attempts,
                        "last_error": d.last_error,
                    }
                    for d in left
                ],
            }
        )
    else:
        click.echo(f"{counted(delivered, 'notice')} delivered.")
    if left:
        first = left[0]
        raise CliError(
            f"{counted(len(left), 'notice')} not delivered yet (alert {first.alert_id} "
            f"{first.notice} to {first.channel}: {first.last_error}); they are retried by the "
            "next `loopml alerts deliver` or `loopml monitor run`."
        )
