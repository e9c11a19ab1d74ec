"""``loopml llm``: what the LLM gateway recorded — spend grouped as asked, the request log,
and one request in full.

    loopml llm costs --by team --since 7d
    loopml llm requests --model cheap --errors --limit 20
    loopml llm show 3f2a9c1e
    loopml llm feedback req_3f2a9c1e… 1 --comment "right answer"
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from loopml.cli.context import pass_workspace
from loopml.cli.main import LazyGroup
from loopml.cli.render import (
    TIME_HELP,
    console,
    emit_json,
    format_time,
    json_option,
    key_values,
    table,
    text,
)

if TYPE_CHECKING:
    from loopml.workspace import Workspace

GROUPINGS = ("key", "team", "user", "model", "tag", "day", "provider", "deployment")
SINCE_HELP = f"From this time, or this long ago (7d, 12h, 30m). {TIME_HELP}"


@click.group(
    cls=LazyGroup,
    lazy_subcommands={
        "cache": "loopml.cli.llm_cache:cache",
        "guardrails": "loopml.cli.llm_guardrails:guardrails",
    },
)
def llm() -> None:
    """What the LLM gateway recorded: costs, the request log, one request in full, and
    feedback on requests (`loopml traces` shows the traces)."""


def cost(value: float | None) -> str:
    """US dollars to a precision that shows a fraction of a cent."""
    if value is None:
        return ""
    return f"${value:,.2f}" if value >= 100 else f"${value:.6f}".rstrip("0").rstrip(".")


def tokens(value: int | None) -> str:
    return "" if value is None else f"{value:,}"


def parse_since(value: str | None, option: str = "--since") -> datetime | str | None:
    """``--since``: a duration back from now is passed on as is (the report reads it); a
    time without an offset is local time."""
    if value is None:
        return None
    from loopml.cli.render import parse_time
    from loopml.exceptions import InvalidInput
    from loopml.llm.reports import parse_duration

    if parse_duration(value.strip()) is not None:
        return value
    try:
        return parse_time(value, option)
    except InvalidInput:
        raise InvalidInput(
            f"{option} needs a duration back from now like 30m, 24h or 7d, or an ISO time like "
            f"2026-11-30T16:32:07-05:00, got {value!r}"
        ) from None


@llm.command("costs")
@click.option(
    "--by",
    type=click.Choice(GROUPINGS),
    default="model",
    show_default=True,
    help="Group the spend by this (tag: a request counts under each of its tags).",
)
@click.option("--since", metavar="TIME", help=SINCE_HELP)
@click.option("--until", metavar="TIME", help=f"Up to this time (excluded). {TIME_HELP}")
@json_option
@pass_workspace
def costs_command(
    ws: Workspace, by: str, since: str | None, until: str | None, as_json: bool
) -> None:
    """Spend and tokens of the gateway's requests, grouped, most expensive first (by day:
    oldest day first, UTC days), with a total row."""
    from loopml.llm.reports import costs

    rows = costs(ws, by=by, since=parse_since(since), until=parse_since(until, "--until"))
    if as_json:
        emit_json(rows)
        return
    out = console()
    if not rows:
        out.print("No gateway requests logged in that time.")
        return
    cached = any(row["cache_hits"] for row in rows)  # the cache's columns, when it answered
    headers = [by.capitalize(), "Requests", "Errors", "Input tok", "Cached tok", "Output tok"]
    headers += ["Reasoning tok", "Cost (USD)", "Estimated"]
    if cached:
        headers += ["Cache hits", "Saved (USD)"]
    grid = table(*headers, no_wrap=(by.capitalize(),))
    for column in grid.columns[1:]:
        column.justify = "right"
    total: dict[str, Any] = {}
    for row in rows:
        for name in (
            "requests",
            "errors",
            "input_tokens",
            "cached_read_tokens",
            "output_tokens",
            "reasoning_tokens",
            "cost_usd",
            "estimated",
            "cache_hits",
            "saved_usd",
        ):
            total[name] = total.get(name, 0) + row[name]
        label = row["group"]
        if by == "key" and row.get("name"):
            label = f"{row['name']} ({label})"
        grid.add_row(*_cells(text("—" if label is None else label), row, cached))
    grid.add_section()
    footer = "total" if by != "tag" else "total (requests once per tag)"
    grid.add_row(*_cells(text(footer, "bold"), total, cached))
    out.print(grid)


def _cells(label: Any, row: dict[str, Any], cached: bool = False) -> list[Any]:
    cells = [
        label,
        tokens(row["requests"]),
        tokens(row["errors"]) if row["errors"] else "",
        tokens(row["input_tokens"]),
        tokens(row["cached_read_tokens"]),
        tokens(row["output_tokens"]),
        tokens(row["reasoning_tokens"]),
        cost(row["cost_usd"]),
        tokens(row["estimated"]) if row["estimated"] else "",
    ]
    if cached:
        cells += [tokens(row["cache_hits"]), cost(row["saved_usd"])]
    return cells


@llm.command("requests")
@click.option("--model", help="Only requests that asked for or were answered by this model.")
@click.option("--key", "key_id", metavar="KEY_ID", help="Only requests made with this key id.")
@click.option("--team", help="Only this team's requests.")
@click.option("--user", help="Only this end user's requests (the request's `user` field).")
@click.option("--status", type=int, help="Only requests answered with this HTTP status.")
@click.option("--errors", "errors_only", is_flag=True, help="Only requests that failed (>= 400).")
@click.option(
    "--tag", help="Only requests with this tag (metadata.tags or the x-loopml-tags header)."
)
@click.option(
    "--prompt",
    metavar="NAME[/VERSION]",
    help="Only requests made from this registered prompt (any version, or that one).",
)
@click.option("--since", metavar="TIME", help=SINCE_HELP)
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
@json_option
@pass_workspace
def requests_command(
    ws: Workspace,
    model: str | None,
    key_id: str | None,
    team: str | None,
    user: str | None,
    status: int | None,
    errors_only: bool,
    tag: str | None,
    prompt: str | None,
    since: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """The gateway's request log, newest first (`loopml llm show ID` shows one in full)."""
    from loopml.llm.reports import requests

    rows = requests(
        ws,
        since=parse_since(since),
        model=model,
        key=key_id,
        team=team,
        user=user,
        status=status,
        errors_only=errors_only,
        tag=tag,
        prompt=prompt,
        limit=limit,
    )
    if as_json:
        emit_json(rows)
        return
    out = console()
    if not rows:
        out.print("No gateway requests match.")
        return
    grid = table(
        "Id",
        "Time",
        "Model",
        "Status",
        "Latency",
        "Tokens in/out",
        "Cost",
        "Team",
        "User",
        no_wrap=("Id", "Time", "Model"),
    )
    for row in rows:
        model_text = row["model_requested"]
        if row["model_used"] and row["model_used"] != row["model_requested"]:
            model_text = f"{model_text} → {row['model_used']}"
        flags = [f for f in ("stream", "truncated", "cache_hit") if row[f]]
        status_text = str(row["status"]) + (f" ({', '.join(flags)})" if flags else "")
        grid.add_row(
            text(row["id"]),
            format_time(row["created_at"]),
            text(model_text),
            text(status_text, "red" if row["status"] >= 400 else ""),
            f"{row['latency_ms']:.0f}ms",
            f"{tokens(row['input_tokens'])}/{tokens(row['output_tokens'])}"
            + ("~" if row["usage_estimated"] else ""),
            cost(row["cost_usd"]),
            text(row["team"] or ""),
            text(row["user"] or ""),
        )
    out.print(grid)


@llm.command("show")
@click.argument("request_id")
@json_option
@pass_workspace
def show_command(ws: Workspace, request_id: str, as_json: bool) -> None:
    """One logged request in full: who, which model and deployment, every attempt, tokens,
    cost, and its messages and response (as the key's content logging allowed)."""
    from loopml.llm.reports import request

    found = request(ws, request_id)
    if as_json:
        emit_json(found)
        return
    out = console()
    model = found["model_requested"]
    if found["model_used"] and found["model_used"] != model:
        model = f"{model} → {found['model_used']}"
    fields: dict[str, Any] = {
        "Id": found["id"],
        "Time": format_time(found["created_at"]),
        "Endpoint": found["endpoint"],
        "Model": model,
        "Deployment": " / ".join(x for x in (found["provider"], found["deployment"]) if x),
        "Route": found["route_reason"] or "",
        "Status": str(found["status"])
        + (" (truncated stream)" if found["truncated"] else "")
        + (" (cache hit)" if found["cache_hit"] else ""),
        "Error": found["error"] or "",
        "Key": found["key_id"] or "",
        "Team": found["team"] or "",
        "User": found["user"] or "",
        "Tags": ", ".join(found["tags"]),
        "Latency": f"{found['latency_ms']:.1f}ms"
        + (f" (first token {found['ttft_ms']:.1f}ms)" if found["ttft_ms"] is not None else ""),
        "Tokens": (
            f"{tokens(found['input_tokens'])} in ({tokens(found['cached_read_tokens'])} cached "
            f"read, {tokens(found['cached_write_tokens'])} cached write), "
            f"{tokens(found['output_tokens'])} out ({tokens(found['reasoning_tokens'])} "
            "reasoning)" + (", estimated" if found["usage_estimated"] else "")
        ),
        "Cost": cost(found["cost_usd"]),
        "Prompt": found.get("prompt") or "",
        "Cache": _cache_text(found.get("cache"), found.get("saved_usd")),
        "Guardrails": _guardrails_text(found.get("guardrails")),
        "Trace": found["trace_id"] or "",
    }
    out.print(key_values({k: v for k, v in fields.items() if v != ""}))
    if found["attempts"]:
        grid = table("#", "Deployment", "Provider", "Model", "Status", "HTTP", "Latency", "Error")
        for number, attempt in enumerate(found["attempts"], 1):
            grid.add_row(
                str(number),
                text(attempt.get("deployment") or ""),
                text(attempt.get("provider") or ""),
                text(attempt.get("model") or ""),
                text(attempt.get("status") or ""),
                str(attempt.get("http_status") or ""),
                f"{attempt.get('latency_ms') or 0:.0f}ms",
                text(attempt.get("error") or ""),
            )
        out.print()
        out.print(text("Attempts", "bold"))
        out.print(grid)
    for title, body in (("Messages", found["messages"]), ("Response", found["response"])):
        if body is None and title == "Messages" and found["request"] is not None:
            title, body = "Request", found["request"]
        if body is None:
            continue
        out.print()
        out.print(text(title, "bold"))
        out.print(text(_pretty(body)))
    if found["request"] is None and found["response"] is None:
        out.print()
        out.print(text("(content not logged for this request)", "dim"))


def _feedback_value(value: str) -> float | bool:
    """VALUE: a number, or true/false (also up/down, yes/no) for a thumbs up or down."""
    from loopml.exceptions import InvalidInput

    words = {"true": True, "up": True, "yes": True, "false": False, "down": False, "no": False}
    if value.strip().lower() in words:
        return words[value.strip().lower()]
    try:
        return float(value)
    except ValueError:
        raise InvalidInput(
            f"VALUE is a number (a rating, a score) or true/false (a thumbs up or down), got "
            f"{value!r}"
        ) from None


@llm.command("feedback")
@click.argument("request_id")
@click.argument("value")
@click.option("--name", default="user", show_default=True, help="What the feedback measures.")
@click.option("--comment", help="Free text kept with the feedback.")
@json_option
@pass_workspace
def feedback_command(
    ws: Workspace, request_id: str, value: str, name: str, comment: str | None, as_json: bool
) -> None:
    """Record feedback on a gateway request (its id, or a unique prefix): VALUE is a number
    or true/false (a thumbs up is 1). `loopml prompts ab` compares prompt versions on it."""
    from loopml.llm.feedback import record_feedback
    from loopml.llm.reports import request

    full = request(ws, request_id)["id"]
    stored = record_feedback(full, _feedback_value(value), name=name, comment=comment, workspace=ws)
    if as_json:
        emit_json(stored.to_dict())
        return
    click.echo(f"Feedback {stored.name}={stored.value:g} on {stored.request_id} (#{stored.id})")


def _cache_text(entry: Any, saved: float | None) -> str:
    """``semantic hit (similarity 0.93) of req_…, saved $0.0012``."""
    if not isinstance(entry, dict):
        return ""
    what = f"{entry.get('kind', '?')} hit"
    if entry.get("kind") == "semantic" and entry.get("similarity") is not None:
        what += f" (similarity {entry['similarity']:.3f})"
    if entry.get("matched_request_id"):
        what += f" of {entry['matched_request_id']}"
    return what + (f", saved {cost(saved)}" if saved else "")


def _guardrails_text(entry: Any) -> str:
    """``policy default v1: input redacted (credit_card); output allowed``."""
    if not isinstance(entry, dict):
        return ""
    parts = []
    for stage in ("input", "output"):
        verdict = entry.get(stage)
        if not isinstance(verdict, dict):
            continue
        if verdict.get("blocked_by"):
            said = f"blocked by {verdict['blocked_by']}"
        elif verdict.get("redacted"):
            said = "redacted"
        else:
            said = "allowed"
        kinds = sorted({f.get("kind") for f in verdict.get("findings") or () if f.get("kind")})
        parts.append(f"{stage} {said}" + (f" ({', '.join(kinds)})" if kinds else ""))
    head = f"policy {entry.get('policy')} v{entry.get('version')}"
    return head + (": " + "; ".join(parts) if parts else "")


def _pretty(value: Any) -> str:
    """Chat messages (or a chat completion's choices) as ``role: content`` lines; anything
    else as indented JSON."""
    if isinstance(value, dict) and isinstance(value.get("choices"), list):
        messages = [c.get("message") for c in value["choices"] if isinstance(c, dict)]
        if messages and all(isinstance(m, dict) and "role" in m for m in messages):
            value = messages
    elif isinstance(value, dict) and value.get("type") == "message" and "role" in value:
        value = [value]  # an Anthropic Messages response
    if isinstance(value, list) and all(isinstance(m, dict) and "role" in m for m in value):
        lines = []
        for message in value:
            content = message.get("content")
            if not isinstance(content, str):
                content = json.dumps(content, ensure_ascii=False)
            lines.append(f"{message['role']}: {content}")
            for call in message.get("tool_calls") or []:
                lines.append(f"  tool call: {json.dumps(call, ensure_ascii=False)}")
        return "\n".join(lines)
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)
