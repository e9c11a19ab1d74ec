"""``loopml evals``: run an eval suite against a prompt version — a CI step.

    loopml evals run evals/support.yaml --prompt support/answer/4 --model cheap
    loopml evals run evals/support.yaml --prompt support/answer@staging --compare production
    loopml evals run evals/support.yaml --prompt support/answer/4 --repeat 3 --json
    loopml evals calibrate evals/judged.yaml --prompt support/answer/4 --min-kappa 0.6

Exit 0 when the suite's thresholds hold, 1 when one fails (or the suite can't be scored).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from loopml.cli.context import CliError, pass_workspace
from loopml.cli.render import console, emit_json, json_option, table, text

if TYPE_CHECKING:
    from loopml.llm.evals import SuiteResult
    from loopml.workspace import Workspace

STATUS_STYLE = {"passed": "green", "failed": "red", "error": "red", "judge_error": "yellow"}


@click.group()
def evals() -> None:
    """Eval suites of prompts: run them (in CI), compare versions, gate promotions."""


def _short(value: Any, limit: int = 48) -> str:
    shown = value if isinstance(value, str) else "" if value is None else str(value)
    shown = " ".join(shown.split())
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


def _show(result: SuiteResult) -> None:
    out = console()
    repeated = result.repeat > 1
    cases = table(
        "case",
        *(["#"] if repeated else []),
        "status",
        "output",
        "failed checks",
        "ms",
        "cost $",
        title=f"{result.suite.name} on {result.prompt}"
        + (f" ({result.model})" if result.model else ""),
    )
    for case in result.cases:
        failed = ", ".join(
            f"{s.name}: {s.detail}" if s.detail else s.name
            for s in case.scores
            if s.passed is not True
        )
        cases.add_row(
            text(case.case_id),
            *([text(str(case.repeat + 1))] if repeated else []),
            text(case.status, STATUS_STYLE.get(case.status, "")),
            text(_short(case.output if case.error is None else case.error)),
            text(_short(failed, 60)),
            text(f"{case.latency_ms:.0f}"),
            text(f"{case.cost_usd:.6f}"),
        )
    out.print(cases)
    summary = table("assertion", "pass rate", title="per assertion")
    for name, rate in result.assertion_pass_rates().items():
        summary.add_row(text(name), text(f"{rate:.1%}"))
    out.print(summary)
    m = result.metrics()
    out.print(
        text(
            f"pass rate {result.pass_rate:.1%} ({int(m['passed'])}/{len(result.cases)}; "
            f"{int(m['failed'])} failed, {int(m['errors'])} errors, "
            f"{int(m['judge_errors'])} judge errors) · cost ${result.cost_usd:.6f} "
            f"(judges ${result.judge_cost_usd:.6f}) · p50 {m['latency_p50_ms']:.0f} ms · "
            f"{result.upstream_calls} calls, {result.cached_calls} cached · run {result.run_id}"
        )
    )
    if result.comparison is not None:
        c = result.comparison
        out.print(
            text(
                f"against {c.baseline}: {c.baseline_pass_rate:.1%} → {c.pass_rate:.1%} "
                f"({c.delta:+.1%}); {len(c.regressions)} regressions, "
                f"{len(c.improvements)} improvements"
            )
        )
        for name, rows, style in (
            ("regression", c.regressions, "red"),
            ("improvement", c.improvements, "green"),
        ):
            for case_id, repeat, before, after in rows:
                at = f" #{repeat + 1}" if repeated else ""
                out.print(text(f"  {name}: {case_id}{at} {before} → {after}", style))


@evals.command("run")
@click.argument("suite_path", metavar="SUITE")
@click.option(
    "--prompt", "prompt", help="NAME/VERSION or NAME@LABEL (default: the suite's prompt)."
)
@click.option("--model", help="A model of the gateway (default: the suite's, else the prompt's).")
@click.option("--repeat", type=click.IntRange(min=1), default=1, show_default=True,
              help="Run every case N times.")  # fmt: skip
@click.option("--concurrency", type=click.IntRange(min=1), default=16, show_default=True,
              help="Calls in flight at most.")  # fmt: skip
@click.option("--compare", "baseline", metavar="LABEL",
              help="Also run the label's (or version's) holder; show regressions case by case.")  # fmt: skip
@click.option("--experiment", help="The experiment of the tracked run (default: evals).")
@json_option
@pass_workspace
def run(
    ws: Workspace,
    suite_path: str,
    prompt: str | None,
    model: str | None,
    repeat: int,
    concurrency: int,
    baseline: str | None,
    experiment: str | None,
    as_json: bool,
) -> None:
    """Run SUITE (YAML or JSONL) on a prompt version: a table of the cases, a summary per
    assertion, one tracked run; exit 1 when a threshold of the suite fails."""
    from loopml.llm.evals.runner import CallCache, arun_suite, compare, record, run_sync
    from loopml.llm.evals.suites import load_suite
    from loopml.llm.gateway import Gateway
    from loopml.llm.prompts import PromptRef

    suite = load_suite(suite_path)
    ref = prompt or suite.prompt
    if not ref:
        raise CliError(
            f"Which prompt does suite {suite.name!r} evaluate? Pass --prompt NAME/VERSION "
            "(or NAME@LABEL), or set 'prompt:' in the suite."
        )
    other: str | None = None
    if baseline is not None:
        name = PromptRef.parse(ref).name
        if baseline.isdigit():  # a version of the same prompt
            other = f"{name}/{baseline}"
        elif "@" in baseline or "/" in baseline:  # a whole reference
            other = baseline
        else:  # a label of the same prompt
            other = f"{name}@{baseline}"

    async def both() -> tuple[SuiteResult, SuiteResult | None]:
        gw = Gateway.from_config(None, workspace=ws)
        cache = CallCache()
        options: dict[str, Any] = {
            "model": model,
            "repeat": repeat,
            "concurrency": concurrency,
            "gateway": gw,
            "cache": cache,
            "track": False,
        }
        try:
            result = await arun_suite(suite, ref, **options)
            base = await arun_suite(suite, other, **options) if other else None
        finally:
            await gw.aclose()
        return result, base

    result, base = run_sync(both())
    if base is not None:
        record(base, ws, experiment=experiment)
        result.comparison = compare(result, base)
    record(result, ws, experiment=experiment)
    failures = result.threshold_failures()
    if as_json:
        emit_json(result.to_dict())
    else:
        _show(result)
    if failures:
        raise CliError("the suite's thresholds failed: " + "; ".join(failures))


@evals.command("calibrate")
@click.argument("suite_path", metavar="SUITE")
@click.option(
    "--prompt", "prompt", help="NAME/VERSION or NAME@LABEL (default: the suite's prompt)."
)
@click.option("--model", help="A model of the gateway (default: the suite's, else the prompt's).")
@click.option("--concurrency", type=click.IntRange(min=1), default=16, show_default=True,
              help="Calls in flight at most.")  # fmt: skip
@click.option("--min-kappa", type=click.FloatRange(-1, 1),
              help="Exit 1 when a judge's Cohen's kappa is below this.")  # fmt: skip
@click.option("--experiment", help="The experiment of the tracked run (default: evals).")
@json_option
@pass_workspace
def calibrate_(
    ws: Workspace,
    suite_path: str,
    prompt: str | None,
    model: str | None,
    concurrency: int,
    min_kappa: float | None,
    experiment: str | None,
    as_json: bool,
) -> None:
    """Run SUITE and report how far each judge agrees with the human labels of its cases
    (`human: pass` / `human: fail`): accuracy and Cohen's kappa; a low kappa is flagged."""
    from loopml.llm.evals.calibration import JUDGED, LOW_KAPPA, calibrate
    from loopml.llm.evals.runner import record, run_suite
    from loopml.llm.evals.suites import load_suite

    suite = load_suite(suite_path)
    if not any(case.human is not None for case in suite.cases):
        raise CliError(
            f"Suite {suite.name!r} has no human-labelled case: add `human: pass` or "
            "`human: fail` to the cases a person has judged."
        )
    if not any(a.type in JUDGED for case in suite.cases for a in case.assertions):
        raise CliError(
            f"Suite {suite.name!r} has no judge assertion to calibrate ({', '.join(JUDGED)})."
        )
    result = run_suite(
        suite, prompt, model=model, concurrency=concurrency, track=False, workspace=ws
    )
    found = calibrate(result)
    extra: dict[str, float] = {}
    for name, a in found.items():
        if a.accuracy is not None:
            extra[f"judge/{name}/accuracy"] = a.accuracy
        if a.kappa is not None:
            extra[f"judge/{name}/kappa"] = a.kappa
        extra[f"judge/{name}/labelled"] = float(a.n)
    record(result, ws, experiment=experiment, extra=extra)
    if as_json:
        emit_json(
            {
                "suite": suite.name,
                "prompt": result.prompt,
                "run_id": result.run_id,
                "judges": {name: a.to_dict() for name, a in found.items()},
            }
        )
    else:
        grid = table(
            "judge", "labelled", "accuracy", "kappa", "judge errors", "", title="judge vs humans"
        )
        for name, a in found.items():
            grid.add_row(
                text(name),
                text(str(a.n)),
                text("-" if a.accuracy is None else f"{a.accuracy:.1%}"),
                text("-" if a.kappa is None else f"{a.kappa:.2f}"),
                text(str(a.judge_errors)),
                text(f"low (kappa < {LOW_KAPPA})", "red") if a.low else text(""),
            )
        console().print(grid)
        console().print(text(f"{result.prompt} · run {result.run_id}"))
    low = [
        name
        for name, a in found.items()
        if min_kappa is not None and (a.kappa is None or a.kappa < min_kappa)
    ]
    if low:
        raise CliError(
            f"judge agreement with the human labels is below --min-kappa {min_kappa}: "
            + ", ".join(low)
        )
