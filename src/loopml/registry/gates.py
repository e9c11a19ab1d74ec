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

Each setting is answered by one plain function over numbers (:func:`check_threshold`,
:func:`check_beats_champion`, :func:`check_latency`, :func:`check_fairness`,
:func:`check_signature`, :func:`check_contract`, :func:`check_outcome` for a behavioural check,
:func:`awaiting_approval`), each returning one :class:`~loopml.checks.CheckResult`.
:func:`evaluate` is the edge: it scores and times the models on the holdout, runs the policy's
checks in a fixed order (a check that raises fails, with its error) and builds the verdict.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import importlib
import math
import re
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from numbers import Integral, Real
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from loopml.checks import CheckResult
from loopml.exceptions import InvalidConfig, InvalidInput
from loopml.registry.scoring import METRICS, better, score, within
from loopml.registry.scoring import metric as scoring_metric
from loopml.registry.signature import Signature, compatibility_problems

if TYPE_CHECKING:
    from loopml.validation.report import ValidationReport
    from loopml.validation.schema import Schema

__all__ = [
    "CheckResult",
    "GatePolicy",
    "Verdict",
    "awaiting_approval",
    "check_beats_champion",
    "check_contract",
    "check_feature_contract",
    "check_fairness",
    "check_latency",
    "check_outcome",
    "check_signature",
    "check_threshold",
    "evaluate",
    "features",
    "load_check",
    "logged_score",
    "model_score",
    "read_holdout",
    "slice_scores",
    "time_predictions",
]

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
            "checks": [c.to_dict() for c in self.checks],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Verdict:
        return cls(
            model=data["model"],
            version=data["version"],
            champion=data.get("champion"),
            passed=data["passed"],
            checks=tuple(CheckResult.from_dict(c) for c in data.get("checks", [])),
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


# ----------------------------------------------------------------------------------------------
# The checks: plain data in, one CheckResult out. Each answers for one setting of the policy;
# none loads a model, reads a file or times anything, so each is tested on numbers alone.
# ----------------------------------------------------------------------------------------------


def check_threshold(metric: str, value: float, min_score: float) -> CheckResult:
    """``threshold``: the candidate's ``metric`` reaches ``min_score`` (stays under it, for a
    loss such as ``rmse``); a NaN score fails.

    >>> check_threshold("accuracy", 0.83, 0.8).passed, check_threshold("rmse", 0.83, 0.8).passed
    (True, False)
    """
    scoring_metric(metric)
    details: dict[str, Any] = {"metric": metric, "score": value, "min": min_score}
    if _is_nan(value):
        return CheckResult(
            "threshold", False, {**details, "error": f"the candidate's {metric} is NaN"}
        )
    return CheckResult("threshold", better(metric, value, min_score), details)


def check_beats_champion(
    metric: str,
    value: float,
    champion_score: float | None,
    *,
    margin: float = 0.0,
    champion_version: int | None = None,
) -> CheckResult:
    """``beats_champion``: the candidate's score beats the champion's, both measured on the
    same holdout, by at least ``margin`` in the metric's units. Without a champion
    (``champion_score=None``) there is nothing to beat and it passes; a NaN score fails.

    >>> check_beats_champion("accuracy", 0.85, 0.80, margin=0.01, champion_version=3).passed
    True
    >>> check_beats_champion("accuracy", 0.85, None).details
    {'score': 0.85, 'champion': None}
    """
    scoring_metric(metric)
    if champion_score is None:
        if _is_nan(value):
            error = f"the candidate's {metric} is NaN"
            return CheckResult(
                "beats_champion", False, {"score": value, "champion": None, "error": error}
            )
        return CheckResult("beats_champion", True, {"score": value, "champion": None})
    details: dict[str, Any] = {
        "metric": metric,
        "score": value,
        "champion_version": champion_version,
        "champion_score": champion_score,
        "margin": margin,
        "delta": value - champion_score,
    }
    nan = [who for who, v in (("candidate", value), ("champion", champion_score)) if _is_nan(v)]
    if nan:
        error = f"{metric} is NaN for the {' and the '.join(nan)}: the scores can't be compared"
        return CheckResult("beats_champion", False, {**details, "error": error})
    return CheckResult("beats_champion", better(metric, value, champion_score, margin), details)


def check_latency(timings_ms: Sequence[float], budget_ms: float) -> CheckResult:
    """``latency``: the 95th percentile of single-row predict times is within ``budget_ms``.

    >>> check_latency([1.0] * 19 + [80.0], budget_ms=50).passed  # one slow row in 20
    True
    >>> check_latency([1.0] * 18 + [80.0] * 2, budget_ms=50).passed
    False
    """
    if len(timings_ms) == 0:
        return CheckResult(
            "latency",
            False,
            {"budget_ms": budget_ms, "sample": 0, "error": "no prediction was timed"},
        )
    p95 = float(np.percentile(np.asarray(timings_ms, dtype=float), 95))
    return CheckResult(
        "latency",
        p95 <= budget_ms,
        {"p95_ms": p95, "budget_ms": budget_ms, "sample": len(timings_ms)},
    )


def slice_scores(metric: str, labels: Any, predictions: Any, slices: Any) -> dict[str, float]:
    """``metric`` per value of ``slices`` (rows whose slice value is missing belong to no
    slice); the three are aligned by position.

    >>> slice_scores("accuracy", [1, 1, 0, 0], [1, 0, 0, 0], ["eu", "eu", "us", "us"])
    {'eu': 0.5, 'us': 1.0}
    """
    y_true, y_pred = np.asarray(labels), np.asarray(predictions)
    keys = pd.Series(np.asarray(slices, dtype=object))
    if not len(y_true) == len(y_pred) == len(keys):
        raise InvalidInput(
            f"labels, predictions and slices must have one value per row; got {len(y_true)}, "
            f"{len(y_pred)} and {len(keys)}"
        )
    return {
        str(value): score(metric, y_true[rows], y_pred[rows])
        for value, rows in keys.groupby(keys, sort=True).indices.items()
    }


def check_fairness(column: str, per_slice: dict[str, float], max_gap: float) -> CheckResult:
    """``fairness``: the best and the worst slice's scores are at most ``max_gap`` apart. It
    fails when there is no slice to compare, or a slice's score is NaN.

    >>> check_fairness("region", {"eu": 0.5, "us": 1.0}, max_gap=0.1).details["gap"]
    0.5
    """
    details: dict[str, Any] = {"column": column, "max_gap": max_gap, "slices": dict(per_slice)}
    nan = [name for name, value in per_slice.items() if _is_nan(value)]
    if not per_slice or nan:
        error = (
            f"the score is NaN for the slices {nan}"
            if nan
            else f"the holdout's column {column!r} has no values to slice by"
        )
        return CheckResult("fairness", False, {**details, "error": error})
    gap = max(per_slice.values()) - min(per_slice.values())
    return CheckResult(
        "fairness",
        within(gap, max_gap),
        {"column": column, "gap": gap, "max_gap": max_gap, "slices": dict(per_slice)},
    )


def check_signature(candidate: Signature | None, champion: Signature | None) -> CheckResult:
    """``signature``: the candidate takes the champion's inputs (a model without a recorded
    signature can't be compared, and passes with a note)."""
    if candidate is None or champion is None:
        return CheckResult("signature", True, {"note": "no signature recorded"})
    problems = compatibility_problems(candidate, champion)
    return CheckResult("signature", not problems, {"problems": problems})


def check_contract(report: ValidationReport) -> CheckResult:
    """``contract``: the holdout meets the candidate's data contract (its first ten errors)."""
    problems = [f"{f.column}: {f.message}" for f in report.errors][:10]
    return CheckResult("contract", report.ok, {"errors": problems})


def check_feature_contract(
    service: str, expected: Sequence[str], columns: Sequence[str]
) -> CheckResult:
    """``features``: the holdout has every feature of the model's feature service (its
    contract, ``SERVICE:VERSION``), so the model is scored on the features it will be served."""
    have = {str(c) for c in columns}
    missing = [name for name in expected if name not in have]
    return CheckResult(
        "features",
        not missing,
        {"service": service, "expected": list(expected), "missing": missing},
    )


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


def awaiting_approval(policy: GatePolicy, checks: Sequence[CheckResult]) -> bool:
    """Approval: a candidate that passed every check waits for a person when the policy says
    ``require_approval``; one that failed has nothing to approve."""
    return policy.require_approval and all(c.passed for c in checks)


def _is_nan(value: Any) -> bool:
    return isinstance(value, Real) and math.isnan(float(value))


def _describe(value: Any) -> str:
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return f"{shown} ({type(value).__name__})"


# ----------------------------------------------------------------------------------------------
# The edge: scoring and timing the models on the holdout, importing behavioural checks.
# ----------------------------------------------------------------------------------------------


def features(
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


def model_score(
    metric: str, model: Any, signature: Signature | None, holdout: pd.DataFrame, label: str
) -> float:
    """``metric`` of ``model``'s predictions on the holdout against its ``label`` column."""
    return score(metric, holdout[label], model.predict(features(model, signature, holdout, label)))


def logged_score(metric: str, metrics: dict[str, float]) -> float:
    """The candidate's score without a holdout: the ``metric`` its training run logged."""
    if metric not in metrics:
        raise InvalidInput(
            f"No holdout configured and the run logged no {metric!r} metric: log it "
            f"(loopml.log_metric({metric!r}, ...)) or set holdout = in the gate policy"
        )
    return float(metrics[metric])


def time_predictions(model: Any, rows: pd.DataFrame) -> list[float]:
    """Milliseconds each single-row ``predict`` of ``rows`` took."""
    timings = []
    for i in range(len(rows)):
        row = rows.iloc[i : i + 1]
        start = time.perf_counter()
        model.predict(row)
        timings.append((time.perf_counter() - start) * 1000)
    return timings


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


@dataclass(frozen=True)
class _Trial:
    """What one run of the gate measures: the models, their signatures, the holdout. Each
    method measures what its check needs and hands the numbers to the pure check."""

    policy: GatePolicy
    candidate: Any
    candidate_signature: Signature | None
    candidate_metrics: dict[str, float]
    champion: Any | None
    champion_version: int | None
    champion_signature: Signature | None
    holdout: pd.DataFrame | None
    root: Path | None
    contract: Schema | None
    feature_contract: tuple[str, tuple[str, ...]] | None = None

    @property
    def label(self) -> str:
        return self.policy.label or ""

    def planned(self) -> list[tuple[str, Callable[[], CheckResult]]]:
        """The policy's checks, in the order the verdict lists them."""
        policy = self.policy
        plan: list[tuple[str, Callable[[], CheckResult]]] = []
        if policy.min_score is not None:
            plan.append(("threshold", self.threshold))
        if policy.beat_champion:
            plan.append(("beats_champion", self.beats_champion))
        if policy.latency_p95_ms is not None:
            plan.append(("latency", self.latency))
        if policy.fairness_column is not None and policy.fairness_max_gap is not None:
            plan.append(("fairness", self.fairness))
        if policy.require_signature_match and self.champion is not None:
            plan.append(("signature", self.signature))
        for spec in policy.checks:
            plan.append((f"check:{spec}", functools.partial(self.behavioural, spec)))
        if self.contract is not None and self.holdout is not None:
            plan.append(("contract", self.meets_contract))
        if self.feature_contract is not None and self.holdout is not None:
            plan.append(("features", self.has_features))
        return plan

    @functools.cached_property
    def candidate_score(self) -> float:
        if self.holdout is None:
            return logged_score(self.policy.metric, self.candidate_metrics)
        return model_score(
            self.policy.metric, self.candidate, self.candidate_signature, self.holdout, self.label
        )

    def needed_holdout(self, why: str) -> pd.DataFrame:
        if self.holdout is None:
            raise InvalidInput(why)
        return self.holdout

    def threshold(self) -> CheckResult:
        return check_threshold(
            self.policy.metric, self.candidate_score, self.policy.min_score or 0.0
        )

    def beats_champion(self) -> CheckResult:
        value = self.candidate_score
        champion_score = None
        if self.champion is not None:
            holdout = self.needed_holdout(
                "beat_champion needs a holdout: both models are scored on it"
            )
            champion_score = model_score(
                self.policy.metric, self.champion, self.champion_signature, holdout, self.label
            )
        return check_beats_champion(
            self.policy.metric,
            value,
            champion_score,
            margin=self.policy.margin,
            champion_version=self.champion_version,
        )

    def latency(self) -> CheckResult:
        holdout = self.needed_holdout("latency_p95_ms needs a holdout to sample rows from")
        x = features(self.candidate, self.candidate_signature, holdout, self.label)
        timings = time_predictions(self.candidate, x.head(self.policy.latency_sample))
        return check_latency(timings, self.policy.latency_p95_ms or 0.0)

    def fairness(self) -> CheckResult:
        holdout = self.needed_holdout("fairness needs a holdout")
        column = self.policy.fairness_column or ""
        if column not in holdout.columns:
            raise InvalidInput(f"The holdout has no slice column {column!r}")
        x = features(self.candidate, self.candidate_signature, holdout, self.label)
        predictions = self.candidate.predict(x)
        per_slice = slice_scores(
            self.policy.metric, holdout[self.label], predictions, holdout[column]
        )
        return check_fairness(column, per_slice, self.policy.fairness_max_gap or 0.0)

    def signature(self) -> CheckResult:
        return check_signature(self.candidate_signature, self.champion_signature)

    def behavioural(self, spec: str) -> CheckResult:
        return check_outcome(spec, load_check(spec, self.root)(self.candidate, self.holdout))

    def meets_contract(self) -> CheckResult:
        assert self.contract is not None and self.holdout is not None  # planned() made sure
        return check_contract(self.contract.validate(self.holdout))

    def has_features(self) -> CheckResult:
        assert self.feature_contract is not None and self.holdout is not None
        service, expected = self.feature_contract
        return check_feature_contract(service, expected, list(self.holdout.columns))


def _guard(name: str, run: Callable[[], CheckResult]) -> CheckResult:
    """Run one check; an exception fails the check (with the error), never the process."""
    try:
        return run()
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
    contract: Schema | None = None,
    feature_contract: tuple[str, Sequence[str]] | None = None,
) -> Verdict:
    """Run the policy's checks on the candidate (the champion is scored on the same holdout)
    and return the verdict. A check that raises fails, with its error; behavioural checks are
    imported with the workspace ``root`` on ``sys.path``; with a ``contract`` (the
    candidate's data schema) the holdout is validated against it too, and with a
    ``feature_contract`` (``("SERVICE:VERSION", feature columns)``) it must hold those
    features. Without a holdout the candidate's score is the metric its run logged."""
    if holdout is not None and (policy.label is None or policy.label not in holdout.columns):
        raise InvalidInput(
            f"The holdout has no label column {policy.label!r} (its columns: "
            f"{', '.join(map(str, holdout.columns[:20]))}); set label = in the gate policy"
        )
    trial = _Trial(
        policy=policy,
        candidate=candidate,
        candidate_signature=candidate_signature,
        candidate_metrics=candidate_metrics,
        champion=champion,
        champion_version=champion_version,
        champion_signature=champion_signature,
        holdout=holdout,
        root=root,
        contract=contract,
        feature_contract=(
            (feature_contract[0], tuple(feature_contract[1])) if feature_contract else None
        ),
    )
    checks = tuple(_guard(check, run) for check, run in trial.planned())
    return Verdict(
        model=name,
        version=version,
        champion=champion_version,
        passed=all(c.passed for c in checks),
        checks=checks,
        policy=policy.to_dict(),
        holdout_digest=holdout_digest,
        awaiting_approval=awaiting_approval(policy, checks),
    )
