"""``loopml llm cache``: what the gateway's response cache saved, emptying it, and how often
its semantic matching answers the wrong question.

    loopml llm cache stats --since 7d
    loopml llm cache clear --route cheap --yes
    loopml llm cache evaluate --target-false-hit 0.01
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from loopml.cli.context import pass_workspace
from loopml.cli.llm import SINCE_HELP, cost, parse_since
from loopml.cli.render import console, emit_json, json_option, table, text

if TYPE_CHECKING:
    from loopml.llm.cache.embedders import Embedder
    from loopml.workspace import Workspace


@click.group()
def cache() -> None:
    """The gateway's response cache ([gateway.cache]): hit rate and saved cost, clearing,
    and the false-hit rate of semantic matching per threshold."""


def _percent(value: float) -> str:
    return f"{value * 100:.1f}%"


@cache.command("stats")
@click.option("--since", metavar="TIME", help=SINCE_HELP)
@json_option
@pass_workspace
def stats_command(ws: Workspace, since: str | None, as_json: bool) -> None:
    """Chat requests, cache hits (exact and semantic), hit rate and the cost the hits saved,
    by route (the model alias asked for), with the entries cached now."""
    from loopml.llm.cache.stats import stats

    found = stats(ws, since=parse_since(since))
    if as_json:
        emit_json(found)
        return
    out = console()
    if not found["routes"]:
        out.print("No chat requests logged and nothing cached in that time.")
        return
    grid = table(
        "Route", "Requests", "Hits", "Exact", "Semantic", "Hit rate", "Saved (USD)", "Entries"
    )
    for column in grid.columns[1:]:
        column.justify = "right"

    def cells(label: Any, row: dict[str, Any]) -> list[Any]:
        return [
            label,
            f"{row['requests']:,}",
            f"{row['hits']:,}",
            f"{row['exact_hits']:,}",
            f"{row['semantic_hits']:,}",
            _percent(row["hit_rate"]),
            cost(row["saved_usd"]),
            f"{row['entries']:,}",
        ]

    for row in found["routes"]:
        grid.add_row(*cells(text(row["route"]), row))
    grid.add_section()
    grid.add_row(*cells(text("total", "bold"), found))
    out.print(grid)


@cache.command("clear")
@click.option("--route", metavar="ALIAS", help="Only this model alias's entries.")
@click.option("--yes", "-y", is_flag=True, help="Don't ask for confirmation.")
@json_option
@pass_workspace
def clear_command(ws: Workspace, route: str | None, yes: bool, as_json: bool) -> None:
    """Delete cached answers (all, or one route's). Running gateways stop serving them at
    once."""
    from loopml.exceptions import InvalidInput
    from loopml.llm.cache.stats import clear

    what = f"the cached answers of route {route!r}" if route else "every cached answer"
    if not yes:
        import sys

        if not sys.stdin.isatty():
            raise InvalidInput(f"This deletes {what}; pass --yes to confirm.")
        click.confirm(f"Delete {what}?", abort=True)
    gone = clear(ws, route=route)
    if as_json:
        emit_json({"deleted": gone, "route": route})
        return
    console().print(f"Deleted {gone:,} cached answer{'s' if gone != 1 else ''}.")


def _embedder(spec: str) -> Embedder:
    """The embedder ``spec`` names; ``gateway:<alias>`` embeds through an in-process gateway
    over the workspace's ``[gateway]`` config."""
    from loopml.llm.cache.embedders import make_embedder

    if not spec.startswith("gateway:"):
        return make_embedder(spec)
    import asyncio

    from loopml.cli.context import current_workspace
    from loopml.llm.gateway import Gateway

    gateway = Gateway.from_config(workspace=current_workspace())

    async def embed(alias: str, texts: list[str]) -> list[list[float]]:
        reply = await asyncio.to_thread(gateway.embed, {"model": alias, "input": texts})
        rows = sorted(reply.body["data"], key=lambda item: item.get("index", 0))
        return [row["embedding"] for row in rows]

    return make_embedder(spec, embed)


@cache.command("evaluate")
@click.option(
    "--pairs",
    "pairs_file",
    type=click.Path(dir_okay=False),
    help="JSON lines of {a, b, match} (default: the shipped set of paraphrases and near misses).",
)
@click.option(
    "--embedder",
    default="hashed",
    show_default=True,
    help="hashed | gateway:<alias> | model2vec:/path | sentence-transformers:/path",
)
@click.option(
    "--second-stage",
    type=click.Choice(["entities", "none"]),
    default="entities",
    show_default=True,
    help="Also require the same numbers, dates, names and codes (what the cache does).",
)
@click.option(
    "--threshold",
    "thresholds",
    type=click.FloatRange(0, 1, min_open=True),
    multiple=True,
    help="A threshold to try (repeat; default 0.60 to 1.00 by 0.02).",
)
@click.option(
    "--target-false-hit",
    type=click.FloatRange(0, 1, max_open=True),
    default=0.01,
    show_default=True,
    help="The false-hit rate the recommended threshold must not exceed.",
)
@json_option
def evaluate_command(
    pairs_file: str | None,
    embedder: str,
    second_stage: str,
    thresholds: tuple[float, ...],
    target_false_hit: float,
    as_json: bool,
) -> None:
    """Hit rate (pairs that should match, served) and false-hit rate (pairs that should not,
    served anyway) of semantic matching per threshold, and the lowest threshold whose
    false-hit rate meets the target."""
    from loopml.llm.cache.evaluate import THRESHOLDS, evaluate
    from loopml.llm.cache.pairs import load_pairs

    report = evaluate(
        load_pairs(pairs_file),
        thresholds or THRESHOLDS,
        embedder=_embedder(embedder),
        second_stage="entities" if second_stage == "entities" else "none",
        target_false_hit=target_false_hit,
    )
    if as_json:
        emit_json(report.to_dict())
        return
    out = console()
    grid = table(
        "Threshold",
        "Hit rate",
        "False-hit rate",
        "Hits",
        "False hits",
        title=(
            f"{report.should_match:,} pairs that should match, {report.should_not_match:,} "
            f"that should not; embedder {report.embedder}, second stage {report.second_stage}"
        ),
    )
    for column in grid.columns:
        column.justify = "right"
    for result in report.results:
        style = "bold green" if result.threshold == report.recommended else ""
        grid.add_row(
            text(f"{result.threshold:.2f}", style),
            _percent(result.hit_rate),
            f"{result.false_hit_rate * 100:.2f}%",
            f"{result.hits:,}",
            f"{result.false_hits:,}",
        )
    out.print(grid)
    target = f"{target_false_hit * 100:g}%"
    if report.recommended is None:
        out.print(
            f"No threshold tried keeps false hits at or under {target}; try higher "
            "thresholds (--threshold 0.99) or a better embedder."
        )
        return
    chosen = report.at(report.recommended)
    out.print(
        f"Recommended threshold: {report.recommended:.2f} (false hits "
        f"{chosen.false_hit_rate * 100:.2f}% <= {target}, hit rate {_percent(chosen.hit_rate)})."
    )
    if report.false_hits_by_kind:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(report.false_hits_by_kind.items()))
        out.print(f"False hits there, by what the near miss changed: {kinds}.")
