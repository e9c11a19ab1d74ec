"""``loopml status``: where the loop stands, at a glance, and its maturity level.

One block per registered model (Production and since when, deployments and canary step,
the latest monitoring window's verdict, open alerts, what retrains it, what guards its
promotion, data added since its last training), then the pipelines, LLM spend against
budgets, and the maturity line with what is missing for the next level.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from loopml.cli.context import pass_workspace
from loopml.cli.render import console, emit_json, format_time, json_option, key_values, text

if TYPE_CHECKING:
    from rich.text import Text

    from loopml.status.records import (
        DeploymentStatus,
        LlmStatus,
        ModelStatus,
        PipelineStatus,
        WorkspaceStatus,
    )
    from loopml.workspace import Workspace

VERDICT_STYLES = {"drift": "bold red", "ok": "green", "empty": "dim"}
LEVEL_STYLES = {0: "yellow", 1: "cyan", 2: "bold green"}


@click.command()
@click.option("--model", "model", metavar="NAME", help="Only this registered model.")
@json_option
@pass_workspace
def status(ws: Workspace, model: str | None, as_json: bool) -> None:
    """Where the loop stands: per model what is in Production and since when, deployments
    and their canary step, the latest monitoring verdict and open alerts, pipelines and
    their last failure, data added since the last training, LLM spend against budgets;
    and the workspace's maturity level (0 manual, 1 automated training pipeline, 2
    continuous training) with what is missing for the next one."""
    found = ws.status(model=model)
    if as_json:
        emit_json(found.to_dict())
        return
    out = console()
    if out.is_terminal:
        _print_status(out, ws, found)
        return
    # Piped: the blocks are laid out at the pipe width; leave no padding at line ends.
    with out.capture() as captured:
        _print_status(out, ws, found)
    click.echo("\n".join(line.rstrip() for line in captured.get().splitlines()))


def _print_status(out: Any, ws: Workspace, found: WorkspaceStatus) -> None:
    if found.empty:
        out.print(text(f"No model registered and no pipeline run yet in {ws.root}.", "bold"))
        out.print(
            text(
                "Start with a training pipeline that registers a model "
                "(`loopml pipelines run FILE:PIPELINE`), or watch the whole loop close in "
                "a fresh workspace: `loopml demo`."
            )
        )
        return
    for item in found.models:
        _model_block(out, item)
    if found.pipelines:
        out.print(text("Pipelines", "bold"))
        out.print(key_values({f"  {p.name}": _pipeline_line(p) for p in found.pipelines}))
        out.print()
    if found.llm is not None:
        _llm_block(out, found.llm)
    _maturity(out, found)


def _model_block(out: Any, item: ModelStatus) -> None:
    head = text(item.name, "bold")
    if item.production is not None:
        head.append(f"  Production v{item.production}")
        if item.production_since is not None:
            head.append(f" since {format_time(item.production_since)}")
        if item.production_how:
            head.append(f" ({item.production_how})")
    else:
        head.append("  nothing in Production", "yellow")
    head.append(f"  {item.versions} version(s)", "dim")
    level = item.maturity.level
    head.append(f"  level {level}", LEVEL_STYLES[level])
    out.print(head)
    rows: dict[str, Any] = {}
    if item.aliases:
        rows["aliases"] = ", ".join(f"@{a}={v}" for a, v in sorted(item.aliases.items()))
    if item.trained_by is not None:
        run = item.trained_by
        rows["trained by"] = (
            f"pipeline {run.pipeline}, run {run.run_id[:8]}"
            + (f" ({run.trigger})" if run.trigger and run.trigger != "manual" else "")
            if run.pipeline
            else f"run {run.run_id[:8]} (not a pipeline)"
        )
    rows["deployed"] = "\n".join(_deployment_line(d) for d in item.deployments) or text(
        "not deployed", "dim"
    )
    if item.deployments:
        rows["monitoring"] = _monitoring(item)
    if item.open_alerts:
        lines = text("")
        for n, alert in enumerate(item.open_alerts[:5]):
            if n:
                lines.append("\n")
            lines.append(f"#{alert.id} {alert.rule} ({alert.severity}, {alert.status})", "red")
            lines.append(f" since {format_time(alert.fired_at)}: {alert.message}")
        if len(item.open_alerts) > 5:
            lines.append(f"\n… and {len(item.open_alerts) - 5} more (`loopml alerts list`)")
        rows["open alerts"] = lines
    rows["retrained by"] = ", ".join(item.retrain_triggers) or text("no alert trigger", "dim")
    rows["guarded by"] = "; ".join(g for g in (item.gate, item.canary) if g) or text(
        "nothing", "dim"
    )
    if item.new_data:
        rows["new data"] = "\n".join(
            f"{c.name}{f' ({c.source})' if c.source and c.source != c.name else ''}: "
            f"{len(c.newer)} newer version(s) since training, latest {c.newer[-1][0][:12]}"
            for c in item.new_data
        )
    elif item.trained_at is not None:
        rows["new data"] = text("none since the last training run", "dim")
    out.print(key_values({f"  {k}": v for k, v in rows.items()}))
    out.print()


def _deployment_line(d: DeploymentStatus) -> str:
    split = ", ".join(
        f"{name} {model.removeprefix('models:/')} "
        + ("shadow" if role == "shadow" else f"{weight:g}%")
        for name, model, weight, role in d.variants
    )
    step = d.step_text()
    return f"{d.name} (rev {d.revision}, {d.strategy}{', ' + step if step else ''}): {split}"


def _monitoring(item: ModelStatus) -> Text:
    line = text("")
    watched = {w.deployment: w for w in item.windows}
    for n, d in enumerate(item.deployments):
        if n:
            line.append("\n")
        window = watched.get(d.name)
        rules = item.alert_rules.get(d.name, ())
        if window is None:
            line.append(f"{d.name}: no window computed", "dim")
        else:
            line.append(f"{d.name}: ")
            line.append(window.verdict, VERDICT_STYLES.get(window.verdict, ""))
            line.append(f" in {format_time(window.start)} – {format_time(window.end)}")
            line.append(f", {window.rows} rows")
            if window.worst_feature is not None and window.worst_psi is not None:
                line.append(f", worst PSI {window.worst_psi:.3g} ({window.worst_feature})")
            line.append(f"; {window.windows} window(s)", "dim")
        line.append(
            f"; rules: {', '.join(rules)}" if rules else "; no alert rule",
            "" if rules else "dim",
        )
    return line


def _pipeline_line(p: PipelineStatus) -> Text:
    line = text("")
    triggers = [
        t + (f" (next {format_time(p.next_runs[t])})" if t in p.next_runs else "")
        for t in p.triggers
    ]
    line.append("triggers: " + (", ".join(triggers) if triggers else "none (run by hand)"))
    if p.running:
        line.append(f"; {len(p.running)} running", "cyan")
    if p.last_run is not None:
        run_id, state, at = p.last_run
        line.append(f"; last run {run_id[:8]} ")
        line.append(state, "green" if state == "FINISHED" else "red" if state == "FAILED" else "")
        line.append(f" {format_time(at)}")
    line.append(f"; {p.runs} run(s)", "dim")
    if p.last_failure is not None:
        run_id, at, error = p.last_failure
        line.append(f"\nlast failure {run_id[:8]} {format_time(at)}", "red")
        if error:
            line.append(f": {error}")
    return line


def _llm_block(out: Any, llm: LlmStatus) -> None:
    out.print(
        text(
            f"LLM spend since {format_time(llm.since)}: ${llm.cost_usd:,.4g} over "
            f"{llm.requests:,} request(s)",
            "bold",
        )
    )
    rows: dict[str, Any] = {}
    for budget in llm.budgets:
        style = "bold red" if budget.fraction >= 1 else "yellow" if budget.fraction >= 0.8 else ""
        rows[f"  {budget.subject}"] = text(
            f"${budget.spent_usd:,.4g} of ${budget.amount_usd:g}/{budget.period} "
            f"({budget.fraction:.0%})",
            style,
        )
    if rows:
        out.print(key_values(rows))
    out.print()


def _maturity(out: Any, found: WorkspaceStatus) -> None:
    from rich.table import Table

    grade = found.maturity
    line = text("Maturity: ", "bold")
    line.append(f"level {grade.level} ({grade.name})", LEVEL_STYLES[grade.level])
    if grade.model is not None and len(found.models) > 1:
        line.append(f", reached by {grade.model}")
    out.print(line)
    # Marker and line in a grid: a long line wraps under its own start, not under the marker.
    lines = Table.grid(padding=(0, 1))
    lines.add_column(no_wrap=True)
    lines.add_column()
    for evidence in grade.evidence:
        lines.add_row(text("  ✓", "green"), text(evidence, "green"))
    if grade.missing:
        lines.add_row(text(" "), text(f"missing for level {grade.level + 1}:"))
        for missing in grade.missing:
            lines.add_row(text("  -", "yellow"), text(missing, "yellow"))
    else:
        lines.add_row(text(" "), text("the loop closes by itself: level 2 is the top level"))
    out.print(lines)
