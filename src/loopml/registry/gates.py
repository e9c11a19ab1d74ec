"""The promotion gate: a policy (data) and the checks that score a candidate against it.

A policy comes from ``loopml.toml``::

    [gates.churn]
    metric = "accuracy"          # scored on the holdout, by both candidate and champion
    holdout = "data/holdout.csv" # a versioned dataset (csv or parquet; its hash is recorded)
    label = "churned"
    min_score = 0.80             # absolute threshold
    beat_champion = true
    margin = 0.01                # the candidate must beat Production by this much
    latency_p95_ms = 50          # single-row predict latency budget on a sample
    fairness_column = "region"   # max metric gap across the slice's values
    fairness_max_gap = 0.1
    require_signature_match = true
    checks = ["my_checks:no_negative_prices"]   # behavioural checks: fn(model, holdout) -> bool
    require_approval = false

or from a :class:`GatePolicy` object. Every check's numbers land in the :class:`Verdict`.
"""

from __future__ import annotations

import importlib
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from loopml.exceptions import InvalidConfig, InvalidInput
from loopml.registry.scoring import METRICS, better, score
from loopml.registry.signature import Signature, compatibility_problems


@dataclass(frozen=True)
class GatePolicy:
    metric: str = "accuracy"
    holdout: str | None = None
    label: str | None = None
    min_score: float | None = None
    beat_champion: bool = True
    margin: float = 0.0
    latency_p95_ms: float | None = None
    latency_sample: int = 100
    fairness_column: str | None = None
    fairness_max_gap: float | None = None
    require_signature_match: bool = True
    checks: tuple[str, ...] = ()
    require_approval: bool = False

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "gate policy") -> GatePolicy:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidConfig(
                f"{where}: unknown setting(s) {unknown}; valid: {', '.join(sorted(known))}"
            )
        values = dict(data)
        if "checks" in values:
            values["checks"] = tuple(values["checks"])
        policy = cls(**values)
        if policy.metric not in METRICS:
            raise InvalidConfig(
                f"{where}: unknown metric {policy.metric!r}; use one of {', '.join(sorted(METRICS))}"
            )
        if policy.holdout and not policy.label:
            raise InvalidConfig(f"{where}: a holdout needs label = '<label column>'")
        return policy

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["checks"] = list(self.checks)
        return data


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Verdict:
    model: str
    version: int
    champion: int | None
    passed: bool
    checks: tuple[CheckResult, ...]
    policy: dict[str, Any]
    holdout_digest: str | None = None
    awaiting_approval: bool = False
    forced: bool = False
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "champion": self.champion,
            "passed": self.passed,
            "awaiting_approval": self.awaiting_approval,
            "forced": self.forced,
            "reason": self.reason,
            "holdout_digest": self.holdout_digest,
            "policy": self.policy,
            "checks": [asdict(c) for c in self.checks],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Verdict:
        return cls(
            model=data["model"],
            version=data["version"],
            champion=data.get("champion"),
            passed=data["passed"],
            checks=tuple(CheckResult(**c) for c in data.get("checks", [])),
            policy=data.get("policy", {}),
            holdout_digest=data.get("holdout_digest"),
            awaiting_approval=data.get("awaiting_approval", False),
            forced=data.get("forced", False),
            reason=data.get("reason"),
        )

    def summary(self) -> str:
        lines = [f"gate for {self.model}/{self.version}: {'PASS' if self.passed else 'FAIL'}"]
        for check in self.checks:
            numbers = ", ".join(
                f"{k}={_fmt(v)}" for k, v in check.details.items() if k != "traceback"
            )
            lines.append(f"  [{'pass' if check.passed else 'FAIL'}] {check.name}: {numbers}")
        return "\n".join(lines)


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def read_holdout(path: str | Path) -> pd.DataFrame:
    p = Path(path)
    if not p.exists():
        raise InvalidInput(f"Holdout dataset {p} does not exist (did you `loopml data checkout`?)")
    if p.suffix in {".parquet", ".pq"}:
        return pd.read_parquet(p)
    if p.suffix in {".csv", ".txt"}:
        return pd.read_csv(p)
    raise InvalidInput(f"Holdout {p}: use a .csv or .parquet file")


def load_check(spec: str) -> Callable[..., Any]:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise InvalidConfig(f"Behavioural check {spec!r} must look like 'module:function'")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise InvalidConfig(f"Cannot load behavioural check {spec!r}: {exc}") from exc


def _features(
    model: Any, model_signature: Signature | None, holdout: pd.DataFrame, label: str
) -> pd.DataFrame:
    """The holdout columns the model takes: from its signature, else sklearn's
    ``feature_names_in_``, else every column but the label."""
    columns: list[str] | None = None
    if model_signature is not None and not model_signature.columns[0].startswith("["):
        columns = model_signature.columns
    elif getattr(model, "feature_names_in_", None) is not None:
        columns = [str(c) for c in model.feature_names_in_]
    if columns is not None:
        missing = [c for c in columns if c not in holdout.columns]
        if missing:
            raise InvalidInput(
                f"The holdout lacks columns the model needs: {missing}. "
                f"It has: {list(holdout.columns)}"
            )
        return holdout[columns]
    return holdout.drop(columns=[label])


def _guard(name: str, fn: Callable[[], CheckResult]) -> CheckResult:
    """Run one check; an exception fails the check (with the error), never the process."""
    try:
        return fn()
    except Exception as exc:
        return CheckResult(
            name,
            False,
            {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(limit=5)},
        )


def evaluate(
    policy: GatePolicy,
    *,
    name: str,
    version: int,
    candidate: Any,
    candidate_signature: Signature | None,
    candidate_metrics: dict[str, float],
    champion: Any | None,
    champion_version: int | None,
    champion_signature: Signature | None,
    holdout: pd.DataFrame | None,
    holdout_digest: str | None,
) -> Verdict:
    """Score the candidate (and the champion, on the same holdout) against ``policy``."""
    checks: list[CheckResult] = []
    label = policy.label or ""
    cache: dict[str, Any] = {}

    def candidate_score() -> float:
        if "candidate" not in cache:
            if holdout is None:
                if policy.metric not in candidate_metrics:
                    raise InvalidInput(
                        f"No holdout configured and the run logged no {policy.metric!r} metric"
                    )
                cache["candidate"] = candidate_metrics[policy.metric]
            else:
                x = _features(candidate, candidate_signature, holdout, label)
                cache["candidate"] = score(policy.metric, holdout[label], candidate.predict(x))
        return float(cache["candidate"])

    if policy.min_score is not None:

        def threshold() -> CheckResult:
            value = candidate_score()
            ok = better(policy.metric, value, policy.min_score or 0.0)
            return CheckResult(
                "threshold", ok, {"metric": policy.metric, "score": value, "min": policy.min_score}
            )

        checks.append(_guard("threshold", threshold))

    if policy.beat_champion:

        def beat() -> CheckResult:
            value = candidate_score()
            if champion is None:
                return CheckResult("beats_champion", True, {"score": value, "champion": None})
            if holdout is None:
                raise InvalidInput("beat_champion needs a holdout: both models are scored on it")
            x = _features(champion, champion_signature, holdout, label)
            champ = score(policy.metric, holdout[label], champion.predict(x))
            ok = better(policy.metric, value, champ, policy.margin)
            return CheckResult(
                "beats_champion",
                ok,
                {
                    "metric": policy.metric,
                    "score": value,
                    "champion_version": champion_version,
                    "champion_score": champ,
                    "margin": policy.margin,
                    "delta": value - champ,
                },
            )

        checks.append(_guard("beats_champion", beat))

    if policy.latency_p95_ms is not None:

        def latency() -> CheckResult:
            if holdout is None:
                raise InvalidInput("latency_p95_ms needs a holdout to sample rows from")
            x = _features(candidate, candidate_signature, holdout, label)
            sample = x.head(policy.latency_sample)
            timings = []
            for i in range(len(sample)):
                row = sample.iloc[i : i + 1]
                start = time.perf_counter()
                candidate.predict(row)
                timings.append((time.perf_counter() - start) * 1000)
            p95 = float(np.percentile(timings, 95))
            return CheckResult(
                "latency",
                p95 <= (policy.latency_p95_ms or 0.0),
                {"p95_ms": p95, "budget_ms": policy.latency_p95_ms, "sample": len(timings)},
            )

        checks.append(_guard("latency", latency))

    if policy.fairness_column is not None and policy.fairness_max_gap is not None:

        def fairness() -> CheckResult:
            if holdout is None:
                raise InvalidInput("fairness needs a holdout")
            column = policy.fairness_column or ""
            if column not in holdout.columns:
                raise InvalidInput(f"The holdout has no slice column {column!r}")
            x = _features(candidate, candidate_signature, holdout, label)
            predictions = pd.Series(np.asarray(candidate.predict(x)), index=holdout.index)
            per_slice = {
                str(value): score(policy.metric, holdout.loc[idx, label], predictions.loc[idx])
                for value, idx in holdout.groupby(column).groups.items()
            }
            gap = max(per_slice.values()) - min(per_slice.values())
            return CheckResult(
                "fairness",
                gap <= (policy.fairness_max_gap or 0.0),
                {
                    "column": column,
                    "gap": gap,
                    "max_gap": policy.fairness_max_gap,
                    "slices": per_slice,
                },
            )

        checks.append(_guard("fairness", fairness))

    if policy.require_signature_match and champion is not None:

        def signature() -> CheckResult:
            if candidate_signature is None or champion_signature is None:
                return CheckResult("signature", True, {"note": "no signature recorded"})
            problems = compatibility_problems(candidate_signature, champion_signature)
            return CheckResult("signature", not problems, {"problems": problems})

        checks.append(_guard("signature", signature))

    for spec in policy.checks:

        def behavioural(spec: str = spec) -> CheckResult:
            fn = load_check(spec)
            result = fn(candidate, holdout)
            if isinstance(result, tuple):
                ok, details = bool(result[0]), dict(result[1])
            else:
                ok, details = bool(result), {}
            return CheckResult(f"check:{spec}", ok, details)

        checks.append(_guard(f"check:{spec}", behavioural))

    passed = all(c.passed for c in checks)
    return Verdict(
        model=name,
        version=version,
        champion=champion_version,
        passed=passed,
        checks=tuple(checks),
        policy=policy.to_dict(),
        holdout_digest=holdout_digest,
        awaiting_approval=passed and policy.require_approval,
    )
