"""``loopml traces``: the traces stored in the workspace — the LLM gateway's (gateway →
router → each provider attempt) and applications' own spans (``loopml.llm.trace``).

    loopml traces list --since 1h
    loopml traces show 4bf92f35
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from loopml.cli.context import pass_workspace
from loopml.cli.llm import SINCE_HELP, cost, parse_since, tokens
from loopml.cli.render import console, emit_json, format_time, json_option, table, text

if TYPE_CHECKING:
    from loopml.workspace import Workspace


@click.group()
def traces() -> None:
    """Traces of LLM requests and applications: list them, show one as a tree of spans."""


def _ms(value: float) -> str:
    return f"{value:.1f}ms" if value < 1000 else f"{value / 1000:.2f}s"


@traces.command("list")
@click.option("--since", metavar="TIME", help=SINCE_HELP)
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@json_option
@pass_workspace
def list_traces(ws: Workspace, since: str | None, limit: int, as_json: bool) -> None:
    """The latest traces, newest first, with their duration, spans, tokens and cost."""
    from loopml.llm.reports import traces as find

    rows = find(ws, since=parse_since(since), limit=limit)
    if as_json:
        emit_json(rows)
        return
    out = console()
    if not rows:
        out.print("No traces stored in that time.")
        return
    grid = table(
        "Trace", "Name", "Start", "Duration", "Spans", "Tokens", "Cost", no_wrap=("Trace",)
    )
    for row in rows:
        spans = str(row["spans"]) + (f" ({row['errors']} failed)" if row["errors"] else "")
        grid.add_row(
            text(row["trace_id"]),
            text(row["name"]),
            format_time(row["start"]),
            _ms(row["duration_ms"]),
            text(spans, "red" if row["errors"] else ""),
            tokens(row["tokens"]) if row["tokens"] else "",
            cost(row["cost_usd"]) if row["cost_usd"] else "",
        )
    out.print(grid)


@traces.command("show")
@click.argument("trace_id")
@json_option
@pass_workspace
def show_trace(ws: Workspace, trace_id: str, as_json: bool) -> None:
    """One trace as a tree of spans: each with its start (from the trace's start), duration,
    tokens and cost."""
    from loopml.llm.reports import trace_tree

    tree = trace_tree(ws, trace_id)
    if as_json:
        emit_json(tree)
        return
    out = console()
    out.print(
        text(
            f"trace {tree['trace_id']}  {format_time(tree['start'])}  "
            f"{_ms(tree['duration_ms'])}  {tree['spans']} span(s)"
            + (f"  {tokens(tree['tokens'])} tokens" if tree["tokens"] else "")
            + (f"  {cost(tree['cost_usd'])}" if tree["cost_usd"] else ""),
            "bold",
        )
    )
    grid = table("Span", "Start", "Duration", "Tokens in/out", "Cost", "Details")
    for column in grid.columns[1:5]:
        column.justify = "right"
    for depth, node in _walk(tree["roots"]):
        grid.add_row(
            text("  " * depth + node["name"], "red" if node["status"] == "error" else ""),
            f"+{_ms(node['offset_ms'])}",
            _ms(node["duration_ms"]),
            _tokens(node),
            cost(node["cost_usd"]) if node["cost_usd"] is not None else "",
            text(_details(node)),
        )
    out.print(grid)


def _walk(nodes: list[dict[str, Any]], depth: int = 0) -> list[tuple[int, dict[str, Any]]]:
    found: list[tuple[int, dict[str, Any]]] = []
    for node in nodes:
        found.append((depth, node))
        found += _walk(node["children"], depth + 1)
    return found


def _tokens(node: dict[str, Any]) -> str:
    if node["input_tokens"] is None and node["output_tokens"] is None:
        return ""
    return f"{tokens(node['input_tokens'] or 0)}/{tokens(node['output_tokens'] or 0)}"


#: Attributes worth a glance in the tree, with their labels (the rest are in --json).
_SHOWN = {
    "gen_ai.request.model": "model",
    "gen_ai.response.model": "answered_by",
    "loopml.deployment": "deployment",
    "loopml.attempt": "attempt",
    "gen_ai.response.finish_reasons": "finish",
    "error": "error",
}


def _details(node: dict[str, Any]) -> str:
    attributes = node["attributes"]
    parts = [f"{label}={attributes[key]}" for key, label in _SHOWN.items() if key in attributes]
    if node["status"] == "error" and "error" not in attributes:
        parts.append("error")
    if node["request_id"]:
        parts.append(f"request={node['request_id']}")
    return " ".join(parts)
