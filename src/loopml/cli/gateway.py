"""``loopml gateway``: the LLM gateway — serve it, check its config, and manage the virtual
keys its clients use.

    loopml gateway keys create --team growth --budget 50/month --rpm 600 --models gpt-4o-mini
    loopml gateway serve --config gateway.toml --port 4000
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import click

from loopml.cli.context import pass_workspace
from loopml.cli.render import (
    console,
    emit_json,
    format_time,
    json_option,
    key_values,
    table,
    text,
)
from loopml.exceptions import LoopmlError

if TYPE_CHECKING:
    from loopml.llm.config import GatewayConfig, Limits
    from loopml.llm.keys import VirtualKey
    from loopml.workspace import Workspace

CONFIG_HELP = (
    "A TOML file with the gateway's config (its keys at the top level or under [gateway]).  "
    "[default: [gateway] of loopml.toml]"
)


@click.group()
def gateway() -> None:
    """The LLM gateway: one OpenAI- and Anthropic-compatible endpoint in front of every
    provider, with virtual keys, budgets, rate limits, cost accounting and request logs."""


def _config(ws: Workspace, path: str | None) -> GatewayConfig:
    from loopml.llm.config import load_gateway_config

    return load_gateway_config(path, settings=None if path else ws.settings)


@gateway.command("serve")
@click.option("--config", "config_path", metavar="FILE", help=CONFIG_HELP)
@click.option("--host", default="127.0.0.1", show_default=True, help="The address to bind.")
@click.option("--port", default=4000, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 256),
    help="Worker processes (they share keys, limits and budgets through the metadata store, "
    "or Redis with [gateway] limits_url).",
)
@pass_workspace
def serve(ws: Workspace, config_path: str | None, host: str, port: int, workers: int) -> None:
    """Serve the gateway: POST /v1/chat/completions, /v1/embeddings, /v1/messages,
    /v1/feedback (on a request id) and /v1/traces (OTLP/HTTP spans), GET /v1/models and
    /metrics. Point any OpenAI or Anthropic client at http://HOST:PORT/v1 with a virtual key. The config is reloaded when it changes; SIGTERM drains requests in flight
    and flushes the request log."""
    from loopml.llm.server import serve as run_gateway

    config = _config(ws, config_path)  # a bad config is one error line, before anything starts
    for group in config.models.values():
        for deployment in group.deployments:
            if deployment.api_key_env and not os.environ.get(deployment.api_key_env):
                click.echo(
                    f"warning: {deployment.api_key_env} is not set: deployment {deployment.name} "
                    f"(model group {group.name}) sends its provider no key "
                    "(`loopml gateway check` lists every deployment's).",
                    err=True,
                )

    def announce() -> None:
        click.echo(f"loopml gateway on http://{host}:{port}/v1 (Ctrl+C to stop)", err=True)

    run_gateway(
        workspace=ws,
        config_path=config_path,
        host=host,
        port=port,
        workers=workers,
        announce=announce,
    )


@gateway.command("check")
@click.option("--config", "config_path", metavar="FILE", help=CONFIG_HELP)
@json_option
@pass_workspace
def check(ws: Workspace, config_path: str | None, as_json: bool) -> None:
    """Check the gateway's config and show its model groups, deployments, routers and teams
    (a bad config is one error line naming the entry). Provider keys are read from the
    environment variables the deployments name; a variable that is not set is flagged."""
    import os

    config = _config(ws, config_path)
    groups: list[dict[str, Any]] = [
        {
            "name": group.name,
            "strategy": group.strategy,
            "fallbacks": list(group.fallbacks),
            "context_window": group.context_window,
            "larger_context": group.larger_context,
            "deployments": [
                {
                    "name": d.name,
                    "provider": d.provider,
                    "model": d.model,
                    "base_url": d.base_url,
                    "weight": d.weight,
                    "api_key_env": d.api_key_env,
                    "api_key_set": bool(d.api_key_env and os.environ.get(d.api_key_env)),
                }
                for d in group.deployments
            ],
        }
        for group in config.models.values()
    ]
    routers = [
        {"name": r.name, "default": r.default, "rules": [rule.model for rule in r.rules]}
        for r in config.routers.values()
    ]
    teams = {name: _limits_json(limits) for name, limits in config.teams.items()}
    cache = _cache_json(config)
    guardrails = _guardrails_json(config)
    if as_json:
        emit_json(
            {
                "source": config.source,
                "models": groups,
                "routers": routers,
                "teams": teams,
                "cache": cache,
                "guardrails": guardrails,
            }
        )
        return
    out = console()
    out.print(text(f"{config.source}: OK"))
    if not groups:
        out.print(
            "No model groups: add \\[gateway.models.NAME] with its \\[\\[gateway.models.NAME."
            "deployments]] (docs/gateway.md)."
        )
        return
    grid = table("Group", "Strategy", "Deployment", "Provider", "Model", "Base URL", "Key env")
    for group in groups:
        first = True
        for d in group["deployments"]:
            env = d["api_key_env"] or ""
            if env and not d["api_key_set"]:
                env += " (not set)"
            grid.add_row(
                text(group["name"] if first else ""),
                group["strategy"] if first else "",
                text(d["name"]),
                d["provider"],
                text(d["model"]),
                text(d["base_url"]),
                text(env),
            )
            first = False
    out.print(grid)
    for group in groups:
        if group["fallbacks"]:
            out.print(text(f"{group['name']} falls back to {', '.join(group['fallbacks'])}"))
    for r in routers:
        rules = " → ".join(r["rules"]) or "no rules"
        out.print(text(f"router {r['name']}: {rules}; default {r['default']}"))
    for name, limits in teams.items():
        shown = ", ".join(f"{k} {v}" for k, v in limits.items() if v is not None)
        out.print(text(f"team {name}: {shown or 'no limits'}"))
    if cache is not None:
        routes = [g for g in config.models if config.cache.route(g).enabled]
        kinds = [g for g in routes if config.cache.route(g).semantic]
        out.print(
            text(
                f"cache ({cache['backend']}): {', '.join(routes) or 'no route'}"
                + (f"; semantic on {', '.join(kinds)}" if kinds else "")
            )
        )
    if guardrails is not None:
        attached = [f"{k} {n} → {p}" for k, names in guardrails["attached"].items()
                    for n, p in names.items()]  # fmt: skip
        if guardrails["default"]:
            attached.insert(0, f"default → {guardrails['default']}")
        out.print(text(f"guardrails: {'; '.join(attached)}"))


def _cache_json(config: GatewayConfig) -> dict[str, Any] | None:
    cache = config.cache
    if cache is None:
        return None
    defaults = cache.defaults
    return {
        "backend": cache.backend or "workspace",
        "partition": cache.partition,
        "embedder": cache.embedder,
        "semantic": defaults.semantic,
        "threshold": defaults.threshold,
        "routes": {
            name: {"enabled": r.enabled, "semantic": r.semantic, "threshold": r.threshold}
            for name, r in cache.routes.items()
        },
    }


def _guardrails_json(config: GatewayConfig) -> dict[str, Any] | None:
    guardrails = config.guardrails
    if not guardrails.active:
        return None
    return {
        "default": guardrails.default,
        "attached": {
            "route": dict(guardrails.routes),
            "team": dict(guardrails.teams),
            "key": dict(guardrails.keys),
        },
        "policies": sorted(guardrails.policies),
    }


# -- keys ------------------------------------------------------------------------------------


@gateway.group()
def keys() -> None:
    """Virtual keys of the gateway's clients: each with its team, models, rate limits,
    budget and expiry. A key's secret is shown once, when created; the store keeps only its
    hash."""


def _limits_json(limits: Limits) -> dict[str, Any]:
    from loopml.llm.keys import format_budget

    return {
        "rpm": limits.rpm,
        "tpm": limits.tpm,
        "budget": format_budget(limits.budget) if limits.budget is not None else None,
        "max_request_cost_usd": limits.max_request_cost_usd,
    }


@keys.command("create")
@click.option("--name", metavar="TEXT", help="What the key is for (an app, a person).")
@click.option("--team", metavar="NAME", help="Its team: [gateway.teams.NAME]'s limits apply too.")
@click.option("--budget", metavar="USD/PERIOD", help="Spend limit: 50/month or 2.5/day (USD).")
@click.option("--rpm", type=int, metavar="N", help="Requests per minute.")
@click.option("--tpm", type=int, metavar="N", help="Tokens per minute (prompt + completion).")
@click.option(
    "--models",
    metavar="A,B",
    help="The model names it may ask for, comma-separated.  [default: every model]",
)
@click.option(
    "--max-request-cost",
    type=float,
    metavar="USD",
    help="The most one request may cost (estimated before it is sent).",
)
@click.option(
    "--log-content",
    type=click.Choice(["full", "redact", "none"]),
    help="What the request log keeps of its messages.  [default: [gateway] log_content]",
)
@click.option(
    "--expires",
    metavar="WHEN",
    help="30d, 12h, 2w, or an ISO date/time (2026-12-31).  [default: never]",
)
@json_option
@pass_workspace
def create(
    ws: Workspace,
    name: str | None,
    team: str | None,
    budget: str | None,
    rpm: int | None,
    tpm: int | None,
    models: str | None,
    max_request_cost: float | None,
    log_content: str | None,
    expires: str | None,
    as_json: bool,
) -> None:
    """Create a virtual key and print its secret once (alone on stdout, so
    `export OPENAI_API_KEY=$(loopml gateway keys create …)` works): only its hash is kept."""
    from loopml.llm.keys import create_key

    key, secret = create_key(
        ws,
        name=name,
        team=team,
        models=models,
        rpm=rpm,
        tpm=tpm,
        budget=budget,
        max_request_cost_usd=max_request_cost,
        log_content=log_content,
        expires=expires,
    )
    if key.team:
        _warn_unknown_team(ws, key.team)
    if as_json:
        emit_json({**key.to_dict(), "secret": secret})
        return
    click.echo(secret)
    what = [f"team {key.team}"] if key.team else []
    what += [f"{k} {v}" for k, v in _limits_json(key.limits).items() if v is not None]
    if key.expires_at is not None:
        what.append(f"expires {key.to_dict()['expires_at']}")
    details = f" ({', '.join(what)})" if what else ""
    click.echo(
        f"Created key {key.id}{details}. Copy the secret now: it is not shown again.",
        err=True,
    )


def _warn_unknown_team(ws: Workspace, team: str) -> None:
    """A team that loopml.toml's [gateway.teams] doesn't declare, when it declares some, is
    likely a typo: say so on stderr (the key is created; the team still groups costs)."""
    from loopml.llm.config import load_gateway_config

    try:
        teams = load_gateway_config(settings=ws.settings).teams
    except LoopmlError:
        return
    if teams and team not in teams:
        click.echo(
            f"warning: no team {team!r} in [gateway.teams] of loopml.toml (it has "
            f"{', '.join(sorted(teams))}): the key gets no team budget or limits.",
            err=True,
        )


@keys.command("list")
@click.option("--team", metavar="NAME", help="Only this team's keys.")
@click.option("--all", "show_all", is_flag=True, help="Revoked keys too.")
@json_option
@pass_workspace
def list_(ws: Workspace, team: str | None, show_all: bool, as_json: bool) -> None:
    """List keys (their prefixes, never their secrets); expired ones are marked, revoked ones
    shown with --all."""
    from loopml.llm.keys import list_keys

    found = list_keys(ws, team=team, include_revoked=show_all)
    if as_json:
        emit_json([k.to_dict() for k in found])
        return
    out = console()
    if not found:
        out.print("No keys. Create one: loopml gateway keys create --team NAME --budget 50/month")
        return
    grid = table(
        "ID", "Prefix", "Name", "Team", "Models", "RPM", "TPM", "Budget", "State", "Created"
    )
    for k in found:
        data = k.to_dict()
        grid.add_row(
            k.id,
            k.prefix + "…",
            text(k.name or ""),
            text(k.team or ""),
            text(",".join(k.models) if k.models else "all"),
            f"{k.limits.rpm:,}" if k.limits.rpm else "",
            f"{k.limits.tpm:,}" if k.limits.tpm else "",
            data["budget"] or "",
            data["state"],
            format_time(_moment(k.created_at)),
        )
    out.print(grid)


def _moment(ms: int | None) -> Any:
    from loopml.store.clock import to_datetime

    return to_datetime(ms)


def _spend(ws: Workspace, key: VirtualKey) -> dict[str, Any]:
    """What the request log holds of ``key``: requests and USD, all time and this month."""
    import time

    from sqlalchemy import func, select

    from loopml.llm.limits import period_start
    from loopml.llm.tables import llm_requests

    t = llm_requests
    month = period_start("month", time.time())
    stmt = select(
        func.count(),
        func.coalesce(func.sum(t.c.cost_usd), 0.0),
        func.coalesce(func.sum(t.c.cost_usd).filter(t.c.created_at >= month), 0.0),
    ).where(t.c.key_id == key.id)
    with ws.db.read() as conn:
        requests, total, this_month = conn.execute(stmt).one()
    return {
        "requests": int(requests),
        "spent_usd": float(total),
        "spent_usd_this_month": float(this_month),
    }


@keys.command("show")
@click.argument("key_id", metavar="ID")
@click.option("--config", "config_path", metavar="FILE", help=CONFIG_HELP)
@json_option
@pass_workspace
def show(ws: Workspace, key_id: str, config_path: str | None, as_json: bool) -> None:
    """Show key ID (its id k_… or prefix sk-lml-…): its limits, what it has spent, and what
    is left of its rate limits and budget now (and of its team's, from the config)."""
    from loopml.llm.counters import open_counters
    from loopml.llm.keys import get_key
    from loopml.llm.limits import Limiter

    key = get_key(ws, key_id)
    config = _config(ws, config_path)
    limiter = Limiter(open_counters(ws, config.limits_url))
    try:
        remaining = limiter.remaining(f"key:{key.id}", key.limits)
        team_limits = config.teams.get(key.team) if key.team else None
        team: dict[str, Any] | None = (
            {"name": key.team, "remaining": limiter.remaining(f"team:{key.team}", team_limits)}
            if team_limits is not None
            else None
        )
    finally:
        limiter.close()
    spend = _spend(ws, key)
    if as_json:
        emit_json({**key.to_dict(), "usage": spend, "remaining": remaining, "team_limits": team})
        return
    data = key.to_dict()
    rows: dict[str, Any] = {
        "ID": key.id,
        "Prefix": key.prefix + "…",
        "Name": key.name or "",
        "Team": key.team or "",
        "State": data["state"],
        "Models": ",".join(key.models) if key.models else "all",
        "Log content": key.log_content or "the gateway's",
        "Tags": ", ".join(f"{k}={v}" for k, v in key.tags.items()),
        "Created": format_time(_moment(key.created_at)),
        "Expires": format_time(_moment(key.expires_at)) or "never",
    }
    if key.revoked_at is not None:
        rows["Revoked"] = format_time(_moment(key.revoked_at))
    rows["Requests"] = f"{spend['requests']:,}"
    rows["Spent"] = (
        f"${spend['spent_usd']:.4f} in all, ${spend['spent_usd_this_month']:.4f} this month"
    )
    rows.update(_remaining_rows("", remaining))
    if team is not None:
        rows.update(_remaining_rows(f"Team {key.team} ", team["remaining"]))
    console().print(key_values(rows))


def _remaining_rows(label: str, remaining: dict[str, Any]) -> dict[str, str]:
    rows: dict[str, str] = {}
    for name in ("rpm", "tpm"):
        if name in remaining:
            r = remaining[name]
            unit = "requests" if name == "rpm" else "tokens"
            rows[f"{label}{name.upper()}"] = (
                f"{r['limit']:,} {unit}/min: {r['used']:,} used this minute, {r['left']:,} left"
            )
    if "budget" in remaining:
        b = remaining["budget"]
        rows[f"{label}Budget"] = (
            f"${b['amount_usd']:.2f}/{b['period']}: ${b['spent_usd']:.4f} spent since "
            f"{b['period_start']}, ${b['left_usd']:.4f} left"
        )
    if "max_request_cost_usd" in remaining:
        rows[f"{label}Max request cost"] = f"${remaining['max_request_cost_usd']:.4f}"
    return rows


@keys.command("revoke")
@click.argument("key_id", metavar="ID")
@pass_workspace
def revoke(ws: Workspace, key_id: str) -> None:
    """Revoke key ID (its id or prefix) for good; gateways refuse it within 5 seconds.
    Revoking it again changes nothing."""
    from loopml.llm.keys import revoke_key

    key = revoke_key(ws, key_id)
    click.echo(f"Revoked key {key.id} ({key.prefix}…) at {format_time(_moment(key.revoked_at))}.")
