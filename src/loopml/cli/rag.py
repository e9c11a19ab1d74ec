"""``loopml rag``: RAG monitoring — register the corpus an index was built from, check its
freshness (exit 1 when stale, so it can gate a job), list indexes, score retrieval.

    loopml rag register-index docs --source 'knowledge/**/*.md'
    loopml rag check docs --days 7
    loopml rag indexes
    loopml rag eval --labels queries.jsonl --k 5
    loopml rag online --index docs --days 1
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from loopml.cli.context import pass_workspace
from loopml.cli.render import (
    console,
    emit_json,
    format_size,
    format_time,
    json_option,
    key_values,
    table,
)

if TYPE_CHECKING:
    from loopml.workspace import Workspace


@click.group()
def rag() -> None:
    """RAG monitoring: index freshness against its corpus, retrieval quality, online
    evaluation of sampled traffic."""


@rag.command("register-index")
@click.argument("name")
@click.option(
    "--source",
    required=True,
    metavar="PATH_OR_GLOB",
    help="The file, folder or glob (quoted: 'docs/**/*.md') the index was built from.",
)
@json_option
@pass_workspace
def register_index(ws: Workspace, name: str, source: str, as_json: bool) -> None:
    """Record the corpus index NAME was just built from (every file's path, BLAKE3, size
    and mtime) as its next version."""
    from loopml.llm.rag import register_index as register

    index = register(name, source, workspace=ws)
    if as_json:
        emit_json(index.to_dict())
        return
    console().print(
        f"Registered index {index.name} version {index.version}: {index.files} files, "
        f"{format_size(index.bytes)}, corpus {index.corpus[:12]}"
    )


def _names(paths: tuple[str, ...], limit: int = 10) -> str:
    shown = ", ".join(paths[:limit])
    return shown + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


@rag.command("check")
@click.argument("name")
@click.option(
    "--days",
    type=click.FloatRange(min=0, min_open=True),
    default=7.0,
    show_default=True,
    help="How far back to read retrieval spans for the served-stale share.",
)
@click.option("--version", type=click.IntRange(min=1), help="Check this version (default: latest).")
@json_option
@pass_workspace
def check(ws: Workspace, name: str, days: float, version: int | None, as_json: bool) -> None:
    """Compare index NAME's corpus at build time with the corpus now: documents added,
    changed and deleted, and the share of recent answers served from a changed or vanished
    source. Exits 1 when the index is stale (and emits rag.index_stale once per state)."""
    from loopml.llm.rag import check_index

    report = check_index(name, days=days, version=version, workspace=ws)
    if as_json:
        emit_json(report.to_dict())
    else:
        changes = report.changes
        share = report.served_stale
        rows = {
            "index": f"{report.index.name} version {report.index.version}",
            "source": report.index.source,
            "built": format_time(report.index.created_at),
            "status": "STALE" if report.stale else "fresh",
            "added": f"{len(changes.added)}  {_names(changes.added)}".rstrip(),
            "changed": f"{len(changes.changed)}  {_names(changes.changed)}".rstrip(),
            "deleted": f"{len(changes.deleted)}  {_names(changes.deleted)}".rstrip(),
            f"served stale ({days:g}d)": (
                f"{share:.1%} ({report.stale_answers} of {report.answers} answers)"
                if share is not None
                else "no answer named a document source"
            ),
        }
        if report.stale_documents:
            rows["stale sources"] = ", ".join(
                f"{d.source} ({d.why}, {d.answers})" for d in report.stale_documents[:10]
            )
        console().print(key_values(rows))
    if report.stale:
        sys.exit(1)


@rag.command("indexes")
@json_option
@pass_workspace
def indexes(ws: Workspace, as_json: bool) -> None:
    """The registered indexes (their latest version)."""
    from loopml.llm.rag import list_indexes

    found = list_indexes(workspace=ws)
    if as_json:
        emit_json([index.to_dict() for index in found])
        return
    if not found:
        console().print("No index yet: `loopml rag register-index NAME --source PATH_OR_GLOB`.")
        return
    grid = table("Name", "Version", "Files", "Size", "Corpus", "Source", "Built", no_wrap={"Name"})
    for index in found:
        grid.add_row(
            index.name,
            str(index.version),
            str(index.files),
            format_size(index.bytes),
            index.corpus[:12],
            index.source,
            format_time(index.created_at),
        )
    console().print(grid)


def _metric(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


@rag.command("eval")
@click.option(
    "--labels",
    "labels_path",
    required=True,
    type=click.Path(path_type=Path),
    help="JSON Lines of {query, relevant: [ids] or {id: gain}, retrieved?: [ids]}.",
)
@click.option("--k", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--index", help="Match stored retrievals of this index only.")
@json_option
@pass_workspace
def eval_(ws: Workspace, labels_path: Path, k: int, index: str | None, as_json: bool) -> None:
    """Score labelled queries: precision@k, recall@k, MRR, nDCG@k and hit rate. A query
    without 'retrieved' is scored on the newest stored retrieval span of that query."""
    from loopml.exceptions import InvalidInput
    from loopml.llm.rag import evaluate_labels, load_labels

    result = evaluate_labels(load_labels(labels_path), k=k, index=index, workspace=ws)
    if as_json:
        emit_json(result.to_dict())
        return
    scores = result.scores
    if not scores.queries:
        raise InvalidInput(
            f"No labelled query of {labels_path} could be scored: none has 'retrieved' ids, a "
            "stored retrieval span of the same query, and a relevant document."
        )
    console().print(
        key_values(
            {
                "queries": str(scores.queries),
                f"precision@{k}": _metric(scores.precision),
                f"recall@{k}": _metric(scores.recall),
                "MRR": _metric(scores.mrr),
                f"nDCG@{k}": _metric(scores.ndcg),
                f"hit rate@{k}": _metric(scores.hit_rate),
                "unmatched": ", ".join(result.unmatched[:10]) or "-",
            }
        )
    )


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


@rag.command("online")
@click.option("--route", help="Only this model alias's requests.")
@click.option("--index", help="Only requests whose retrieval searched this index.")
@click.option(
    "--days",
    type=click.FloatRange(min=0, min_open=True),
    default=7.0,
    show_default=True,
    help="How far back to read.",
)
@click.option(
    "--window",
    help="Width of a window: 15m, 1h, 1d (default: [gateway.online_eval] window, else 1h).",
)
@json_option
@pass_workspace
def online(
    ws: Workspace,
    route: str | None,
    index: str | None,
    days: float,
    window: str | None,
    as_json: bool,
) -> None:
    """The online evaluation of sampled gateway traffic: per window and evaluator, the
    requests judged, their mean score, pass rate and judge errors. Closed windows (of the
    configured width) are first written as monitoring windows (llm:ROUTE, rag:INDEX) and the
    alert rules evaluated."""
    from loopml.llm.rag.online import online_series, roll_windows

    configured = (ws.settings.gateway or {}).get("online_eval") or {}
    rolled_window = str(configured.get("window", "1h"))  # the alerts' windows: one size
    rolled = roll_windows(ws, window=rolled_window, days=days)
    points = online_series(route, index, days=days, window=window or rolled_window, workspace=ws)
    if as_json:
        emit_json([point.to_dict() for point in points])
        return
    for change in rolled.alerts:
        console().print(f"Alert {change.kind}: {change.alert.message}")
    if not points:
        console().print(
            "No online evaluation yet: set [gateway.online_eval] sample and judge_model, "
            "and send traffic through the gateway."
        )
        return
    grid = table("Window", "Evaluator", "Judged", "Mean score", "Pass rate", "Errors")
    for point in points:
        grid.add_row(
            format_time(point.start),
            point.evaluator,
            str(point.count),
            _metric(point.mean_score),
            _share(point.pass_rate),
            str(point.errors),
        )
    console().print(grid)
