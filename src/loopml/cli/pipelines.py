"""``loopml pipelines``: run, show, list, inspect, resume and backfill pipelines.

PIPELINE is ``package.module:name`` or ``path/to/file.py:name`` (``:name`` may be left out
when the module defines one pipeline). RUN is a pipeline run id or a unique prefix of one.
"""

from __future__ import annotations

import warnings
from collections import Counter
from typing import TYPE_CHECKING, Any

import click

from loopml.cli.context import CliError, pass_workspace
from loopml.cli.render import (
    console,
    emit_json,
    format_duration,
    format_time,
    json_option,
    key_values,
    short_id,
    status_text,
    table,
    text,
)
from loopml.exceptions import LoopmlWarning

if TYPE_CHECKING:
    from loopml.pipelines.pipeline import Pipeline
    from loopml.pipelines.records import PipelineRunRecord
    from loopml.pipelines.runner import PipelineRun
    from loopml.workspace import Workspace

EXECUTOR_HELP = (
    "Where tasks run: threads (default), processes, inline, ray (a local Ray cluster) or "
    "ray://HOST:PORT."
)
#: A backfill of more runs than this asks for --yes.
CONFIRM_ABOVE = 1000
TASK_STYLES = {
    "COMPLETED": "green",
    "CACHED": "blue",
    "FAILED": "bold red",
    "SKIPPED": "dim",
    "RUNNING": "cyan",
    "PENDING": "",
}


@click.group()
def pipelines() -> None:
    """Run pipelines and inspect their runs.

    PIPELINE is package.module:name or path/to/file.py:name. RUN is a pipeline run id or a
    unique prefix of one (at least 4 characters).
    """


# -- shared options --------------------------------------------------------------------------


def _params_option(f: Any) -> Any:
    return click.option(
        "--param",
        "-p",
        "param_items",
        multiple=True,
        metavar="NAME=VALUE",
        help="A pipeline param (repeatable); converted by the param's type annotation.",
    )(f)


def _execution_options(f: Any) -> Any:
    f = click.option(
        "--no-cache",
        is_flag=True,
        help="Rerun every task, even those whose code and inputs are unchanged.",
    )(f)
    f = click.option(
        "--max-workers",
        "-j",
        type=click.IntRange(min=1),
        metavar="N",
        help="At most N tasks at once (threads/processes; default: per CPU).",
    )(f)
    return click.option(
        "--executor", "-x", default="threads", show_default=True, metavar="NAME", help=EXECUTOR_HELP
    )(f)


def _parse_params(items: tuple[str, ...]) -> dict[str, str]:
    params: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(
                f"{item!r} is not NAME=VALUE (e.g. --param day=2026-11-01).",
                param_hint="'--param'",
            )
        params[key.strip()] = value
    return params


def _load(ws: Workspace, ref: str) -> Pipeline:
    from loopml.pipelines.refs import load_pipeline

    # These commands don't watch triggers: a missing on_new_data path is shown by `show`
    # and refused by `scheduler run`, not warned about on every command.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LoopmlWarning)
        return load_pipeline(ref, ws.root)


def use_workspace(ws: Workspace) -> None:
    """Make the command's workspace the default one, so that ``loopml.log_metric`` and
    ``loopml.register_model`` inside tasks reach it (and the pipeline's tracking run)."""
    from loopml.workspace import set_default_workspace

    set_default_workspace(ws)


# -- run ---------------------------------------------------------------------------------------


def _explain_option(f: Any) -> Any:
    return click.option(
        "--explain-cache",
        is_flag=True,
        help="Say for each task why it was reused or ran again (which part of its code, "
        "a value it uses, a package version or an argument changed).",
    )(f)


@pipelines.command("run")
@click.argument("pipeline_ref", metavar="PIPELINE")
@_params_option
@_execution_options
@_explain_option
@json_option
@pass_workspace
def run_command(
    ws: Workspace,
    pipeline_ref: str,
    param_items: tuple[str, ...],
    executor: str,
    max_workers: int | None,
    no_cache: bool,
    explain_cache: bool,
    as_json: bool,
) -> None:
    """Run PIPELINE once and show how each task ended (exit code 1 if the run failed).

    A task is reused from the cache when its code and inputs are unchanged; its code is its
    source, the module-level values and project functions and classes it uses, and the
    versions of the packages it calls (@task(version="...") pins it by hand).
    """
    from loopml.pipelines.runner import run_pipeline

    use_workspace(ws)
    pipe = _load(ws, pipeline_ref)
    params = pipe.coerce(_parse_params(param_items))
    result = run_pipeline(
        pipe,
        params,
        executor=executor,
        max_workers=max_workers,
        cache=not no_cache,
        workspace=ws,
        raise_on_failure=False,
    )
    _report(ws, result, as_json, explain_cache)


def _report(ws: Workspace, result: PipelineRun, as_json: bool, explain: bool = False) -> None:
    from loopml.pipelines import records
    from loopml.pipelines.explain import explain_cache
    from loopml.pipelines.runner import failure_message

    record = records.get_run(ws.db, result.id)
    reasons = explain_cache(record.id, workspace=ws) if explain else []
    if as_json:
        value = _record_json(record)
        if explain:
            value["cache"] = [reason.to_dict() for reason in reasons]
        emit_json(value)
    else:
        out = console()
        counts = Counter(t.status.lower() for t in record.tasks)
        summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        line = text(f"Pipeline run {record.id} of {record.pipeline} ")
        line.append_text(status_text(record.status))
        line.append(f" in {format_duration(record.duration)} ({summary})")
        out.print(line, soft_wrap=True)  # one line, whatever the width: scripts grep it
        out.print(_tasks_table(record))
        if record.tracking_run_id:
            click.echo(
                f"tracking run: {record.tracking_run_id} (loopml runs show {short_id(record.tracking_run_id)})"
            )
        if reasons:
            click.echo("cache:")
            for reason in reasons:
                click.echo(f"  {reason.node}: {reason.reason}")
    if not result.ok:
        raise CliError(failure_message(result))


# -- show --------------------------------------------------------------------------------------


@pipelines.command("show")
@click.argument("pipeline_ref", metavar="PIPELINE")
@click.option("--mermaid", is_flag=True, help="Print a Mermaid flowchart instead of text.")
@_params_option
@json_option
@pass_workspace
def show(
    ws: Workspace, pipeline_ref: str, mermaid: bool, param_items: tuple[str, ...], as_json: bool
) -> None:
    """Show the DAG of PIPELINE: its tasks in execution order and what each reads.

    Pass --param when the pipeline's shape depends on its params.
    """
    from loopml.pipelines.dag import render_mermaid, render_text
    from loopml.pipelines.triggers import NewData

    pipe = _load(ws, pipeline_ref)
    raw = _parse_params(param_items)
    build = pipe.shape(pipe.coerce(raw) if raw else None)
    missing = {t.id for t in pipe.triggers if isinstance(t, NewData) and not t.exists(ws.root)}
    if as_json:
        emit_json(_pipeline_json(pipe, build, missing))
        return
    if mermaid:
        click.echo(render_mermaid(build.dag))
        return
    click.echo(render_text(build.dag, title=f"pipeline {pipe.name}"))
    details = [f"  defined in {pipe.ref}"]
    if pipe.param_names:
        defaults = pipe.defaults()
        shown = [
            f"{name}={defaults[name]!r}" if name in defaults else name for name in pipe.param_names
        ]
        details.append(f"  params: {', '.join(shown)}")
    if pipe.partition:
        details.append(f"  partition key: {pipe.partition}")
    for trig in pipe.triggers:
        note = " (no such path: nothing to watch)" if trig.id in missing else ""
        details.append(f"  trigger: {trig.id}{note}")
    click.echo("\n".join(details))


def _pipeline_json(pipe: Pipeline, build: Any, missing: set[str]) -> dict[str, Any]:
    import json

    # A date default is shown as its ISO text, as --param takes it.
    defaults = json.loads(json.dumps(pipe.defaults(), default=str))
    return {
        "name": pipe.name,
        "ref": pipe.ref,
        "experiment": pipe.experiment,
        "params": [
            {"name": name, **({"default": defaults[name]} if name in defaults else {})}
            for name in pipe.param_names
        ],
        "partition": pipe.partition,
        "triggers": [
            {"id": t.id, "kind": t.kind, **({"missing": True} if t.id in missing else {})}
            for t in pipe.triggers
        ],
        "tasks": [
            {
                "node": node,
                "task": build.calls[node].task.name,
                "depends_on": list(build.dag.deps[node]),
                "params": list(build.calls[node].params),
            }
            for node in build.dag.order
        ],
    }


# -- runs --------------------------------------------------------------------------------------


@pipelines.command("runs")
@click.argument("name", required=False)
@click.option(
    "--status",
    "-s",
    type=click.Choice(["QUEUED", "RUNNING", "FINISHED", "FAILED", "KILLED"], case_sensitive=False),
    help="Only runs with this status.",
)
@click.option("--partition", metavar="KEY", help="Only runs of this partition.")
@click.option(
    "--current", is_flag=True, help="Hide runs replaced by a later run of their partition."
)
@click.option(
    "--max-results",
    "-n",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    metavar="N",
    help="Show at most N runs.",
)
@json_option
@pass_workspace
def runs(
    ws: Workspace,
    name: str | None,
    status: str | None,
    partition: str | None,
    current: bool,
    max_results: int,
    as_json: bool,
) -> None:
    """List pipeline runs, newest first (of pipeline NAME when given)."""
    from loopml.pipelines import records

    records.reap_stale(ws.db)
    found = records.list_runs(
        ws.db,
        pipeline=name,
        status=status,
        partition=partition,
        limit=max_results,
        include_superseded=not current,
    )
    counts = records.task_counts(ws.db, [r.id for r in found])
    if as_json:
        emit_json([{**_run_json(r), "task_counts": counts.get(r.id, {})} for r in found])
        return
    out = console()
    if not found:
        out.print("No pipeline runs match." if name or status else "No pipeline runs yet.")
        return
    grid = table(
        "Run",
        "Pipeline",
        "Status",
        "Partition",
        "Trigger",
        "Started",
        "Duration",
        "Tasks",
        no_wrap={"Run", "Status", "Started", "Duration"},
    )
    for record in found:
        per = counts.get(record.id, {})
        done = per.get("COMPLETED", 0) + per.get("CACHED", 0)
        tasks = f"{done}/{sum(per.values())}"
        if per.get("FAILED"):
            tasks += f" ({per['FAILED']} failed)"
        label = record.status + (" (replaced)" if record.superseded_by else "")
        grid.add_row(
            short_id(record.id),
            text(record.pipeline),
            status_text(record.status) if not record.superseded_by else text(label, "dim"),
            text(record.partition or ""),
            text(_trigger_label(record)),
            format_time(record.start_time or record.created_at),
            format_duration(record.duration),
            tasks,
        )
    out.print(grid)


def _trigger_label(record: PipelineRunRecord) -> str:
    if record.trigger_slot and record.trigger.startswith("data:"):
        return f"{record.trigger} @{record.trigger_slot[:8]}"
    if record.trigger_slot and record.trigger.startswith("event:"):
        return f"{record.trigger} #{record.trigger_slot}"
    if record.trigger_slot:
        return f"{record.trigger} @{record.trigger_slot[:16]}"
    return record.trigger


# -- show-run ----------------------------------------------------------------------------------


@pipelines.command("show-run")
@click.argument("run")
@click.option("--mermaid", is_flag=True, help="Print the DAG as Mermaid, tasks coloured by status.")
@json_option
@pass_workspace
def show_run(ws: Workspace, run: str, mermaid: bool, as_json: bool) -> None:
    """Show RUN: params, trigger, partition, every task (status, attempts, duration, output
    hash) and the traceback of each failed task."""
    from loopml.pipelines import records

    full = records.resolve_run_id(ws.db, run)
    records.reap_stale(ws.db, [full])
    record = records.get_run(ws.db, full)
    if as_json:
        emit_json(_record_json(record))
        return
    if mermaid:
        click.echo(_run_mermaid(ws, record))
        return
    out = console()
    out.print(text(f"Pipeline run {record.id}", "bold"))
    info: dict[str, Any] = {
        "pipeline": f"{record.pipeline} ({record.ref})" if record.ref else record.pipeline,
        "status": status_text(record.status),
        "params": ", ".join(f"{k}={v!r}" for k, v in record.params.items()) or "none",
        "trigger": _trigger_label(record),
        "created": format_time(record.created_at),
        "started": format_time(record.start_time),
        "ended": format_time(record.end_time),
        "duration": format_duration(record.duration),
        "executor": record.executor or "",
        "attempt": str(record.attempt),
    }
    if record.partition:
        info["partition"] = record.partition
    if record.superseded_by:
        info["replaced by"] = f"{record.superseded_by} (a later run of its partition)"
    if record.tracking_run_id:
        info["tracking run"] = record.tracking_run_id
    if record.trigger_detail:
        info["trigger detail"] = ", ".join(
            f"{k}={v}" for k, v in record.trigger_detail.items() if v is not None
        )
    out.print(key_values(info))
    out.print()
    out.print(_tasks_table(record))
    for task in record.tasks:
        if task.status == "FAILED" and (task.traceback or task.error):
            out.print()
            out.print(text(f"Task {task.node} failed", "bold red"))
            out.print(text((task.traceback or task.error or "").rstrip()))
    if (
        record.status in ("FAILED", "KILLED")
        and not any(t.status == "FAILED" and t.traceback for t in record.tasks)
        and record.error
    ):
        out.print()
        out.print(text("Error", "bold red"))
        out.print(text(record.error.rstrip()))


def _run_mermaid(ws: Workspace, record: PipelineRunRecord) -> str:
    from loopml.pipelines.dag import DAG, render_mermaid

    statuses = {t.node: t.status for t in record.tasks}
    try:
        if not record.ref:
            raise LookupError
        pipe = _load(ws, record.ref)
        dag = pipe.build(_decoded(pipe, record.params)).dag
    except Exception:  # the code moved on: draw the recorded tasks as a chain
        nodes = [t.node for t in record.tasks]
        dag = DAG({n: [] for n in nodes})
    return render_mermaid(dag, statuses)


def _decoded(pipe: Pipeline, params: dict[str, Any]) -> dict[str, Any]:
    from loopml.pipelines.runner import decode_params

    return decode_params(pipe, params)


def _tasks_table(record: PipelineRunRecord) -> Any:
    grid = table(
        "Task",
        "Status",
        "Attempts",
        "Duration",
        "Output",
        "Note",
        no_wrap={"Task", "Status", "Duration", "Output"},
    )
    for task in record.tasks:
        output = ""
        if task.output_digest:
            output = f"{task.output_digest[:12]} {task.output_format or ''}".strip()
        note = ""
        if task.status == "CACHED" and task.cached_from:
            note = f"reused from run {short_id(task.cached_from)}"
        elif task.error:
            note = task.error.splitlines()[0]
        grid.add_row(
            text(task.node),
            text(task.status, TASK_STYLES.get(task.status, "")),
            str(task.attempts),
            format_duration(task.duration),
            text(output),
            text(note, "dim" if task.status != "FAILED" else ""),
        )
    return grid


def _run_json(record: PipelineRunRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "pipeline": record.pipeline,
        "ref": record.ref,
        "status": record.status,
        "params": record.params,
        "partition": record.partition,
        "trigger": record.trigger,
        "trigger_slot": record.trigger_slot,
        "trigger_detail": record.trigger_detail,
        "tracking_run_id": record.tracking_run_id,
        "executor": record.executor,
        "attempt": record.attempt,
        "created_at": record.created_at,
        "start_time": record.start_time,
        "end_time": record.end_time,
        "duration": record.duration,
        "superseded_by": record.superseded_by,
        "error": record.error,
    }


def _record_json(record: PipelineRunRecord) -> dict[str, Any]:
    return {
        **_run_json(record),
        "tasks": [
            {
                "node": t.node,
                "task": t.task,
                "status": t.status,
                "attempts": t.attempts,
                "start_time": t.start_time,
                "end_time": t.end_time,
                "duration": t.duration,
                "cache_key": t.cache_key,
                "output_digest": t.output_digest,
                "output_format": t.output_format,
                "output_size": t.output_size,
                "cached_from": t.cached_from,
                "error": t.error,
                "traceback": t.traceback,
            }
            for t in record.tasks
        ],
    }


# -- resume ------------------------------------------------------------------------------------


@pipelines.command("resume")
@click.argument("run")
@_execution_options
@_explain_option
@json_option
@pass_workspace
def resume_command(
    ws: Workspace,
    run: str,
    executor: str,
    max_workers: int | None,
    no_cache: bool,
    explain_cache: bool,
    as_json: bool,
) -> None:
    """Resume RUN (failed or killed): reuse every task that completed, rerun the rest."""
    from loopml.pipelines import records
    from loopml.pipelines.runner import resume

    use_workspace(ws)
    record = records.get_run(ws.db, records.resolve_run_id(ws.db, run))
    if record.status == records.FINISHED and not as_json:
        click.echo(
            f"Pipeline run {record.id[:8]} finished already: nothing to resume (run the "
            "pipeline again to make a new run).",
            err=True,
        )
    result = resume(
        run,
        executor=executor,
        max_workers=max_workers,
        cache=not no_cache,
        workspace=ws,
        raise_on_failure=False,
    )
    _report(ws, result, as_json, explain_cache)


# -- backfill ----------------------------------------------------------------------------------


@pipelines.command("backfill")
@click.argument("pipeline_ref", metavar="PIPELINE")
@click.option("--start", required=True, metavar="DATE", help="First partition (YYYY-MM-DD).")
@click.option("--end", required=True, metavar="DATE", help="Last partition, included.")
@click.option(
    "--step",
    type=click.Choice(["hour", "day", "week", "month"]),
    default="day",
    show_default=True,
    help="One partition per step.",
)
@click.option(
    "--parallel",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    metavar="N",
    help="Run N partitions at a time.",
)
@_params_option
@_execution_options
@click.option(
    "--yes",
    "-y",
    is_flag=True,
    help=f"Start the runs even when there are more than {CONFIRM_ABOVE:,} of them.",
)
@json_option
@pass_workspace
def backfill_command(
    ws: Workspace,
    pipeline_ref: str,
    start: str,
    end: str,
    step: str,
    parallel: int,
    param_items: tuple[str, ...],
    executor: str,
    max_workers: int | None,
    no_cache: bool,
    yes: bool,
    as_json: bool,
) -> None:
    """Run PIPELINE once per partition from --start to --end. A partition run again replaces
    its previous run (never a duplicate); unchanged tasks are reused from the cache.

    On a terminal a progress bar shows the runs done and the time left. More than 1,000 runs
    need --yes.
    """
    from loopml.cli.progress import progress_bar
    from loopml.pipelines import records
    from loopml.pipelines.backfill import backfill, partitions_between

    use_workspace(ws)
    pipe = _load(ws, pipeline_ref)
    if pipe.partition is not None and not yes:
        count = len(partitions_between(start, end, step, pipe.partition_format))
        if count > CONFIRM_ABOVE:
            raise CliError(
                f"This backfill would start {count:,} runs of {pipe.name} (one per {step} from "
                f"{start} to {end}). Pass --yes to start them, or narrow --start/--end."
            )
    params = pipe.coerce(_parse_params(param_items))
    with progress_bar(
        f"Backfilling {pipe.name}", unit="run", show_bytes=False, enabled=not as_json
    ) as tracker:
        results = backfill(
            pipe,
            start,
            end,
            step=step,
            params=params,
            parallel=parallel,
            executor=executor,
            max_workers=max_workers,
            cache=not no_cache,
            workspace=ws,
            progress=tracker,
        )
    failed = [r for r in results if not r.ok]
    if as_json:
        emit_json([_run_json(records.get_run(ws.db, r.id)) for r in results])
    else:
        grid = table("Partition", "Run", "Status", "Tasks", no_wrap={"Run", "Status"})
        for result in results:
            counts = Counter(t.status for t in result.tasks.values())
            reused = counts.get("CACHED", 0)
            summary = f"{counts.get('COMPLETED', 0)} ran, {reused} reused"
            if counts.get("FAILED"):
                summary += f", {counts['FAILED']} failed"
            grid.add_row(
                text(result.partition or ""),
                short_id(result.id),
                status_text(result.status),
                summary,
            )
        console().print(grid)
    if failed:
        raise CliError(
            f"{len(failed)} of {len(results)} partitions failed: "
            + ", ".join(f"{r.partition} (run {short_id(r.id)})" for r in failed)
            + ". Resume each with `loopml pipelines resume RUN`."
        )
