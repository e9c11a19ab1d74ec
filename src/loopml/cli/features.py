"""``loopml features``: apply definitions, list and show them, materialize values into the
online store, serve them over HTTP, and check served values for training-serving skew."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from loopml.cli.context import CliError, pass_workspace
from loopml.cli.render import (
    console,
    emit_json,
    format_time,
    json_option,
    parse_time,
    table,
    text,
)

if TYPE_CHECKING:
    from loopml.workspace import Workspace


@click.group()
def features() -> None:
    """The feature store: definitions in features.py, training sets, online values."""


@features.command("apply")
@click.option("--dry-run", is_flag=True, help="Say what would change; store nothing.")
@json_option
@pass_workspace
def apply(ws: Workspace, dry_run: bool, as_json: bool) -> None:
    """Version the definitions of the workspace's features.py: a new version of each entity,
    view and service whose definition changed, with what changed."""
    changes = ws.features.apply(dry_run=dry_run)
    if as_json:
        emit_json([c.to_dict() for c in changes])
        return
    out = console()
    verb = "would be" if dry_run else "is"
    for change in changes:
        label = f"{change.kind.replace('_', ' ')} {change.name}"
        if change.status == "unchanged":
            out.print(text(f"  {label}: unchanged (version {change.version})", "dim"))
            continue
        state = "new" if change.status == "new" else "changed"
        out.print(
            text(
                f"{'+' if state == 'new' else '~'} {label}: {state}, {verb} version "
                f"{change.version}",
                "bold",
            )
        )
        for line in change.diff:
            out.print(text(f"    {line}"))
    changed = sum(c.status != "unchanged" for c in changes)
    if not changes:
        out.print("No definitions found.")
    elif not changed:
        out.print("Everything is applied already.")
    elif dry_run:
        out.print(f"{changed} definition(s) would get a new version; run without --dry-run.")


@features.command("list")
@click.option(
    "--kind",
    type=click.Choice(["entity", "feature_view", "on_demand_feature_view", "feature_service"]),
    help="Only this kind of definition.",
)
@json_option
@pass_workspace
def list_definitions(ws: Workspace, kind: str | None, as_json: bool) -> None:
    """The applied definitions, each at its latest version."""
    found = ws.features.list(kind)
    if as_json:
        emit_json([d.to_dict() for d in found])
        return
    out = console()
    if not found:
        out.print("Nothing applied yet: write features.py and run `loopml features apply`.")
        return
    grid = table("Kind", "Name", "Version", "Applied", "What")
    for item in found:
        grid.add_row(
            item.kind.replace("_", " "),
            text(item.name),
            str(item.version),
            format_time(item.created_at),
            text(_summary(item.spec)),
        )
    out.print(grid)


def _summary(spec: dict[str, Any]) -> str:
    kind = spec.get("kind")
    if kind == "entity":
        return "keys: " + ", ".join(spec["join_keys"])
    if kind == "feature_service":
        return ", ".join(spec["features"])
    fields = ", ".join(f"{f['name']} {f['dtype']}" for f in spec.get("schema", []))
    source = spec.get("source", {})
    where = source.get("path") or source.get("table") or source.get("kind", "")
    return f"{fields} ← {where}" if where else fields


@features.command("show")
@click.argument("name")
@json_option
@pass_workspace
def show(ws: Workspace, name: str, as_json: bool) -> None:
    """Every applied version of definition NAME, newest last, with what each changed."""
    from loopml.features.registry import spec_diff

    versions = ws.features.history(name)
    if as_json:
        emit_json([v.to_dict() for v in versions])
        return
    out = console()
    previous: dict[str, Any] | None = None
    for item in versions:
        out.print(
            text(f"{item.kind.replace('_', ' ')} {item.name} version {item.version}", "bold"),
            text(f"  applied {format_time(item.created_at)}"),
        )
        lines = spec_diff(previous, item.spec) if previous is not None else [_summary(item.spec)]
        for line in lines:
            out.print(text(f"    {line}"))
        previous = item.spec


@features.command("materialize")
@click.argument("start")
@click.argument("end")
@click.option("--view", "views", multiple=True, help="Only this view (repeatable).")
@click.option(
    "--executor",
    default="threads",
    show_default=True,
    help="threads, processes, inline, ray or ray://host:port.",
)
@click.option("--partitions", type=click.IntRange(min=1), help="Entity partitions to split into.")
@json_option
@pass_workspace
def materialize(
    ws: Workspace,
    start: str,
    end: str,
    views: tuple[str, ...],
    executor: str,
    partitions: int | None,
    as_json: bool,
) -> None:
    """Load each entity's latest value with an event time from START to END into the online
    store. A rerun of the same range skips partitions already done. START and END are ISO
    times (2026-11-30T16:32:07-05:00; without an offset, local time)."""
    from loopml.cli.progress import progress_bar

    begin, until = parse_time(start, "START"), parse_time(end, "END")
    with progress_bar(
        "Materializing", unit="partition", show_bytes=False, enabled=not as_json
    ) as tracker:
        results = ws.features.materialize(
            begin,
            until,
            list(views) or None,
            executor=executor,
            partitions=partitions,
            progress=tracker,
        )
    _report(results, as_json)


@features.command("materialize-incremental")
@click.argument("end")
@click.option("--view", "views", multiple=True, help="Only this view (repeatable).")
@click.option("--executor", default="threads", show_default=True)
@json_option
@pass_workspace
def materialize_incremental(
    ws: Workspace, end: str, views: tuple[str, ...], executor: str, as_json: bool
) -> None:
    """Materialize from where each view's last materialization ended up to END."""
    from loopml.cli.progress import progress_bar

    until = parse_time(end, "END")
    with progress_bar(
        "Materializing", unit="partition", show_bytes=False, enabled=not as_json
    ) as tracker:
        results = ws.features.materialize_incremental(
            until, list(views) or None, executor=executor, progress=tracker
        )
    _report(results, as_json)


def _report(results: Any, as_json: bool) -> None:
    if as_json:
        emit_json(
            [
                {
                    "view": r.view,
                    "start": r.start,
                    "end": r.end,
                    "rows": r.rows,
                    "partitions": r.partitions,
                    "ran": r.ran,
                    "skipped": r.skipped,
                }
                for r in results
            ]
        )
        return
    out = console()
    if not results:
        out.print("No online views to materialize.")
        return
    grid = table("View", "From", "To", "Rows", "Partitions run", "Already done")
    for r in results:
        grid.add_row(
            text(r.view),
            format_time(r.start),
            format_time(r.end),
            f"{r.rows:,}",
            str(r.ran),
            str(r.skipped),
        )
    out.print(grid)


@features.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=6566, show_default=True, type=click.IntRange(1, 65535))
@pass_workspace
def serve(ws: Workspace, host: str, port: int) -> None:
    """Serve online features over HTTP: POST /get-online-features."""
    from loopml.features.server import serve as run_server

    run_server(ws.features, host=host, port=port)


@features.command("skew-check")
@click.option("--service", required=True, help="The feature service the server used.")
@click.option(
    "--log",
    "log_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="Served values: Parquet, CSV or JSON lines with join keys, event_timestamp and features.",
)
@click.option(
    "--max-rate",
    type=click.FloatRange(0, 1),
    default=None,
    help="Exit with 1 when a feature's mismatch rate is above this (for CI).",
)
@json_option
@pass_workspace
def skew_check(
    ws: Workspace, service: str, log_path: str, max_rate: float | None, as_json: bool
) -> None:
    """Compare served feature values with their point-in-time offline values, per feature."""
    from loopml.features.skew import skew_check as check

    report = check(ws.features, service, log_path)
    if as_json:
        emit_json(report.to_dict())
    else:
        out = console()
        out.print(f"{report.service}: {report.rows} served rows compared with offline values")
        grid = table("Feature", "Mismatches", "Rate", "Example (served vs offline)")
        for item in report.features:
            example = item.examples[0] if item.examples else None
            shown = f"{example['served']!r} vs {example['offline']!r}" if example else ""
            grid.add_row(text(item.feature), str(item.mismatches), f"{item.rate:.2%}", text(shown))
        out.print(grid)
    worst = report.worst
    if max_rate is not None and worst is not None and worst.rate > max_rate:
        raise CliError(
            f"{worst.feature} differs in {worst.rate:.2%} of served rows (more than "
            f"--max-rate {max_rate:.2%})."
        )
