"""``loopml runs``: find, inspect, compare, delete, restore and reproduce runs.

A RUN argument is a full run id or a unique prefix of one (at least four characters), the
way ``git`` takes abbreviated commits.
"""

from __future__ import annotations

import math
import re
import shlex
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from loopml.cli.context import CliError, pass_workspace
from loopml.cli.render import (
    console,
    emit_json,
    format_duration,
    format_size,
    format_time,
    format_value,
    json_option,
    key_values,
    short_id,
    status_text,
    table,
    text,
)
from loopml.exceptions import LoopmlError
from loopml.wording import counted

if TYPE_CHECKING:
    from rich.console import Console

    from loopml.tracking import RunRecord
    from loopml.workspace import Workspace

MIN_PREFIX = 4
MAX_CANDIDATES = 10
#: How many metric and param columns `runs list` picks when --columns is not given.
AUTO_METRICS = 4
AUTO_PARAMS = 3
SECTIONS = ("params", "metrics", "tags")
_HEX = re.compile(r"[0-9a-f]+")


@click.group()
def runs() -> None:
    """Find, inspect, compare, delete and reproduce runs.

    RUN is a full run id or a unique prefix of one (at least 4 characters).
    """


# -- resolving RUN arguments ----------------------------------------------------------------


def resolve_run(ws: Workspace, ref: str) -> RunRecord:
    """The run whose id is ``ref`` or starts with it (deleted runs included)."""
    from loopml.exceptions import InvalidInput, RunNotFound

    ref = ref.strip()
    try:
        return ws.runs.get(ref)
    except RunNotFound:
        pass
    prefix = ref.lower()
    if len(prefix) < MIN_PREFIX:
        raise InvalidInput(
            f"Run id prefix {ref!r} is too short: give at least {MIN_PREFIX} characters "
            "(see `loopml runs list`)."
        )
    if not _HEX.fullmatch(prefix):
        raise RunNotFound(f"No run {ref!r}. List runs with `loopml runs list` to find its id.")
    # The prefix is hex, so it is safe inside the quoted LIKE pattern.
    found = ws.runs.records(
        filter=f"attributes.run_id LIKE '{prefix}%'",
        include_deleted=True,
        max_results=MAX_CANDIDATES + 1,
    )
    if not found:
        raise RunNotFound(
            f"No run with id or id prefix {ref!r}. List runs with `loopml runs list --all`."
        )
    if len(found) == 1:
        return ws.runs.get(found[0]["run_id"])
    candidates = ", ".join(
        f"{rec['run_id'][:12]} ({rec['name']}, {rec['experiment']})"
        for rec in found[:MAX_CANDIDATES]
    )
    count = f"more than {MAX_CANDIDATES}" if len(found) > MAX_CANDIDATES else str(len(found))
    raise InvalidInput(
        f"Run id prefix {ref!r} is ambiguous: it matches {count} runs: {candidates}. "
        "Give more characters of the id."
    )


# -- list -------------------------------------------------------------------------------------


@runs.command("list")
@click.option(
    "--experiment",
    "-e",
    "experiment_names",
    multiple=True,
    metavar="NAME",
    help="Only runs of this experiment (repeat for several).",
)
@click.option(
    "--filter",
    "-f",
    "filter_text",
    metavar="EXPR",
    help="Search filter, e.g. \"metrics.acc > 0.9 and params.model = 'rf'\".",
)
@click.option(
    "--order-by",
    "-o",
    multiple=True,
    metavar="CLAUSE",
    help="One sort key with optional ASC/DESC, e.g. 'metrics.acc DESC'; repeat the option "
    "for several keys (-o 'metrics.acc DESC' -o params.lr). Default: newest first.",
)
@click.option(
    "--max-results",
    "-n",
    type=click.IntRange(min=1),
    metavar="N",
    default=100,
    show_default=True,
    help="Show at most this many runs.",
)
@click.option("--all", "include_deleted", is_flag=True, help="Include deleted runs.")
@click.option(
    "--columns",
    "-c",
    multiple=True,
    metavar="KEYS",
    help="Table columns after the run info: comma-separated keys such as "
    "params.lr,metrics.acc,tags.team. Default: the keys the filter and order use, then "
    f"the {AUTO_METRICS} most common metrics and the {AUTO_PARAMS} most telling params.",
)
@json_option
@pass_workspace
def list_runs(
    ws: Workspace,
    experiment_names: tuple[str, ...],
    filter_text: str | None,
    order_by: tuple[str, ...],
    max_results: int,
    include_deleted: bool,
    columns: tuple[str, ...],
    as_json: bool,
) -> None:
    """List runs, newest first: id, name, experiment, status, start, duration and key
    params and metrics (every param, metric and tag with --json)."""
    extra = _parse_columns(columns)
    records = ws.runs.records(
        experiments=list(experiment_names) or None,
        filter=filter_text,
        order_by=list(order_by) or None,
        max_results=max_results + 1,  # one more, to tell whether the list was cut
        include_deleted=include_deleted,
    )
    cut = len(records) > max_results
    records = records[:max_results]
    if as_json:
        emit_json(records)
        return
    out = console()
    if not records:
        out.print(_nothing_listed(ws, experiment_names, filter_text, include_deleted))
        return
    if not extra:
        extra = _auto_columns(records, filter_text, order_by)
    # Key columns get a two-line header, the section over the name ("metrics" / "accuracy"),
    # so a long key doesn't widen (or, in a full table, truncate) its column.
    above = "\n" if extra else ""
    grid = table(
        *(above + name for name in ("Run", "Name", "Experiment", "Status", "Started", "Duration")),
        no_wrap={above + name for name in ("Run", "Status", "Started", "Duration")},
    )
    for key in extra:
        section, _, name = key.partition(".")
        grid.add_column(f"{section}\n{name}", justify="right" if section == "metrics" else "left")
    now = datetime.now(UTC)
    for rec in records:
        duration = format_duration(rec["duration"])
        if rec["end_time"] is None and rec["status"] == "RUNNING":
            duration = format_duration((now - rec["start_time"]).total_seconds()) + "…"
        cells = [_cell(rec, key) for key in extra]
        grid.add_row(
            short_id(rec["run_id"]),
            text(rec["name"]),
            text(rec["experiment"]),
            status_text(rec["status"], rec["deleted"]),
            format_time(rec["start_time"]),
            duration,
            *cells,
        )
    out.print(grid)
    if cut:
        click.echo(
            f"(showing the first {max_results} runs; raise --max-results to see more)", err=True
        )


def _nothing_listed(
    ws: Workspace,
    experiment_names: tuple[str, ...],
    filter_text: str | None,
    include_deleted: bool,
) -> str:
    """What `runs list` says when it lists nothing, with a hint when deleted runs would show."""
    message = "No runs match." if filter_text or experiment_names else "No runs yet."
    if include_deleted:
        return message
    deleted = ws.runs.records(
        experiments=list(experiment_names) or None,
        filter=filter_text,
        include_deleted=True,
        max_results=1000,
    )
    if not deleted:
        return message
    one = len(deleted) == 1
    count = str(len(deleted)) if len(deleted) < 1000 else "1000 or more"
    if not (filter_text or experiment_names):
        return (
            f"No runs to show: {count} deleted run{'' if one else 's'} "
            f"{'is' if one else 'are'} hidden (`loopml runs list --all` lists "
            f"{'it' if one else 'them'})."
        )
    return (
        f"No runs match; {count} deleted run{' matches' if one else 's match'} "
        f"(add --all to list {'it' if one else 'them'})."
    )


def _parse_columns(columns: tuple[str, ...]) -> list[str]:
    keys = [part.strip() for item in columns for part in item.split(",") if part.strip()]
    for key in keys:
        section, dot, name = key.partition(".")
        if not dot or not name or section not in SECTIONS:
            raise click.BadParameter(
                f"{key!r} is not a column: use params.NAME, metrics.NAME or tags.NAME.",
                param_hint="'--columns'",
            )
    return list(dict.fromkeys(keys))


def _mentioned_keys(filter_text: str | None, order_by: tuple[str, ...]) -> list[str]:
    """``params.x``/``metrics.y``/``tags.z`` keys the filter and order-by refer to, in order."""
    from loopml.tracking.filter import BoolOp, Expr, Key, parse_filter, parse_order_by

    keys: list[Key] = []

    def walk(expr: Expr | None) -> None:
        if isinstance(expr, BoolOp):
            for item in expr.items:
                walk(item)
        elif expr is not None:
            keys.append(expr.key)

    walk(parse_filter(filter_text))
    keys.extend(clause.key for clause in parse_order_by(list(order_by)))
    section = {"param": "params", "metric": "metrics", "tag": "tags"}
    columns = [f"{section[k.kind]}.{k.name}" for k in keys if k.kind in section]
    return list(dict.fromkeys(columns))


def _auto_columns(
    records: list[dict[str, Any]], filter_text: str | None, order_by: tuple[str, ...]
) -> list[str]:
    """The keys worth a column: those searched on, then common metrics, then params whose
    values differ between the listed runs."""
    chosen = _mentioned_keys(filter_text, order_by)

    def ranked(section: str, limit: int) -> list[str]:
        counts = Counter(key for rec in records for key in rec[section])

        def rank(key: str) -> tuple[int, int, str]:
            distinct = {rec[section][key] for rec in records if key in rec[section]}
            return (0 if len(distinct) > 1 else 1, -counts[key], key)

        picked = [f"{section}.{k}" for k in sorted(counts, key=rank)]
        return [key for key in picked if key not in chosen][:limit]

    return chosen + ranked("metrics", AUTO_METRICS) + ranked("params", AUTO_PARAMS)


def _cell(rec: dict[str, Any], key: str) -> Any:
    section, _, name = key.partition(".")
    value = rec[section].get(name)
    return text(format_value(value), "dim" if value is None else "")


# -- show -------------------------------------------------------------------------------------


@runs.command("show")
@click.argument("run")
@json_option
@pass_workspace
def show(ws: Workspace, run: str, as_json: bool) -> None:
    """Show RUN: info, params, latest metrics, tags, inputs, environment and, for a failed
    run, its traceback."""
    record = resolve_run(ws, run)
    if as_json:
        emit_json(_record_json(record))
        return
    out = console()
    out.print(text(f"Run {record.id}", "bold"))
    info: dict[str, Any] = {
        "name": record.name,
        "experiment": f"{record.experiment} (id {record.experiment_id})",
        "status": status_text(record.status, record.deleted),
        "started": format_time(record.start_time),
        "ended": format_time(record.end_time),
        "duration": format_duration(record.duration),
    }
    if record.parent_run_id:
        info["parent run"] = record.parent_run_id
    if record.seed is not None:
        info["seed"] = str(record.seed)
    stored = ws.runs.list_artifacts(record.id)
    info["artifacts"] = (
        f"{counted(len(stored), 'file')}, {format_size(sum(a.size for a in stored))} "
        f"(loopml runs artifacts {short_id(record.id)})"
        if stored
        else "none"
    )
    out.print(key_values(info))
    _print_section(out, "Params", record.params)
    _print_section(out, "Metrics (latest)", record.metrics)
    _print_section(out, "Tags", record.tags)
    if record.inputs:
        grid = table("Name", "Digest", "Source", "Size", "Files", title="Inputs")
        for item in record.inputs:
            grid.add_row(
                text(item["name"]),
                text(item["digest"][:16]),
                text(item["source"] or ""),
                format_size(item["size"]),
                format_value(item["file_count"]),
            )
        out.print()
        out.print(grid)
    out.print()
    out.print(text("Environment", "bold"))
    if record.environment is None:
        out.print(text("  not recorded (the run used log_environment=False)", "dim"))
    else:
        out.print(key_values(_environment_summary(record.environment)))
    if record.error:
        out.print()
        out.print(text("Error", "bold red"))
        out.print(text(record.error.rstrip()))


def _record_json(record: RunRecord) -> dict[str, Any]:
    return {
        "run_id": record.id,
        "name": record.name,
        "experiment": record.experiment,
        "experiment_id": record.experiment_id,
        "status": record.status,
        "start_time": record.start_time,
        "end_time": record.end_time,
        "duration": record.duration,
        "parent_run_id": record.parent_run_id,
        "deleted": record.deleted,
        "seed": record.seed,
        "error": record.error,
        "params": record.params,
        "metrics": record.metrics,
        "tags": record.tags,
        "inputs": record.inputs,
        "environment": record.environment,
    }


def _print_section(out: Console, title: str, values: dict[str, Any]) -> None:
    out.print()
    out.print(text(title, "bold"))
    if values:
        out.print(key_values({f"  {k}": format_value(v) for k, v in values.items()}))
    else:
        out.print(text("  none", "dim"))


def _environment_summary(env: dict[str, Any]) -> dict[str, str]:
    python = env.get("python") or {}
    system = env.get("platform") or {}
    rows = {
        "  python": " ".join(
            part
            for part in (
                python.get("version"),
                f"({python['implementation']})" if python.get("implementation") else None,
                python.get("executable"),
            )
            if part
        ),
        "  platform": system.get("platform") or system.get("system") or "",
        "  host": env.get("host") or "",
        "  user": env.get("user") or "",
    }
    git = env.get("git")
    if not git:
        rows["  git"] = "not a git checkout"
    else:
        rows["  git commit"] = git.get("commit") or "none yet"
        rows["  git branch"] = git.get("branch") or ""
        rows["  git dirty"] = "yes (diff recorded)" if git.get("dirty") else "no"
        if git.get("remote"):
            rows["  git remote"] = git["remote"]
    digest = env.get("packages_digest") or ""
    rows["  packages"] = f"{env.get('package_count', '?')} installed (list {digest[:12]})"
    if env.get("gpus"):
        rows["  gpus"] = ", ".join(g.get("name", "?") for g in env["gpus"])
    if env.get("argv"):
        rows["  command"] = shlex.join(str(a) for a in env["argv"])
    if env.get("cwd"):
        rows["  cwd"] = env["cwd"]
    return rows


# -- artifacts --------------------------------------------------------------------------------


@runs.command("artifacts")
@click.argument("run")
@click.option("--path", "-p", metavar="P", help="Only this artifact file or folder.")
@click.option(
    "--download",
    "-d",
    "dst",
    type=click.Path(file_okay=False, path_type=Path),
    metavar="DST",
    help="Download the artifacts into folder DST, verifying every digest, instead of listing them.",
)
@json_option
@pass_workspace
def artifacts(ws: Workspace, run: str, path: str | None, dst: Path | None, as_json: bool) -> None:
    """List RUN's artifacts, or download them with --download."""
    record = resolve_run(ws, run)
    items = ws.runs.list_artifacts(record.id, path)
    files = [{"path": a.path, "size": a.size, "digest": a.digest} for a in items]
    if dst is not None:
        try:
            local = ws.runs.download_artifacts(record.id, path, dst)
        except OSError as exc:
            if isinstance(exc, LoopmlError):
                raise
            raise CliError(f"Cannot download into {dst}: {exc.strerror or exc}") from exc
        if as_json:
            emit_json({"run_id": record.id, "path": str(local.resolve()), "files": files})
        else:
            total = format_size(sum(a.size for a in items))
            click.echo(
                f"Downloaded {counted(len(items), 'file')} ({total}) of run {short_id(record.id)} "
                f"to {local.resolve()}"
            )
        return
    if as_json:
        emit_json(files)
        return
    out = console()
    if not items:
        where = f" under {path!r}" if path else ""
        out.print(f"Run {short_id(record.id)} ({record.name}) has no artifacts{where}.")
        return
    grid = table("Path", "Size", "Digest")
    grid.columns[1].justify = "right"
    for item in items:
        grid.add_row(text(item.path), format_size(item.size), item.digest[:16])
    out.print(grid)
    out.print(f"{counted(len(items), 'file')}, {format_size(sum(a.size for a in items))}")


# -- delete / restore -------------------------------------------------------------------------


@runs.command("delete")
@click.argument("run")
@pass_workspace
def delete(ws: Workspace, run: str) -> None:
    """Delete RUN: hide it from listings, keeping it until `loopml runs restore`."""
    record = resolve_run(ws, run)
    if record.deleted:
        click.echo(f"Run {record.id} ({record.name}) is already deleted.")
        return
    ws.runs.delete(record.id)
    click.echo(
        f"Deleted run {record.id} ({record.name}). "
        f"Undo with: loopml runs restore {short_id(record.id)}"
    )


@runs.command("restore")
@click.argument("run")
@pass_workspace
def restore(ws: Workspace, run: str) -> None:
    """Restore RUN after `loopml runs delete`."""
    record = resolve_run(ws, run)
    if not record.deleted:
        click.echo(f"Run {record.id} ({record.name}) is not deleted.")
        return
    ws.runs.restore(record.id)
    click.echo(f"Restored run {record.id} ({record.name}).")


# -- compare ----------------------------------------------------------------------------------


@runs.command("compare")
@click.argument("run_refs", metavar="RUN RUN...", nargs=-1, required=True)
@click.option(
    "--all",
    "show_all",
    is_flag=True,
    help="Show every param and metric, not only those that differ.",
)
@json_option
@pass_workspace
def compare(ws: Workspace, run_refs: tuple[str, ...], show_all: bool, as_json: bool) -> None:
    """Compare the params and latest metrics of two or more runs side by side.

    Only the rows whose values differ are shown, unless --all is given.
    """
    records = list({r.id: r for r in (resolve_run(ws, ref) for ref in run_refs)}.values())
    if len(records) < 2:
        raise click.UsageError("Give at least two different runs to compare.")
    rows = _comparison_rows(records)
    shown = rows if show_all else [row for row in rows if row["differs"]]
    if as_json:
        emit_json(
            {
                "runs": [
                    {"run_id": r.id, "name": r.name, "experiment": r.experiment} for r in records
                ],
                "rows": shown,
            }
        )
        return
    out = console()
    if not shown:
        params = sum(row["key"].startswith("params.") for row in rows)
        out.print(
            f"The {len(records)} runs have the same {params} params and {len(rows) - params} "
            "metrics (--all lists them)."
        )
        return
    grid = table("Key", *(f"{short_id(r.id)}\n{r.name}" for r in records))
    for row in shown:
        style = "bold yellow" if row["differs"] else ""
        cells = [
            text(format_value(row["values"][r.id]), "dim" if row["values"][r.id] is None else style)
            for r in records
        ]
        grid.add_row(text(row["key"], "bold" if row["differs"] else ""), *cells)
    out.print(grid)


def _comparison_rows(records: list[RunRecord]) -> list[dict[str, Any]]:
    """One row per param and metric key of any run: its value in each run (None: absent)."""
    rows = []
    for section in ("params", "metrics"):
        keys = sorted({key for r in records for key in getattr(r, section)})
        for key in keys:
            values = {r.id: getattr(r, section).get(key) for r in records}
            # NaN != NaN, so compare a canonical form: two NaN metrics are the same.
            seen = {"nan" if isinstance(v, float) and math.isnan(v) else v for v in values.values()}
            rows.append({"key": f"{section}.{key}", "values": values, "differs": len(seen) > 1})
    return rows


# -- reproduce --------------------------------------------------------------------------------


@runs.command("reproduce")
@click.argument("run")
@click.option(
    "--output",
    "-o",
    type=click.Path(file_okay=False, path_type=Path),
    metavar="DIR",
    help="Folder for requirements.txt and git.diff. Default: ./reproduce-<RUN>.",
)
@pass_workspace
def reproduce(ws: Workspace, run: str, output: Path | None) -> None:
    """Write what re-running RUN needs and print the commands that do it.

    Writes DIR/requirements.txt (the run's exact packages) and DIR/git.diff (its uncommitted
    changes, if any), then prints: check out the run's commit, apply the diff, install the
    packages, and run the same command line in the same folder. The output is a valid shell
    script.
    """
    from loopml.cli.reproduce import write_bundle

    record = resolve_run(ws, run)
    folder = output if output is not None else Path(f"reproduce-{short_id(record.id)}")
    try:
        bundle = write_bundle(ws, record, folder)
    except OSError as exc:
        if isinstance(exc, LoopmlError):
            raise
        raise CliError(f"Cannot write to {folder}: {exc.strerror or exc}") from exc
    for line in bundle.script(record):
        click.echo(line)
