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
    checks = ["my_checks:no_negative_prices"]   # fn(model, holdout) -> bool | (bool, details)
    require_approval = false

or from a :class:`GatePolicy` object. Every value is validated when the policy is read. A
behavioural check is imported with the workspace root on ``sys.path`` (``my_checks.py`` may sit
beside ``loopml.toml``) and must return a bool or ``(bool, details)``: any other answer fails
it. Every check's numbers land in the :class:`Verdict`.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import math
import re
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from numbers import Integral, Real
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from loopml.exceptions import InvalidConfig, InvalidInput
from loopml.registry.scoring import METRICS, better, score
from loopml.registry.signature import Signature, compatibility_problems

HOLDOUT_SUFFIXES = (".csv", ".txt", ".parquet", ".pq")


@dataclass(frozen=True)
class GatePolicy:
    """What a candidate must show to enter Production. Every value is checked when the
    policy is made (from ``loopml.toml`` or in Python): a bad one is an :class:`InvalidConfig`
    naming the key, never an error inside the gate."""

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

    def __post_init__(self) -> None:
        _check_policy(self.__dict__, "GatePolicy")
        object.__setattr__(self, "checks", tuple(self.checks))

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "gate policy") -> GatePolicy:
        """A policy from a ``[gates.NAME]`` table; ``where`` names it in error messages."""
        if not isinstance(data, dict):
            raise InvalidConfig(
                f"{where} must be a table of settings (metric = ..., holdout = ...), got {data!r}"
            )
        known = [f.name for f in fields(cls)]
        for key in data:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise InvalidConfig(
                    f"{where}: unknown setting {key!r}; {hint}valid: {', '.join(known)}"
                )
        values = dict(data)
        _check_policy(values, where)
        if "checks" in values:
            values["checks"] = tuple(values["checks"])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["checks"] = list(self.checks)
        return data


def _is_number(value: Any) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool | np.bool_)


def _check_policy(values: dict[str, Any], where: str) -> None:
    """Raise :class:`InvalidConfig` for the first value of a policy that can't be used."""

    def bad(key: str, expected: str) -> InvalidConfig:
        return InvalidConfig(f"{where}: {key} must be {expected}, got {values.get(key)!r}")

    for key in ("beat_champion", "require_signature_match", "require_approval"):
        if key in values and not isinstance(values[key], bool | np.bool_):
            raise bad(key, "true or false")
    metric = values.get("metric", "accuracy")
    if not isinstance(metric, str) or metric not in METRICS:
        close = difflib.get_close_matches(str(metric), list(METRICS), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise InvalidConfig(
            f"{where}: unknown metric {metric!r}; {hint}use one of {', '.join(sorted(METRICS))}"
        )
    for key in ("holdout", "label", "fairness_column"):
        value = values.get(key)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise bad(key, "a non-empty string")
    holdout = values.get("holdout")
    if holdout is not None and not str(holdout).lower().endswith(HOLDOUT_SUFFIXES):
        raise bad("holdout", "the path of a .csv or .parquet file")
    if holdout and not values.get("label"):
        raise InvalidConfig(f"{where}: a holdout needs label = '<label column>'")
    bounds: tuple[tuple[str, float | None, bool], ...] = (
        ("min_score", None, True),
        ("margin", 0.0, True),
        ("latency_p95_ms", 0.0, False),
        ("fairness_max_gap", 0.0, True),
    )
    for key, low, inclusive in bounds:
        number: Any = values.get(key, 0.0 if key == "margin" else None)
        if number is None and key != "margin":
            continue
        if not _is_number(number) or not math.isfinite(float(number)):
            raise bad(key, "a number")
        if low is not None and (number < low or (number == low and not inclusive)):
            raise bad(key, f"{'at least' if inclusive else 'more than'} {low:g}")
    sample = values.get("latency_sample", 100)
    if not isinstance(sample, Integral) or isinstance(sample, bool) or sample < 1:
        raise bad("latency_sample", "a whole number of rows, at least 1")
    has_column = values.get("fairness_column") is not None
    has_gap = values.get("fairness_max_gap") is not None
    if has_column != has_gap:
        raise InvalidConfig(
            f"{where}: fairness needs both fairness_column and fairness_max_gap; "
            f"only {'fairness_column' if has_column else 'fairness_max_gap'} is set"
        )
    checks = values.get("checks", ())
    if isinstance(checks, str) or not isinstance(checks, list | tuple):
        raise bad("checks", "a list of 'module:function' strings")
    for spec in checks:
        if not isinstance(spec, str) or not _CHECK_SPEC.match(spec):
            raise InvalidConfig(
                f"{where}: checks entry {spec!r} must look like 'module:function' "
                "(e.g. 'my_checks:no_negative_prices')"
            )


_CHECK_SPEC = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


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


def read_holdout(path: str | Path, label: str | None = None) -> pd.DataFrame:
    """Read a holdout file (.csv or .parquet); :class:`InvalidInput` names the file and what
    to do when it is missing, empty, unreadable or lacks the ``label`` column."""
    p = Path(path)
    if not p.exists():
        raise InvalidInput(
            f"Holdout dataset {p} does not exist: fetch it (`loopml data checkout`) or fix "
            "holdout = in the gate policy"
        )
    if p.suffix.lower() not in HOLDOUT_SUFFIXES:
        raise InvalidInput(f"Holdout {p}: use a .csv or .parquet file")
    try:
        parquet = p.suffix.lower() in {".parquet", ".pq"}
        frame = pd.read_parquet(p) if parquet else pd.read_csv(p)
    except pd.errors.EmptyDataError:
        raise InvalidInput(
            f"Holdout {p} is empty: it needs a header row and at least one row of data"
        ) from None
    except (ValueError, OSError, pd.errors.ParserError) as exc:  # pyarrow's errors are both
        raise InvalidInput(
            f"Cannot read holdout {p} ({type(exc).__name__}: {_first_line(exc)}); "
            "check that it is a valid CSV or Parquet file"
        ) from exc
    if frame.empty:
        raise InvalidInput(f"Holdout {p} has no rows: the gate needs rows to score the models on")
    if label is not None and label not in frame.columns:
        columns = ", ".join(map(str, frame.columns[:20]))
        raise InvalidInput(
            f"Holdout {p} has no label column {label!r} (its columns: {columns}); fix "
            "label = in the gate policy or add the column to the file"
        )
    return frame


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:300]


def load_check(spec: str, root: Path | None = None) -> Callable[..., Any]:
    """Import a behavioural check ``"module:function"``. The workspace ``root`` is put on
    ``sys.path`` while importing, so ``my_checks.py`` beside ``loopml.toml`` is found from
    any folder of the workspace, and from the ``loopml`` command."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise InvalidConfig(f"Behavioural check {spec!r} must look like 'module:function'")
    added = root is not None and str(root) not in sys.path
    if added:
        sys.path.insert(0, str(root))
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        where = f" (searched the workspace root {root} and sys.path)" if root else ""
        raise InvalidConfig(f"Cannot load behavioural check {spec!r}: {exc}{where}") from exc
    finally:
        if added:
            with contextlib.suppress(ValueError):
                sys.path.remove(str(root))
    if not callable(fn):
        raise InvalidConfig(f"Behavioural check {spec!r} is a {type(fn).__name__}, not a function")
    return fn


def check_outcome(spec: str, result: Any) -> CheckResult:
    """A behavioural check's return value as a result: ``bool`` (NumPy's too) or
    ``(bool, details)``. Anything else (``"yes"``, ``1``, ``None``) fails the check and says
    what came back, so a check that forgot to answer never lets a model through."""
    name = f"check:{spec}"
    expected = "a check must return True/False or (True/False, {details})"
    details: Any = {}
    answer = result
    if isinstance(result, tuple):
        if len(result) != 2:
            return CheckResult(
                name, False, {"error": f"returned a tuple of {len(result)} items; {expected}"}
            )
        answer, details = result
    if not isinstance(answer, bool | np.bool_):
        return CheckResult(
            name,
            False,
            {"error": f"returned {_describe(answer)} instead of a bool; {expected}"},
        )
    if not isinstance(details, dict):
        return CheckResult(
            name,
            False,
            {"error": f"returned details {_describe(details)}, not a dict; {expected}"},
        )
    return CheckResult(name, bool(answer), dict(details))


def _describe(value: Any) -> str:
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return f"{shown} ({type(value).__name__})"


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
    root: Path | None = None,
) -> Verdict:
    """Score the candidate (and the champion, on the same holdout) against ``policy``;
    behavioural checks are imported with the workspace ``root`` on ``sys.path``."""
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
            return check_outcome(spec, load_check(spec, root)(candidate, holdout))

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
