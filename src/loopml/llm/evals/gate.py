"""The eval gate of protected prompt labels: a :class:`~loopml.llm.prompts.PromotionGate`
that runs a suite on the candidate (and on the label's current holder) and checks
thresholds from ``loopml.toml``::

    [gates.prompts."support/answer"]      # or [gates.prompts.default] for every prompt
    suite = "evals/support.yaml"          # relative to the workspace root
    min_pass_rate = 0.9                   # default: the suite's thresholds, else 1.0
    max_regression = 0.02                 # pass-rate drop allowed against the current holder
    max_cost_per_case = 0.002             # USD
    model = "cheap"                       # default: the suite's, else the prompt's
    repeat = 1
    concurrency = 16

    set_label("support/answer", "production", 4, gate=EvalGate.for_prompt("support/answer"))

The verdict (pass rates, the regressions case by case, cost, both tracked runs) is what
``set_label`` stores in the label's history. ``loopml prompts label`` uses the gate when the
label is protected and a gate is configured.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopml.exceptions import InvalidConfig
from loopml.llm.prompts.gate import GateVerdict
from loopml.workspace import WorkspaceLike, resolve_workspace

if TYPE_CHECKING:
    from loopml.llm.gateway import Gateway
    from loopml.llm.prompts import PromptVersion
    from loopml.workspace import Workspace

#: The ``[gates]`` sub-table that holds the prompt gates; ``default`` applies to every prompt
#: without its own table.
TABLE, DEFAULT = "prompts", "default"


@dataclass(frozen=True)
class EvalGatePolicy:
    """One ``[gates.prompts.NAME]`` table, checked."""

    suite: str
    min_pass_rate: float | None = None
    max_regression: float = 0.0
    max_cost_per_case: float | None = None
    model: str | None = None
    repeat: int = 1
    concurrency: int = 16

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str) -> EvalGatePolicy:
        known = [f.name for f in fields(cls)]
        if not isinstance(data, Mapping):
            raise InvalidConfig(f"{where} must be a table (suite = ..., min_pass_rate = ...)")
        for key in data:
            if key not in known:
                close = difflib.get_close_matches(str(key), known, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise InvalidConfig(
                    f"{where}: unknown setting {key!r}; {hint}valid: {', '.join(known)}"
                )
        if not isinstance(data.get("suite"), str) or not data["suite"]:
            raise InvalidConfig(f'{where}: suite = "path/to/suite.yaml" is required')
        for key in ("min_pass_rate", "max_regression"):
            value = data.get(key)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1
            ):
                raise InvalidConfig(f"{where}: {key} is a share from 0 to 1, got {value!r}")
        cost = data.get("max_cost_per_case")
        if cost is not None and (
            isinstance(cost, bool) or not isinstance(cost, int | float) or cost < 0
        ):
            raise InvalidConfig(f"{where}: max_cost_per_case is USD ≥ 0, got {cost!r}")
        for key in ("repeat", "concurrency"):
            value = data.get(key, 1)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidConfig(f"{where}: {key} is a whole number ≥ 1, got {value!r}")
        if data.get("model") is not None and not isinstance(data["model"], str):
            raise InvalidConfig(f"{where}: model is a model name, got {data['model']!r}")
        return cls(**dict(data))


def policy_for(ws: Workspace, name: str) -> EvalGatePolicy | None:
    """The gate policy of prompt ``name``: its own table, else ``default``, else None."""
    tables = ws.settings.gates.get(TABLE) or {}
    if not isinstance(tables, Mapping):
        raise InvalidConfig(f"[gates.{TABLE}] must hold one table per prompt name")
    key = name if name in tables else DEFAULT if DEFAULT in tables else None
    if key is None:
        return None
    where = f"{ws.settings.config_path or 'loopml.toml'} [gates.{TABLE}.{key!r}]"
    return EvalGatePolicy.from_dict(tables[key], where)


class EvalGate:
    """Runs the policy's suite on the candidate and on the current holder; passes when the
    candidate's pass rate, regression and cost per case are within the thresholds."""

    def __init__(
        self,
        policy: EvalGatePolicy,
        *,
        workspace: WorkspaceLike = None,
        gateway: Gateway | None = None,
    ) -> None:
        self.policy = policy
        self.workspace = gateway.workspace if gateway is not None else resolve_workspace(workspace)
        self.gateway = gateway

    @classmethod
    def for_prompt(
        cls, name: str, *, workspace: WorkspaceLike = None, gateway: Gateway | None = None
    ) -> EvalGate:
        """The gate ``[gates.prompts.NAME]`` (or ``default``) configures; an error when none."""
        ws = gateway.workspace if gateway is not None else resolve_workspace(workspace)
        policy = policy_for(ws, name)
        if policy is None:
            raise InvalidConfig(
                f'No eval gate for prompt {name!r}: add [gates.{TABLE}."{name}"] (or '
                f'[gates.{TABLE}.{DEFAULT}]) with suite = "..." to loopml.toml'
            )
        return cls(policy, workspace=ws, gateway=gateway)

    def __call__(
        self,
        *,
        candidate: PromptVersion,
        label: str,
        current: PromptVersion | None,
        **future_kwargs: Any,
    ) -> GateVerdict:
        from loopml.llm.evals.runner import on_gateway

        return on_gateway(
            self.gateway, self.averdict(candidate=candidate, label=label, current=current)
        )

    async def averdict(
        self, *, candidate: PromptVersion, label: str, current: PromptVersion | None
    ) -> GateVerdict:
        from loopml.llm.evals.runner import CallCache, arun_suite, compare
        from loopml.llm.evals.suites import load_suite
        from loopml.llm.gateway import Gateway

        policy, ws = self.policy, self.workspace
        path = Path(policy.suite)
        suite = load_suite(path if path.is_absolute() else ws.root / path)
        gw = self.gateway or Gateway.from_config(None, workspace=ws)
        cache = CallCache()
        options: dict[str, Any] = {
            "model": policy.model,
            "repeat": policy.repeat,
            "concurrency": policy.concurrency,
            "gateway": gw,
            "cache": cache,
        }
        try:
            result = await arun_suite(suite, candidate.ref, **options)
            baseline = None
            if current is not None:
                baseline = await arun_suite(suite, current.ref, **options)
        finally:
            if self.gateway is None:
                await gw.aclose()
        min_pass = policy.min_pass_rate
        if min_pass is None:
            min_pass = suite.thresholds.get("min_pass_rate", 1.0)
        failures = []
        if result.pass_rate < min_pass:
            failures.append(f"pass rate {result.pass_rate:.1%} < {min_pass:.1%}")
            errored = [c for c in result.cases if c.status == "error"]
            if errored:
                first = errored[0]
                failures[-1] += (
                    f" ({len(errored)} of {len(result.cases)} cases could not run; case "
                    f"{first.case_id!r}: {first.error})"
                )
        details: dict[str, Any] = {
            "suite": suite.name,
            "suite_path": policy.suite,
            "suite_digest": suite.digest,
            "candidate": candidate.ref,
            "run_id": result.run_id,
            "pass_rate": result.pass_rate,
            "cost_per_case": result.cost_per_case,
            "judge_errors": sum(1 for c in result.cases if c.status == "judge_error"),
            "thresholds": {
                "min_pass_rate": min_pass,
                "max_regression": policy.max_regression,
                "max_cost_per_case": policy.max_cost_per_case,
            },
        }
        if baseline is not None:
            comparison = compare(result, baseline)
            regression = max(0.0, -comparison.delta)
            details.update(
                baseline=baseline.prompt,
                baseline_run_id=baseline.run_id,
                baseline_pass_rate=baseline.pass_rate,
                regression=regression,
                regressions=[c for c, *_ in comparison.regressions][:50],
                improvements=[c for c, *_ in comparison.improvements][:50],
            )
            if regression > policy.max_regression + 1e-12:
                failures.append(
                    f"regression {regression:.1%} against {baseline.prompt} "
                    f"> {policy.max_regression:.1%} ({len(comparison.regressions)} cases)"
                )
        if policy.max_cost_per_case is not None and result.cost_per_case > policy.max_cost_per_case:
            failures.append(
                f"cost per case ${result.cost_per_case:.6f} > ${policy.max_cost_per_case:g}"
            )
        # A failing pass rate opens the summary (it names the rate), else the rate does.
        opening = failures[:1] if result.pass_rate < min_pass else []
        summary = f"suite {suite.name}: " + (
            opening[0] if opening else f"pass rate {result.pass_rate:.1%}"
        )
        if baseline is not None:
            summary += f" (was {baseline.pass_rate:.1%} on {baseline.prompt})"
        if failures[len(opening) :]:
            summary += "; " + "; ".join(failures[len(opening) :])
        details["failures"] = failures
        return GateVerdict(passed=not failures, summary=summary, details=details)


def gate_for(ws: Workspace, name: str, label: str) -> EvalGate | None:
    """The eval gate ``loopml prompts label`` uses: for a protected label of a prompt with a
    configured gate, else None."""
    if label not in ws.settings.prompts.protected_labels:
        return None
    policy = policy_for(ws, name)
    return EvalGate(policy, workspace=ws) if policy is not None else None
