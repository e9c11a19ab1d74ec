"""``loopml models``: the registry — versions, gated promotion, aliases, rollback, history,
time travel and lineage."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import click

from loopml.cli.context import CliError, pass_workspace
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
    from loopml.registry import ModelVersion, Verdict
    from loopml.workspace import Workspace


def _ref(ref: str) -> str:
    return ref if ref.startswith("models:/") else f"models:/{ref}"


def _version_json(mv: ModelVersion) -> dict[str, Any]:
    return {
        "name": mv.name,
        "version": mv.version,
        "uri": mv.uri,
        "stage": mv.stage,
        "aliases": list(mv.aliases),
        "flavor": mv.flavor,
        "run_id": mv.run_id,
        "digest": mv.digest,
        "created_at": mv.created_at,
        "signature": mv.signature.to_dict() if mv.signature else None,
        "environment": mv.environment,
        "description": mv.description,
        "feature_service": mv.feature_service,
    }


def _print_verdict(verdict: Verdict) -> None:
    out = console()
    state = "PASS" if verdict.passed else "FAIL"
    if verdict.forced:
        state += " (forced: " + (verdict.reason or "") + ")"
    champion = f"version {verdict.champion}" if verdict.champion else "none"
    out.print(f"Gate for {verdict.model}/{verdict.version} vs champion {champion}: {state}")
    if not verdict.checks:
        out.print("No checks ran (no gate configured, no champion to compare with).")
        return
    grid = table("Check", "Result", "Numbers")
    for check in verdict.checks:
        numbers = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in check.details.items()
            if k not in {"traceback", "slices"}
        )
        grid.add_row(
            text(check.name),
            text("pass", "green") if check.passed else text("FAIL", "bold red"),
            text(numbers),
        )
    out.print(grid)


@click.group()
def models() -> None:
    """The model registry: versions, gated promotion, aliases, rollback, lineage."""


@models.command("list")
@json_option
@pass_workspace
def list_models(ws: Workspace, as_json: bool) -> None:
    """List registered models with their Production version and aliases."""
    found = ws.models.list()
    if as_json:
        emit_json(found)
        return
    out = console()
    if not found:
        out.print("No registered models yet. Register one with loopml.register_model(...).")
        return
    grid = table("Model", "Versions", "Latest", "Production", "Staging", "Aliases")
    for m in found:
        aliases = _aliases(m["aliases"]) if m["aliases"] else "-"
        grid.add_row(
            text(m["name"]),
            str(m["versions"]),
            str(m["latest"] or ""),
            str(m["production"] or "-"),
            ", ".join(map(str, m["staging"])) or "-",
            text(aliases),
        )
    out.print(grid)


@models.command("versions")
@click.argument("name")
@json_option
@pass_workspace
def versions(ws: Workspace, name: str, as_json: bool) -> None:
    """List every version of model NAME."""
    found = ws.models.versions(name)
    if as_json:
        emit_json([_version_json(mv) for mv in found])
        return
    grid = table(
        "Version", "Stage", "Aliases", "Flavor", "Run", "Registered", no_wrap={"Registered"}
    )
    for mv in found:
        grid.add_row(
            str(mv.version),
            text(_stage(mv.stage), "green" if mv.stage == "Production" else ""),
            text(", ".join(mv.aliases) or "-"),
            mv.flavor,
            (mv.run_id or "")[:8],
            format_time(mv.created_at),
        )
    console().print(grid)


def _stage(stage: str | None) -> str:
    """A stage for a table cell: ``-`` for a version in no stage (stored as ``"None"``)."""
    return "-" if stage in (None, "None") else stage


def _versions(numbers: list[int]) -> str:
    return ", ".join(map(str, numbers)) or "none"


def _aliases(aliases: dict[str, int]) -> str:
    """``champion → 1, prod → 1``, sorted by alias; ``none`` when there are none."""
    return ", ".join(f"{a} → {v}" for a, v in sorted(aliases.items())) or "none"


def _end_of_second(moment: datetime) -> datetime:
    """Times are printed to the second: ``--at 16:32:07`` includes what happened during that
    second, so a time copied from ``loopml models history`` includes that event."""
    if moment.microsecond:
        return moment
    return moment + timedelta(microseconds=999_999)


@models.command("show")
@click.argument("ref")
@click.option(
    "--at",
    "at",
    metavar="TIME",
    help="Time travel: what held each stage and alias at TIME. " + TIME_HELP,
)
@json_option
@pass_workspace
def show(ws: Workspace, ref: str, at: str | None, as_json: bool) -> None:
    """Show a version (NAME, NAME@ALIAS, NAME@production or NAME/VERSION) and its last gate
    verdict; with --at, which versions held Production and each alias at that time."""
    if at is not None:
        name = ref.removeprefix("models:/").split("@")[0].split("/")[0]
        if name != ref.removeprefix("models:/"):
            raise CliError(
                f"--at shows what held each stage and alias of a model at a time: give the "
                f"model's name alone ({name}), not {ref}."
            )
        moment = parse_time(at, "--at")
        state = ws.models.state_at(name, _end_of_second(moment))
        if as_json:
            emit_json({**state, "at": moment})
            return
        production = state["production"]
        click.echo(
            f"{name} at {format_time(moment)}: "
            f"Production = {production if production is not None else 'none'}; "
            f"Staging = {_versions(state['staging'])}; aliases = {_aliases(state['aliases'])}"
        )
        return
    mv = ws.models.get(_ref(ref))
    verdict = ws.models.verdict(mv.uri)
    if as_json:
        emit_json({**_version_json(mv), "gate": verdict.to_dict() if verdict else None})
        return
    out = console()
    stage = "no stage" if _stage(mv.stage) == "-" else mv.stage
    out.print(f"[bold]{text(mv.name)}[/bold] version {mv.version} — {stage}")
    out.print(f"  uri: {mv.uri}   flavor: {mv.flavor}   run: {mv.run_id or '-'}")
    out.print(
        f"  aliases: {', '.join(mv.aliases) or '-'}   registered: {format_time(mv.created_at)}"
    )
    if mv.signature:
        cols = ", ".join(f"{n}:{d}" for n, d in mv.signature.inputs)
        out.print(f"  inputs: {cols}")
    if verdict:
        _print_verdict(verdict)


@models.command("promote")
@click.argument("name")
@click.argument("version", type=int)
@click.option(
    "--to",
    "to",
    default="production",
    show_default=True,
    type=click.Choice(["production", "staging", "archived"], case_sensitive=False),
    help="Target stage; production goes through the gate.",
)
@click.option("--force", is_flag=True, help="Move even if the gate fails (needs --reason).")
@click.option("--reason", help="Why; required with --force and recorded in the history.")
@click.option(
    "--dry-run",
    is_flag=True,
    help="Run the gate and print its verdict; move and record nothing (exit 1 if it fails).",
)
@json_option
@pass_workspace
def promote(
    ws: Workspace,
    name: str,
    version: int,
    to: str,
    force: bool,
    reason: str | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Promote VERSION of NAME. To production only if the gate passes: candidate and champion
    are scored on the same holdout; the verdict is recorded either way. --dry-run only runs
    the gate (before a canary, say)."""
    from loopml.exceptions import PromotionBlocked

    if dry_run:
        if force or to.lower() != "production":
            raise CliError("--dry-run runs the production gate: leave out --force and --to.")
        checked = ws.models.check_gate(name, version)
        if as_json:
            emit_json(checked.to_dict())
        else:
            _print_verdict(checked)
        if not checked.passed:
            raise CliError(f"The gate would block {name}/{version}; nothing was moved.")
        if not as_json:
            click.echo(f"The gate passes {name}/{version}; nothing was moved (a dry run).")
        return
    try:
        verdict = ws.models.promote(name, version, to=to, force=force, reason=reason)
    except PromotionBlocked as blocked:
        from loopml.registry import Verdict

        if isinstance(blocked.verdict, Verdict):
            if as_json:
                emit_json(blocked.verdict.to_dict())
            else:
                _print_verdict(blocked.verdict)
        first = str(blocked).splitlines()[0]
        raise CliError(first) from blocked
    if as_json:
        emit_json(verdict.to_dict() if verdict else {"name": name, "version": version, "stage": to})
        return
    if verdict is not None:
        _print_verdict(verdict)
    click.echo(f"{name}/{version} is now in {to.capitalize()}.")


@models.command("approve")
@click.argument("name")
@click.argument("version", type=int)
@click.option("--reason", help="Recorded with the approval.")
@pass_workspace
def approve(ws: Workspace, name: str, version: int, reason: str | None) -> None:
    """Approve VERSION of NAME whose gate passed and awaits a human; moves Production."""
    ws.models.approve(name, version, reason=reason)
    click.echo(f"Approved: {name}/{version} is now in Production.")


@models.command("rollback")
@click.argument("name")
@click.option("--reason", help="Recorded in the history.")
@pass_workspace
def rollback(ws: Workspace, name: str, reason: str | None) -> None:
    """Move Production of NAME back to the version that held it before."""
    target = ws.models.rollback(name, reason=reason)
    click.echo(f"Rolled back: {name}/{target} is in Production again.")


@models.group("alias")
def alias() -> None:
    """Point free-form aliases (champion, challenger, …) at versions."""


@alias.command("set")
@click.argument("name")
@click.argument("alias_name", metavar="ALIAS")
@click.argument("version", type=int)
@pass_workspace
def alias_set(ws: Workspace, name: str, alias_name: str, version: int) -> None:
    """Point ALIAS of model NAME at VERSION."""
    ws.models.set_alias(name, alias_name, version)
    click.echo(f"{name}@{alias_name} → version {version}")


@alias.command("delete")
@click.argument("name")
@click.argument("alias_name", metavar="ALIAS")
@pass_workspace
def alias_delete(ws: Workspace, name: str, alias_name: str) -> None:
    """Remove ALIAS from model NAME."""
    ws.models.delete_alias(name, alias_name)
    click.echo(f"Removed {name}@{alias_name}")


@models.command("history")
@click.argument("name")
@json_option
@pass_workspace
def history(ws: Workspace, name: str, as_json: bool) -> None:
    """Every registration, stage and alias move, gate verdict, approval and rollback of NAME:
    who, when, from, to, why."""
    events = ws.models.history(name)
    if as_json:
        emit_json([e.__dict__ for e in events])
        return
    grid = table(
        "When",
        "Event",
        "Version",
        "Target",
        "From",
        "Who",
        "Why / verdict",
        no_wrap={"When", "Event", "Target"},
    )
    for e in events:
        why = e.reason or ""
        if e.verdict is not None:
            why = ("PASS" if e.verdict.get("passed") else "FAIL") + (f" — {why}" if why else "")
        grid.add_row(
            format_time(e.created_at),
            e.kind,
            str(e.version or ""),
            text(e.target or ""),
            str(e.from_version or ""),
            text(e.actor or ""),
            text(why),
        )
    console().print(grid)


@models.command("lineage")
@click.argument("ref")
@json_option
@pass_workspace
def lineage(ws: Workspace, ref: str, as_json: bool) -> None:
    """The chain behind a version: run → params, metrics, code commit, environment, input
    data versions → gate verdict → who promoted it."""
    chain = ws.models.lineage(_ref(ref))
    if as_json:
        emit_json(chain)
        return
    from rich.tree import Tree

    stage = "no stage" if _stage(chain["stage"]) == "-" else chain["stage"]
    root = Tree(text(f"{chain['uri']} ({stage}, {chain['flavor']})", "bold"))
    run = chain["run"]
    if run is None:
        root.add("run: none (registered outside a run)")
    elif run.get("missing"):
        root.add(f"run {run['id']}: missing from the store")
    else:
        node = root.add(
            f"run {run['id'][:8]} {run['name']!r} in {run['experiment']} ({run['status']})"
        )
        node.add("params: " + (", ".join(f"{k}={v}" for k, v in run["params"].items()) or "-"))
        node.add(
            "metrics: " + (", ".join(f"{k}={v:.4g}" for k, v in run["metrics"].items()) or "-")
        )
        code = run["code"]
        dirty = " (dirty)" if code.get("dirty") else ""
        node.add(f"code: {code.get('commit') or 'not in git'}{dirty} {code.get('branch') or ''}")
        env = run["environment"]
        node.add(f"environment: python {env.get('python')} on {env.get('host')}")
        data = node.add("inputs:")
        for item in run["inputs"] or []:
            data.add(f"{item['name']}: {item['digest'][:16]} ({item.get('source') or 'in memory'})")
    features = chain.get("features")
    if features:
        root.add(
            f"features: {features['service']} version {features['version']} "
            f"({', '.join(features['features'])})"
        )
    gate = chain["gate"]
    if gate:
        root.add(
            f"gate: {'PASS' if gate['passed'] else 'FAIL'}"
            + (" (forced)" if gate.get("forced") else "")
        )
    for p in chain["promotions"]:
        root.add(
            f"{p['kind']} → {p['stage']} by {p['actor']} at "
            f"{format_time(datetime.fromisoformat(p['at']))}"
            + (f": {p['reason']}" if p["reason"] else "")
        )
    console().print(root)
