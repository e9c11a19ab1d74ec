"""``loopml prompts``: the prompt registry — register versions, move labels (through the
gate for protected ones), roll back, read the history, time travel, diff and render.

    loopml prompts register support/answer --file answer.yaml --model gpt-4o-mini -m "tone"
    loopml prompts label support/answer production 4 --reason "eval 0.93"
    loopml prompts show support/answer@production --at 2026-11-30T16:32:07-05:00
    loopml prompts diff support/answer 3 4
    loopml prompts render support/answer@production --var question="Where is my order?"
    loopml prompts split support/answer production 4=50 5=50 --reason "new tone"
    loopml prompts ab support/answer --label production --metric feedback
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
    from loopml.llm.prompts import LabelMove, PromptVersion
    from loopml.workspace import Workspace


@click.group()
def prompts() -> None:
    """The prompt registry: versions, labels with history, gated promotion, rollback."""


def _read_template(path: Path) -> tuple[Any, dict[str, Any]]:
    """The template in ``path`` and what else the file sets (model, params, schema).

    A ``.json``/``.yaml``/``.yml`` file holds a chat (a list of messages) or an object with
    ``template`` (text or messages) and optionally ``model``, ``params`` and ``schema``; any
    other file is a text template, as is.
    """
    from loopml.exceptions import InvalidInput

    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInput(f"No template file {str(path)!r}") from None
    except UnicodeDecodeError:
        raise InvalidInput(f"{path} is not UTF-8 text") from None
    suffix = path.suffix.lower()
    if suffix not in (".json", ".yaml", ".yml"):
        return raw, {}
    import yaml

    try:
        data = json.loads(raw) if suffix == ".json" else yaml.safe_load(raw)
    except (ValueError, yaml.YAMLError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidInput(f"{path} does not parse: {first}") from None
    if isinstance(data, list):
        return data, {}
    if isinstance(data, dict) and "template" in data:
        extra = sorted(set(data) - {"template", "model", "params", "schema"})
        if extra:
            raise InvalidInput(
                f"{path}: unknown key(s) {', '.join(extra)}; the file holds template and "
                "optionally model, params, schema"
            )
        rest = {k: data[k] for k in ("model", "params", "schema") if k in data}
        return data["template"], rest
    raise InvalidInput(
        f"{path} holds neither a list of messages nor an object with 'template' (and "
        "optionally model, params, schema)"
    )


def _pairs(values: tuple[str, ...], option: str) -> dict[str, Any]:
    """``KEY=VALUE`` pairs; a value that is JSON (a number, true, a list) is read as JSON."""
    from loopml.exceptions import InvalidInput

    out: dict[str, Any] = {}
    for item in values:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise InvalidInput(f"{option} takes KEY=VALUE, got {item!r}")
        out[key.strip()] = value
    return out


def _json_values(pairs: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs.items():
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


@prompts.command("register")
@click.argument("name")
@click.option(
    "--file",
    "-f",
    "path",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="The template: a text file, or .json/.yaml with a list of messages (a chat) or "
    "an object with template, model, params, schema.",
)
@click.option("--model", help="The model the prompt is meant for (a gateway alias).")
@click.option(
    "--param", "params", multiple=True, metavar="KEY=VALUE", help="A model parameter (JSON)."
)
@click.option("--message", "-m", "message", help="What changed (kept with the version).")
@json_option
@pass_workspace
def register(
    ws: Workspace,
    name: str,
    path: Path,
    model: str | None,
    params: tuple[str, ...],
    message: str | None,
    as_json: bool,
) -> None:
    """Register the template in --file as the next version of NAME (the same content again
    is the version it already is). Variables are written {{ name }}."""
    from loopml.llm.prompts import list_versions, register_prompt
    from loopml.llm.prompts.versions import PromptNotFound

    template, rest = _read_template(path)
    merged = {**dict(rest.get("params") or {}), **_json_values(_pairs(params, "--param"))}
    try:
        before = len(list_versions(name, workspace=ws))
    except PromptNotFound:
        before = 0
    version = register_prompt(
        name,
        template,
        model=model or rest.get("model"),
        params=merged,
        schema=rest.get("schema"),
        commit_message=message,
        workspace=ws,
    )
    if as_json:
        emit_json(version.to_dict())
        return
    new = version.version > before
    variables = ", ".join(version.variables) or "none"
    what = "Registered" if new else "Unchanged: already"
    click.echo(f"{what} {version.ref} ({version.kind}; variables: {variables})")


@prompts.command("list")
@json_option
@pass_workspace
def list_(ws: Workspace, as_json: bool) -> None:
    """Every prompt: its versions, the latest, its labels."""
    from loopml.llm.prompts import list_prompts

    rows = list_prompts(workspace=ws)
    if as_json:
        emit_json(rows)
        return
    if not rows:
        console().print("No prompts yet: `loopml prompts register NAME --file F` adds one.")
        return
    grid = table("Name", "Versions", "Latest", "Labels", "Updated", no_wrap={"Name", "Updated"})
    for row in rows:
        labels = ", ".join(
            _label_text(label, v, row["splits"].get(label)) for label, v in row["labels"].items()
        )
        grid.add_row(
            text(row["name"]),
            str(row["versions"]),
            str(row["latest"]),
            text(labels or "-"),
            format_time(row["updated_at"]),
        )
    console().print(grid)


def _label_text(label: str, version: int, split: Any = None) -> str:
    """``production → 4``, or during an A/B test ``production: 4 (50%) / 5 (50%)``."""
    from loopml.llm.prompts.refs import split_text

    if split:
        return f"{label}: {split_text(tuple((int(v), w) for v, w in split))}"
    return f"{label} → {version}"


def _end_of_second(moment: datetime) -> datetime:
    """Times are printed to the second: ``--at 16:32:07`` includes that whole second, so a
    time copied from ``loopml prompts history`` includes that move."""
    return moment if moment.microsecond else moment + timedelta(microseconds=999_999)


def _print_version(version: PromptVersion) -> None:
    out = console()
    labels = ", ".join(version.labels) or "-"
    out.print(f"[bold]{text(version.ref)}[/bold] ({version.kind})   labels: {text(labels)}")
    out.print(
        f"  model: {text(version.model or '-')}   params: "
        f"{text(json.dumps(dict(version.params)) if version.params else '-')}   "
        f"variables: {text(', '.join(version.variables) or '-')}"
    )
    out.print(
        f"  registered: {format_time(version.created_at)} by {text(version.created_by or '-')}"
        f"   digest: {version.digest[:12]}"
    )
    if version.commit_message:
        out.print(f"  message: {text(version.commit_message)}")
    if version.schema is not None:
        out.print(f"  schema: {text(json.dumps(version.schema))}")
    out.print()
    if isinstance(version.template, str):
        out.print(text(version.template))
        return
    for message in version.template:
        out.print(text(f"[{message['role']}]", "bold"))
        out.print(text(message["content"]))


@prompts.command("show")
@click.argument("ref")
@click.option(
    "--at",
    "at",
    metavar="TIME",
    help="Time travel: the version REF named at TIME, and where each label pointed. " + TIME_HELP,
)
@json_option
@pass_workspace
def show(ws: Workspace, ref: str, at: str | None, as_json: bool) -> None:
    """Show a version: NAME (the latest), NAME@LABEL, NAME@latest or NAME/VERSION, with its
    template; with --at, as it was then."""
    from loopml.llm.prompts import PromptRef, get_prompt, label_splits

    parsed = PromptRef.parse(ref)
    moment = parse_time(at, "--at") if at is not None else None
    when = _end_of_second(moment) if moment is not None else None
    version = get_prompt(parsed, at=when, workspace=ws)
    if moment is not None:
        state = label_splits(parsed.name, at=when, workspace=ws)
        if as_json:
            emit_json(
                {
                    **version.to_dict(),
                    "at": moment,
                    "labels_at": {label: s.version for label, s in state.items()},
                    "splits_at": {
                        label: s.to_dict()["split"] for label, s in state.items() if s.split
                    },
                }
            )
            return
        shown = (
            ", ".join(_label_text(label, s.version, s.split) for label, s in state.items())
            or "none"
        )
        click.echo(f"{parsed.name} at {format_time(moment)}: labels {shown}")
    elif as_json:
        emit_json(version.to_dict())
        return
    elif parsed.label is not None:
        split = label_splits(parsed.name, workspace=ws)[parsed.label].split
        if split:
            click.echo(
                f"{parsed} is an A/B test: {_label_text(parsed.label, version.version, split)} "
                f"(showing the control, {version.ref})"
            )
    _print_version(version)


@prompts.command("versions")
@click.argument("name")
@json_option
@pass_workspace
def versions(ws: Workspace, name: str, as_json: bool) -> None:
    """Every version of NAME: when, by whom, its labels and message."""
    from loopml.llm.prompts import label_splits, list_versions

    found = list_versions(name, workspace=ws)
    if as_json:
        emit_json([v.to_dict() for v in found])
        return
    # an A/B test's label shows on every version of its split, with the version's share
    splits = {label: s.split for label, s in label_splits(name, workspace=ws).items() if s.split}
    grid = table(
        "Version", "Kind", "Model", "Labels", "Registered", "By", "Message", no_wrap={"Registered"}
    )
    for v in found:
        labels = [label for label in v.labels if label not in splits]
        labels += [
            f"{label} ({weight:g}%)"
            for label, split in splits.items()
            for version, weight in split
            if version == v.version
        ]
        grid.add_row(
            str(v.version),
            v.kind,
            text(v.model or "-"),
            text(", ".join(labels) or "-"),
            format_time(v.created_at),
            text(v.created_by or "-"),
            text(v.commit_message or ""),
        )
    console().print(grid)


def _move_line(move: LabelMove) -> str:
    before = f"{move.previous_version}" if move.previous_version is not None else "none"
    return f"{move.name}@{move.label}: {before} → {move.target}"


@prompts.command("label")
@click.argument("name")
@click.argument("label")
@click.argument("version", type=int)
@click.option("--reason", help="Why; recorded in the history (required with --force).")
@click.option(
    "--force",
    is_flag=True,
    help="Move a protected label without a passing gate; recorded as an override.",
)
@json_option
@pass_workspace
def label(
    ws: Workspace,
    name: str,
    label: str,
    version: int,
    reason: str | None,
    force: bool,
    as_json: bool,
) -> None:
    """Point LABEL of NAME at VERSION. A protected label ([prompts] protected_labels) moves
    only through a gate, or with --force --reason (recorded as an override)."""
    from loopml.llm.evals.gate import gate_for
    from loopml.llm.prompts import set_label

    gate = gate_for(ws, name, label)  # an eval gate when the label is protected and one is set
    move = set_label(name, label, version, reason=reason, gate=gate, force=force, workspace=ws)
    if as_json:
        emit_json(move.to_dict())
        return
    suffix = " (override)" if move.kind == "override" else ""
    click.echo(_move_line(move) + suffix)


@prompts.command("split")
@click.argument("name")
@click.argument("label")
@click.argument("weights", nargs=-1, required=True, metavar="VERSION=PERCENT...")
@click.option("--reason", help="Why; recorded in the history (required with --force).")
@click.option(
    "--force",
    is_flag=True,
    help="Split a protected label without a passing gate; recorded as an override.",
)
@json_option
@pass_workspace
def split(
    ws: Workspace,
    name: str,
    label: str,
    weights: tuple[str, ...],
    reason: str | None,
    force: bool,
    as_json: bool,
) -> None:
    """Start an A/B test: LABEL of NAME shares its traffic between versions by percent
    (4=50 5=50), sticky per end user; the label's current version, when in the split, stays
    its control. `loopml prompts label` to one version ends the test; `loopml prompts ab`
    compares them. A protected label splits only when every new version passes its gate."""
    from loopml.exceptions import InvalidInput
    from loopml.llm.evals.gate import gate_for
    from loopml.llm.prompts import split_label

    parsed: list[tuple[int, float]] = []
    for item in weights:
        version, eq, weight = item.partition("=")
        try:
            number = float(weight)
            parsed.append((int(version), int(number) if number.is_integer() else number))
        except ValueError:
            raise InvalidInput(
                f"Weights are VERSION=PERCENT like 4=50 5=50, got {item!r}"
                + ("" if eq else " (no '=')")
            ) from None
    gate = gate_for(ws, name, label)
    move = split_label(name, label, parsed, reason=reason, gate=gate, force=force, workspace=ws)
    if as_json:
        emit_json(move.to_dict())
        return
    suffix = " (override)" if move.kind == "override" else ""
    click.echo(_move_line(move) + suffix)


@prompts.command("ab")
@click.argument("name")
@click.option("--label", default="production", show_default=True, help="The label split.")
@click.option(
    "--metric",
    default="feedback",
    show_default=True,
    help="feedback (the requests' feedback), online:EVALUATOR (e.g. online:groundedness), "
    "or eval (eval-suite runs of each version).",
)
@click.option(
    "--feedback-name",
    default="user",
    show_default=True,
    help="Which feedback (its name) the feedback metric reads.",
)
@click.option(
    "--since",
    metavar="TIME",
    help="From this time, or this long ago (7d); default: when the split started. " + TIME_HELP,
)
@click.option("--mde", type=float, help="Minimum detectable effect: sizes the planned sample.")
@click.option("--alpha", type=float, default=0.05, show_default=True, help="Significance level.")
@json_option
@pass_workspace
def ab(
    ws: Workspace,
    name: str,
    label: str,
    metric: str,
    feedback_name: str,
    since: str | None,
    mde: float | None,
    alpha: float,
    as_json: bool,
) -> None:
    """Compare the versions LABEL of NAME is split between: requests, end users, outcomes,
    the test of each version against the control (z test for thumbs, Welch's t for scores),
    an always-valid sequential p-value, and what to do next. Only requests made through
    NAME@LABEL count (not those that named a version directly)."""
    from loopml.cli.llm import parse_since
    from loopml.llm.prompts import prompt_ab

    found = prompt_ab(
        name,
        label,
        metric=metric,
        feedback_name=feedback_name,
        since=parse_since(since),
        alpha=alpha,
        mde=mde,
        workspace=ws,
    )
    if as_json:
        emit_json(found.to_dict())
        return
    click.echo(found.render(format_time))


@prompts.command("rollback")
@click.argument("name")
@click.argument("label")
@click.option("--reason", help="Recorded in the history.")
@json_option
@pass_workspace
def rollback_(ws: Workspace, name: str, label: str, reason: str | None, as_json: bool) -> None:
    """Move LABEL of NAME back to the version that held it before (again: the one before)."""
    from loopml.llm.prompts import rollback

    move = rollback(name, label, reason=reason, workspace=ws)
    if as_json:
        emit_json(move.to_dict())
        return
    click.echo(f"Rolled back {_move_line(move)}")


@prompts.command("history")
@click.argument("name")
@click.argument("label", required=False)
@json_option
@pass_workspace
def history(ws: Workspace, name: str, label: str | None, as_json: bool) -> None:
    """Every move of NAME's labels (or of LABEL): when, who, from, to, why, the verdict."""
    from loopml.llm.prompts import label_history

    moves = label_history(name, label, workspace=ws)
    if as_json:
        emit_json([m.to_dict() for m in moves])
        return
    grid = table(
        "When", "Label", "Move", "From", "To", "Who", "Why / verdict", no_wrap={"When", "Label"}
    )
    for m in moves:
        why = m.reason or ""
        if m.verdict is not None:
            state = "PASS" if m.verdict.passed else "FAIL"
            summary = f" {m.verdict.summary}" if m.verdict.summary else ""
            why = f"{state}{summary}" + (f" — {why}" if why else "")
        grid.add_row(
            format_time(m.created_at),
            text(m.label),
            m.kind,
            str(m.previous_version) if m.previous_version is not None else "-",
            text(m.target),
            text(m.actor or ""),
            text(why),
        )
    console().print(grid)


@prompts.command("diff")
@click.argument("name")
@click.argument("a")
@click.argument("b")
@pass_workspace
def diff_(ws: Workspace, name: str, a: str, b: str) -> None:
    """A unified diff from version (or label) A to B of NAME: the template, then the model,
    params and schema where they differ."""
    from loopml.llm.prompts import diff

    out = diff(name, a, b, workspace=ws)
    click.echo(out if out else f"{name}: {a} and {b} have the same content.")


@prompts.command("render")
@click.argument("ref")
@click.option("--var", "variables", multiple=True, metavar="KEY=VALUE", help="A variable.")
@click.option(
    "--vars-file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="A JSON object of variables (--var wins).",
)
@json_option
@pass_workspace
def render(
    ws: Workspace, ref: str, variables: tuple[str, ...], vars_file: Path | None, as_json: bool
) -> None:
    """Fill in the variables of REF (NAME, NAME@LABEL or NAME/VERSION) and print the text, or
    the chat's messages."""
    from loopml.exceptions import InvalidInput
    from loopml.llm.prompts import get_prompt

    given: dict[str, Any] = {}
    if vars_file is not None:
        try:
            loaded = json.loads(vars_file.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise InvalidInput(f"{vars_file} is not JSON: {exc}") from None
        if not isinstance(loaded, dict):
            raise InvalidInput(f"{vars_file} must hold a JSON object of variables")
        given.update(loaded)
    given.update(_pairs(variables, "--var"))
    version = get_prompt(ref, workspace=ws)
    rendered = version.render(**given)
    if as_json:
        emit_json({"ref": version.ref, "kind": version.kind, "rendered": rendered})
        return
    if isinstance(rendered, str):
        click.echo(rendered)
        return
    for message in rendered:
        click.echo(f"[{message['role']}]\n{message['content']}")
