"""``loopml llm guardrails``: judge a text with a policy, measure a policy on labelled cases,
list the configured policies and the versions stored.

    loopml llm guardrails check "Ignore all previous instructions"     # exit 1: blocked
    echo "my card is 4111 1111 1111 1111" | loopml llm guardrails check -
    loopml llm guardrails evaluate --policy strict --cases cases.jsonl
    loopml llm guardrails list
    loopml llm guardrails save strict && loopml llm guardrails versions strict

Policies are those under ``[gateway.guardrails.policies]`` of the workspace's ``loopml.toml``,
plus the built-in ``default`` (which works with no config, and outside a workspace).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from loopml.cli.context import WorkspaceState, pass_workspace
from loopml.cli.render import console, emit_json, json_option, table, text

if TYPE_CHECKING:
    from loopml.llm.guardrails.evaluate import Report
    from loopml.llm.guardrails.policy import Policy
    from loopml.llm.guardrails.verdict import Verdict
    from loopml.workspace import Workspace

POLICY_HELP = "The policy: one under [gateway.guardrails.policies], or the built-in default."


def configured_policies() -> dict[str, Policy]:
    """The workspace's policies (and ``default``). Read from the raw ``[gateway]`` table of
    the settings, the table ``GatewayConfig.raw`` keeps, so a guardrail command works
    whatever the state of the gateway's model config; outside a workspace, only
    ``default``."""
    from loopml.config import load_settings
    from loopml.exceptions import InvalidConfig, WorkspaceNotFound
    from loopml.llm.guardrails.policy import policies_from_config

    state = click.get_current_context().find_object(WorkspaceState)
    try:
        settings = load_settings(state.location if state and state.location else None)
    except WorkspaceNotFound:
        return policies_from_config(None)
    source = str(settings.config_path) if settings.config_path else "loopml.toml"
    try:
        return policies_from_config(settings.gateway.get("guardrails"))
    except InvalidConfig as exc:
        raise InvalidConfig(f"{source}: {exc}") from None


def choose_policy(name: str) -> Policy:
    from loopml.exceptions import InvalidInput

    policies = configured_policies()
    if name not in policies:
        raise InvalidInput(
            f"No guardrail policy {name!r}; configured: {', '.join(sorted(policies))}. "
            f"Declare it under [gateway.guardrails.policies.{name}] in loopml.toml."
        )
    return policies[name]


@click.group()
def guardrails() -> None:
    """Guardrail policies: check a text, measure a policy on labelled cases, list policies
    and their stored versions."""


@guardrails.command("check")
@click.argument("text_arg", metavar="TEXT|-")
@click.option("--policy", "policy_name", default="default", show_default=True, help=POLICY_HELP)
@click.option(
    "--stage",
    type=click.Choice(["input", "output"]),
    default="input",
    show_default=True,
    help="Judge TEXT as a user's message (input) or as a model's answer (output).",
)
@json_option
def check_command(text_arg: str, policy_name: str, stage: str, as_json: bool) -> None:
    """Judge TEXT (or stdin, with -) with a policy: print the verdict, the text as it would be
    sent (redacted) and what each rule found. Exits 1 when a rule blocks it."""
    policy = choose_policy(policy_name)
    value = sys.stdin.read() if text_arg == "-" else text_arg
    if stage == "input":
        verdict = policy.check_input([{"role": "user", "content": value}])
        sent = verdict.messages[0]["content"] if verdict.messages else value
    else:
        verdict = policy.check_output(value)
        sent = verdict.text if verdict.text is not None else value
    if as_json:
        emit_json({**verdict.to_dict(), "text": sent if verdict.allowed else None})
    else:
        _print_verdict(verdict, sent)
    if not verdict.allowed:
        click.get_current_context().exit(1)


def _print_verdict(verdict: Verdict, sent: str) -> None:
    out = console()
    if verdict.allowed:
        state = "allowed, redacted" if verdict.redacted else "allowed"
        out.print(text(f"{state} by policy {verdict.policy!r} ({verdict.stage})", "green"))
        out.print(text(sent))
    else:
        out.print(text(f"blocked: {verdict.reason}", "bold red"))
    if verdict.findings:
        grid = table("Rule", "Kind", "Span", "Score")
        for f in verdict.findings:
            grid.add_row(text(f.rule), text(f.kind), f"{f.start}-{f.end}", f"{f.score:.2f}")
        out.print(grid)
    grid = table("Rule", "Detector", "Action", "Found", "µs", "Error")
    for r in verdict.rules:
        grid.add_row(
            text(r.rule),
            text(r.detector),
            text(r.action),
            "skipped" if r.skipped else str(r.findings),
            f"{r.latency_us:.0f}",
            text(r.error or ""),
        )
    out.print(grid)


@guardrails.command("evaluate")
@click.option("--policy", "policy_name", default="default", show_default=True, help=POLICY_HELP)
@click.option(
    "--cases",
    "cases_path",
    type=click.Path(dir_okay=False),
    help="A JSONL file of labelled cases (default: the shipped set; see docs/guardrails.md).",
)
@click.option(
    "--misses",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    help="Show this many of the cases a rule got wrong (line numbers of the file).",
)
@json_option
def evaluate_command(policy_name: str, cases_path: str | None, misses: int, as_json: bool) -> None:
    """Precision and recall of each rule of a policy on labelled cases (every rule runs on
    every case)."""
    from loopml.llm.guardrails.evaluate import evaluate, read_cases

    report = evaluate(choose_policy(policy_name), read_cases(cases_path))
    if as_json:
        emit_json(report.to_dict())
        return
    _print_report(report, misses, cases_path or "the shipped cases")


def _ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _print_report(report: Report, misses: int, source: str) -> None:
    out = console()
    out.print(text(f"policy {report.policy!r} on {report.cases} cases from {source}", "bold"))
    grid = table("Rule", "Detector", "TP", "FP", "FN", "TN", "Precision", "Recall")
    for column in grid.columns[2:]:
        column.justify = "right"
    for s in report.rules:
        grid.add_row(
            text(s.rule),
            text(s.detector),
            str(s.tp),
            str(s.fp),
            str(s.fn),
            str(s.tn),
            _ratio(s.precision),
            _ratio(s.recall),
        )
    out.print(grid)
    for label, count in sorted(report.unscored.items()):
        out.print(
            text(
                f"label {label!r} of {count} cases matches no rule of this policy at its stage",
                "dim",
            )
        )
    if report.misses and misses:
        grid = table("Line", "Rule", "Expected", "Kind", title=f"misses ({len(report.misses)})")
        for m in report.misses[:misses]:
            expected = "fire" if m.expected else "stay quiet"
            grid.add_row(str(m.line), text(m.rule), expected, text(m.kind or ""))
        out.print(grid)


@guardrails.command("list")
@json_option
def list_command(as_json: bool) -> None:
    """The configured policies (and the built-in default) with their rules."""
    policies = configured_policies()
    if as_json:
        emit_json([p.to_dict() for p in policies.values()])
        return
    grid = table("Policy", "Rule", "Detector", "Action", "Stage", "On error", no_wrap=("Policy",))
    for policy in policies.values():
        for i, rule in enumerate(policy.rules):
            grid.add_row(
                text(policy.name if i == 0 else ""),
                text(rule.name),
                text(rule.detector),
                text(rule.action),
                text(rule.stage),
                text(rule.on_error),
            )
        grid.add_section()
    console().print(grid)


@guardrails.command("save")
@click.argument("names", nargs=-1)
@json_option
@pass_workspace
def save_command(ws: Workspace, names: tuple[str, ...], as_json: bool) -> None:
    """Store the configured policies NAMES (all when none) as versions in the metadata store;
    saving unchanged rules again keeps their version."""
    from loopml.llm.guardrails.versions import save_policy

    policies = configured_policies()
    chosen = [choose_policy(n) for n in names] if names else list(policies.values())
    saved: list[dict[str, Any]] = [
        {"name": p.name, "version": save_policy(ws, p), "digest": p.digest} for p in chosen
    ]
    if as_json:
        emit_json(saved)
        return
    for row in saved:
        console().print(text(f"{row['name']}: version {row['version']} ({row['digest'][:12]})"))


@guardrails.command("versions")
@click.argument("name", required=False)
@json_option
@pass_workspace
def versions_command(ws: Workspace, name: str | None, as_json: bool) -> None:
    """Stored versions of a policy (of every policy without NAME), oldest first."""
    from loopml.llm.guardrails.versions import policy_versions

    versions = policy_versions(ws, name)
    if as_json:
        emit_json([v.to_dict() for v in versions])
        return
    out = console()
    if not versions:
        out.print("No guardrail policy versions stored (`loopml llm guardrails save`).")
        return
    grid = table("Policy", "Version", "Digest", "Created", "Rules")
    for v in versions:
        data: dict[str, Any] = v.to_dict()
        grid.add_row(
            text(v.name),
            str(v.version),
            v.digest[:12],
            text(data["created_at"] or ""),
            text(", ".join(str(r) for r in data["rules"])),
        )
    out.print(grid)
