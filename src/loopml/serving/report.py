"""The report of an A/B test or a champion/challenger deployment: outcomes from the
prediction log and its feedback, the right test, and what to do next.

    report = ws.deployments.report("pricing", mde=0.02)    # or `loopml deploy report`
    report.recommendation, report.summary
    print(report.render()); report.to_dict()               # plain text / --json

**A/B** (``loopml deploy ab``): every answered request of the current experiment (since the
A/B configuration was stored; ``since``/``until`` narrow it) is joined by ``request_id`` to
its feedback, the newest feedback for a request winning. A request counts once its outcome
is known: ``conversion`` is the feedback's reward, else its label, and must be 0 or 1 (send
0 for "did not convert"); ``value`` is the reward, else a numeric label. The metric is the
one the deployment records (``deploy ab --metric``) unless ``metric`` overrides it. Each
variant is compared with the first (the control): a two-proportion z test (conversion) or
Welch's t test (value) with effect size and confidence interval, the per-variant sample size
a minimum detectable effect ``mde`` needs, and the mSPRT's always-valid p-value over the
outcomes in the order the requests came. A comparison is decided when the always-valid
p-value crosses ``alpha`` (valid however often the report is read), or when the planned
sample is reached (then the fixed test decides: a difference, or none of ``mde`` or more);
until then it says "keep collecting".

**Champion/challenger** (``loopml deploy champion-challenger``): the challenger scored every
request off the response path (logged with ``shadow=True`` under the same request id).
Requests both models answered and that have a label are compared pair by pair: McNemar's
test on per-request correctness (``accuracy``, for a classifier: labels that are strings,
booleans, or whole numbers predicted as whole numbers) or a paired t test on per-request
loss (``squared_error`` or ``absolute_error``, for a regressor), plus the paired mSPRT.
The report recommends ``promote`` when the challenger is significantly better under the
same rule as above, ``keep champion`` when it is significantly worse. Promotion is a
separate, deliberate step — :func:`promote_challenger` (``loopml deploy
promote-challenger``) recomputes the report, refuses unless it recommends promotion, and
then the challenger goes through the registry's gated promotion and serves alone
(:func:`loopml.serving.controller.serve_and_promote`, the same safe order a canary uses).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from loopml.exceptions import Conflict, InvalidInput
from loopml.serving import stats
from loopml.serving.strategies import AB_METRICS

if TYPE_CHECKING:
    import pandas as pd

    from loopml.registry.gates import GatePolicy
    from loopml.serving.deployments import Deployment
    from loopml.workspace import WorkspaceLike

#: What a champion/challenger report compares per request.
PAIRED_METRICS = ("accuracy", "squared_error", "absolute_error")
METRICS = (*AB_METRICS, *PAIRED_METRICS)
#: Fewer outcomes than this per variant (or pairs) and there is nothing to test.
MIN_OUTCOMES = 2
REPORTED_STRATEGIES = ("ab", "champion-challenger")


class NotRecommended(Conflict):
    """The report does not recommend promoting the challenger (yet)."""


@dataclass(frozen=True)
class VariantOutcome:
    """One variant's share of the experiment: requests it answered (or scored), those
    with a usable outcome, and the outcome's mean (a rate for conversion, a mean loss or
    accuracy for champion/challenger) and standard deviation."""

    name: str
    model: str
    requests: int
    outcomes: int
    mean: float | None = None
    sd: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self.model.removeprefix("models:/"),
            "requests": self.requests,
            "outcomes": self.outcomes,
            "mean": self.mean,
            "sd": self.sd,
        }


@dataclass(frozen=True)
class Comparison:
    """``treatment`` against ``control``: the fixed-horizon test, the always-valid
    sequential test, the per-variant (or pairs) sample the ``mde`` needs, the smallest
    difference the current sample detects with the report's power, and the verdict:
    ``better``, ``worse``, ``no difference``, ``keep collecting`` or ``not enough data``
    (for a loss, ``better`` means lower)."""

    control: str
    treatment: str
    verdict: str
    test: stats.TestResult | None = None
    sequential: stats.SequentialResult | None = None
    sample_size: int | None = None
    detectable_effect: float | None = None
    decided_by: str | None = None  # "sequential" or "planned sample"

    def to_dict(self) -> dict[str, Any]:
        return {
            "control": self.control,
            "treatment": self.treatment,
            "verdict": self.verdict,
            "decided_by": self.decided_by,
            "test": self.test.to_dict() if self.test else None,
            "sequential": self.sequential.to_dict() if self.sequential else None,
            "sample_size": self.sample_size,
            "detectable_effect": self.detectable_effect,
        }


@dataclass(frozen=True)
class Report:
    """What :func:`report` found. ``recommendation`` is one of ``not enough data``,
    ``keep collecting``, ``decided`` (A/B: every comparison has a verdict), ``promote`` or
    ``keep champion`` (champion/challenger); ``summary`` says it in a sentence."""

    deployment: str
    revision: int
    strategy: str
    metric: str
    started: datetime | None
    since: datetime | None
    until: datetime | None
    alpha: float
    power: float
    mde: float | None
    variants: tuple[VariantOutcome, ...]
    comparisons: tuple[Comparison, ...]
    recommendation: str
    summary: str
    notes: tuple[str, ...] = ()
    generated_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def paired(self) -> bool:
        return self.strategy == "champion-challenger"

    def to_dict(self) -> dict[str, Any]:
        def when(moment: datetime | None) -> str | None:
            return moment.isoformat() if moment else None

        return {
            "deployment": self.deployment,
            "revision": self.revision,
            "strategy": self.strategy,
            "metric": self.metric,
            "started": when(self.started),
            "since": when(self.since),
            "until": when(self.until),
            "generated_at": when(self.generated_at),
            "alpha": self.alpha,
            "power": self.power,
            "mde": self.mde,
            "variants": [v.to_dict() for v in self.variants],
            "comparisons": [c.to_dict() for c in self.comparisons],
            "recommendation": self.recommendation,
            "summary": self.summary,
            "notes": list(self.notes),
        }

    def render(self, time: Any = None) -> str:
        """The report as plain text; ``time`` formats a datetime (default: ISO, UTC)."""
        show = time or (lambda m: m.isoformat(timespec="seconds") if m else "-")
        kind = "A/B test" if self.strategy == "ab" else "champion/challenger"
        window = f"{show(self.since)} .. {show(self.until) if self.until else 'now'}"
        lines = [
            f"{self.deployment}: {kind} (revision {self.revision}), metric {self.metric}",
            f"  requests from {window}; alpha {self.alpha:g}, power {self.power:g}"
            + (f", minimum detectable effect {self.mde:g}" if self.mde is not None else ""),
            "",
        ]
        width = max([len(v.name) for v in self.variants] + [7])
        head = "mean loss" if self.metric in ("squared_error", "absolute_error") else "mean"
        if self.metric == "conversion":
            head = "rate"
        elif self.metric == "accuracy":
            head = "accuracy"
        lines.append(
            f"  {'variant':<{width}}  {'model':<20} {'requests':>9} {'outcomes':>9} {head:>10}"
        )
        for v in self.variants:
            mean = "-" if v.mean is None else f"{v.mean:.4g}"
            model = v.model.removeprefix("models:/")
            lines.append(
                f"  {v.name:<{width}}  {model:<20} {v.requests:>9} {v.outcomes:>9} {mean:>10}"
            )
        unit = "pairs" if self.paired else "per variant"
        for c in self.comparisons:
            lines += comparison_lines(c, unit=unit, mde=self.mde, power=self.power)
        lines += ["", f"  {self.recommendation}: {self.summary}"]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def comparison_lines(c: Comparison, *, unit: str, mde: float | None, power: float) -> list[str]:
    """The text of one comparison in a report: verdict, the fixed test with its interval and
    effect size, the sequential test, the planned sample (``unit``: "per variant", "pairs",
    "per version") and the effect detectable now. Shared by the serving and prompt A/B
    reports."""
    lines: list[str] = []
    lines += ["", f"  {c.treatment} vs {c.control}: {c.verdict}"]
    if c.test is not None:
        t = c.test
        relative = f" ({t.relative_difference:+.1%})" if t.relative_difference is not None else ""
        lines.append(
            f"    difference {t.difference:+.4g}{relative}, "
            f"{1 - t.alpha:.0%} CI [{t.ci_low:+.4g}, {t.ci_high:+.4g}]"
            + (f", {t.effect_size_kind} {t.effect_size:+.3g}" if t.effect_size is not None else "")
        )
        lines.append(
            f"    {t.test}: statistic {t.statistic:.4g}, p {_p(t.p_value)} "
            "(valid at the planned sample only)"
        )
    if c.sequential is not None:
        s = c.sequential
        lines.append(
            f"    {s.test}: always-valid p {_p(s.p_value)}"
            + (" (crossed alpha)" if s.crossed else "")
            + f" over {s.looks} looks, tau {s.tau:.3g}"
        )
    if c.sample_size is not None:
        lines.append(f"    planned sample: {c.sample_size} {unit} to detect {mde:g}")
    if c.detectable_effect is not None:
        lines.append(f"    detectable now with power {power:g}: {c.detectable_effect:.4g}")
    return lines


def _p(value: float) -> str:
    """``= 0.0123`` or ``< 0.0001``: what follows a p."""
    return "< 0.0001" if value < 1e-4 else f"= {value:.4f}"


# -- reading the logs -------------------------------------------------------------------


def _experiment_start(history: Sequence[Deployment]) -> Deployment:
    """The revision the newest revision's experiment began with: the oldest of the trailing
    run with the same strategy and the same variants (names and models)."""
    newest = history[-1]

    def same(d: Deployment) -> bool:
        return d.strategy == newest.strategy and [(v.name, v.model) for v in d.variants] == [
            (v.name, v.model) for v in newest.variants
        ]

    start = newest
    for revision in reversed(history):
        if not same(revision):
            break
        start = revision
    return start


def _feedback(rows: pd.DataFrame) -> dict[str, tuple[Any, float | None]]:
    """``request_id -> (label, reward)`` of the newest feedback of each request (the log is
    read oldest first, so later rows overwrite earlier ones)."""
    found: dict[str, tuple[Any, float | None]] = {}
    for request_id, label, reward in zip(
        rows["request_id"], rows["label"], rows["reward"], strict=True
    ):
        parsed = json.loads(label) if isinstance(label, str) else None
        number = None if reward is None or _nan(reward) else float(reward)
        found[str(request_id)] = (parsed, number)
    return found


def _nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _unwrap(value: Any) -> Any:
    while isinstance(value, list) and len(value) == 1:
        value = value[0]
    return value


def _outcome(metric: str, label: Any, reward: float | None) -> float | None:
    """The A/B outcome of one request's feedback; None when it is unusable."""
    value = reward if reward is not None else _unwrap(label)
    if isinstance(value, bool):
        value = int(value)
    if not isinstance(value, int | float) or not math.isfinite(value):
        return None
    if metric == "conversion" and value not in (0, 1):
        return None
    return float(value)


def _first_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per request id (the first logged: a retried request id counts once)."""
    return rows.drop_duplicates("request_id", keep="first")


# -- the reports ------------------------------------------------------------------------


def report(
    name: str,
    *,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    metric: str | None = None,
    mde: float | None = None,
    alpha: float = 0.05,
    power: float = 0.8,
    workspace: WorkspaceLike = None,
) -> Report:
    """The report of A/B or champion/challenger deployment ``name`` (see the module doc)
    over the requests of its current experiment with ``since <= time < until``. Too few
    outcomes give a report that says so, not an error; a deployment of another strategy,
    an unknown ``metric`` or a bad ``mde``/``alpha``/``power`` is :class:`InvalidInput`."""
    from loopml.serving.log import _utc, read_feedback, read_predictions
    from loopml.workspace import resolve_workspace

    ws = resolve_workspace(workspace)
    alpha = stats.check_alpha(alpha)
    power = stats.check_alpha(power, "power")
    mde = None if mde is None else stats.check_mde(mde)
    begin, end = _utc(since, "since"), _utc(until, "until")
    history = ws.deployments.history(name)  # DeploymentNotFound with a hint
    current = history[-1]
    if current.strategy not in REPORTED_STRATEGIES:
        raise InvalidInput(
            f"Deployment {name!r} runs {current.strategy}: a report compares the variants of "
            f"an A/B test or a champion and its challenger. Start one with `loopml deploy ab "
            f"{name} --variant a=MODEL:50 --variant b=MODEL:50` or `loopml deploy "
            f"champion-challenger {name} --challenger MODEL`."
        )
    if metric is not None and metric not in METRICS:
        raise InvalidInput(f"Report metric {metric!r}: one of {', '.join(METRICS)}.")
    allowed = AB_METRICS if current.strategy == "ab" else PAIRED_METRICS
    if metric is not None and metric not in allowed:
        kind = "an A/B test" if current.strategy == "ab" else "a champion/challenger"
        raise InvalidInput(
            f"Metric {metric!r} does not apply to {kind}; one of {', '.join(allowed)}."
        )
    first = _experiment_start(history)
    started = first.created_at
    window = max(begin, started) if begin and started else (begin or started)
    rows = read_predictions(ws, name, start=window, end=end)
    # Only the experiment's revisions: a replica answers with the previous configuration
    # for up to its poll interval after a change, and those requests are not part of it.
    rows = rows[rows["revision"] >= first.revision]
    feedback = _feedback(read_feedback(ws, name, start=window))
    common = {
        "deployment": name,
        "revision": current.revision,
        "started": started,
        "since": window,
        "until": end,
        "alpha": alpha,
        "power": power,
        "mde": mde,
    }
    if current.strategy == "ab":
        return _ab(current, rows, feedback, metric, common)
    return _champion_challenger(current, rows, feedback, metric, common)


def _ab(
    current: Deployment,
    rows: pd.DataFrame,
    feedback: Mapping[str, tuple[Any, float | None]],
    metric: str | None,
    common: dict[str, Any],
) -> Report:
    import numpy as np

    metric = metric or str(current.settings.get("metric", "conversion"))
    binary = metric == "conversion"
    answered = _first_rows(rows[~rows["shadow"].fillna(False).astype(bool)])
    names = [v.name for v in current.variants]
    outcomes: dict[str, list[float]] = {n: [] for n in names}
    timeline: list[tuple[str, float]] = []
    counts = dict.fromkeys(names, 0)
    unusable = 0
    for request_id, variant in zip(answered["request_id"], answered["variant"], strict=True):
        if variant not in counts:
            continue
        counts[variant] += 1
        if request_id not in feedback:
            continue
        value = _outcome(metric, *feedback[request_id])
        if value is None:
            unusable += 1
            continue
        outcomes[variant].append(value)
        timeline.append((variant, value))
    variants = tuple(
        VariantOutcome(
            v.name,
            v.model,
            counts[v.name],
            len(outcomes[v.name]),
            float(np.mean(outcomes[v.name])) if outcomes[v.name] else None,
            float(np.std(outcomes[v.name], ddof=1)) if len(outcomes[v.name]) > 1 else None,
        )
        for v in current.variants
    )
    alpha, power, mde = common["alpha"], common["power"], common["mde"]
    control = names[0]
    comparisons = [
        compare_arms(
            control,
            treatment,
            outcomes[control],
            outcomes[treatment],
            timeline,
            binary=binary,
            alpha=alpha,
            power=power,
            mde=mde,
        )
        for treatment in names[1:]
    ]
    notes = []
    if unusable:
        want = "0 or 1" if binary else "a number"
        notes.append(
            f"{unusable} feedback outcome(s) were not {want} and were left out "
            f"(the {metric} metric takes the reward, else the label)."
        )
    if len(names) > 2:
        notes.append(
            f"{len(names) - 1} variants are each compared with {control}: with several "
            "comparisons, one may cross alpha by chance; a stricter alpha "
            f"(e.g. {common['alpha'] / (len(names) - 1):.3g}) keeps the overall rate."
        )
    recommendation, summary = _ab_summary(comparisons, variants, metric)
    return Report(
        strategy="ab",
        metric=metric,
        variants=variants,
        comparisons=tuple(comparisons),
        recommendation=recommendation,
        summary=summary,
        notes=tuple(notes),
        **common,
    )


def compare_arms(
    control: Any,
    treatment: Any,
    a: Sequence[float],
    b: Sequence[float],
    timeline: Sequence[tuple[Any, float]] | None,
    *,
    binary: bool,
    alpha: float,
    power: float,
    mde: float | None,
) -> Comparison:
    """``treatment``'s outcomes ``b`` against ``control``'s ``a``: the fixed-horizon test
    (two-proportion z for 0/1 outcomes, else Welch's t), the planned sample for ``mde``, the
    detectable effect, and the mSPRT over ``timeline`` (every outcome as ``(arm, value)`` in
    the order it arrived). Without a timeline (outcomes with no request order, such as eval
    runs) there is no sequential test and a significant fixed test decides. Used by the
    serving A/B report and the prompt A/B report alike."""
    import numpy as np

    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if min(xa.size, xb.size) < MIN_OUTCOMES:
        return Comparison(str(control), str(treatment), "not enough data")
    base = float(xa.mean())
    if binary:
        test = stats.two_proportion_ztest(
            int(xa.sum()), xa.size, int(xb.sum()), xb.size, alpha=alpha
        )
        rate = float(np.concatenate([xa, xb]).mean())
        scale = math.sqrt(rate * (1 - rate))
        planned = (
            stats.sample_size_proportions(base, mde, alpha=alpha, power=power)
            if mde is not None and 0 < base < 1 and 0 < base + mde < 1
            else None
        )
        var_a, var_b = base * (1 - base), float(xb.mean()) * (1 - float(xb.mean()))
    else:
        test = stats.welch_ttest(xa, xb, alpha=alpha)
        var_a, var_b = float(xa.var(ddof=1)), float(xb.var(ddof=1))
        scale = math.sqrt((var_a + var_b) / 2)
        planned = (
            stats.sample_size_means(scale, mde, alpha=alpha, power=power)
            if mde is not None and scale > 0
            else None
        )
    tau = mde if mde is not None else stats.MSPRT_DEFAULT_EFFECT * scale
    sequential = None
    if timeline is not None and tau > 0:
        pairs = [(int(arm == treatment), y) for arm, y in timeline if arm in (control, treatment)]
        if pairs:
            sequential = stats.sequential_test(
                [p[0] for p in pairs], [p[1] for p in pairs], binary=binary, tau=tau, alpha=alpha
            )
    detectable = stats.detectable_effect(var_a, xa.size, var_b, xb.size, alpha=alpha, power=power)
    verdict, by = _verdict(test, sequential, planned, min(xa.size, xb.size), lower_better=False)
    if timeline is None and by is None and test.significant:
        verdict, by = ("better" if test.difference > 0 else "worse"), "fixed test"
    return Comparison(
        str(control), str(treatment), verdict, test, sequential, planned, detectable, by
    )


def _verdict(
    test: stats.TestResult,
    sequential: stats.SequentialResult | None,
    planned: int | None,
    n: int,
    *,
    lower_better: bool,
) -> tuple[str, str | None]:
    def direction() -> str:
        improved = test.difference < 0 if lower_better else test.difference > 0
        return "better" if improved else "worse"

    if sequential is not None and sequential.crossed and test.difference != 0:
        return direction(), "sequential"
    if planned is not None and n >= planned:
        return (direction() if test.significant else "no difference"), "planned sample"
    return "keep collecting", None


def _ab_summary(
    comparisons: Sequence[Comparison], variants: Sequence[VariantOutcome], metric: str
) -> tuple[str, str]:
    if not comparisons or any(c.verdict == "not enough data" for c in comparisons):
        counts = ", ".join(f"{v.name} {v.outcomes}" for v in variants)
        return (
            "not enough data",
            f"too few outcomes to test yet ({counts}; at least {MIN_OUTCOMES} per variant): "
            "send feedback with the request ids (POST /feedback or `loopml labels ingest`).",
        )
    parts = [f"{c.treatment} {c.verdict} than {c.control}" for c in comparisons]
    parts = [
        p.replace(" no difference than ", " no different from ").replace(
            " keep collecting than ", " vs "
        )
        for p in parts
    ]
    if any(c.verdict == "keep collecting" for c in comparisons):
        return "keep collecting", "; ".join(parts) + ": not decided yet, keep collecting."
    return "decided", "; ".join(parts) + f" on {metric}."


def _score(metric: str, predicted: Any, truth: Any) -> float:
    if metric == "accuracy":
        return float(predicted == truth)
    error = float(predicted) - float(truth)
    return error * error if metric == "squared_error" else abs(error)


def _pairs(outputs: Any, label: Any) -> list[tuple[Any, Any]]:
    """(prediction, label) per input row of one request, as the canary controller pairs
    them: a list label goes row by row, a single label with the first prediction."""
    if isinstance(label, list) and isinstance(outputs, list) and len(label) == len(outputs):
        return [(_unwrap(p), _unwrap(t)) for p, t in zip(outputs, label, strict=True)]
    first = outputs[0] if isinstance(outputs, list) and outputs else outputs
    return [(_unwrap(first), _unwrap(label))]


def _whole(value: Any) -> bool:
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


def _numeric(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _paired_metric(triples: Iterable[tuple[Any, Any, Any]]) -> str:
    """``accuracy`` for a classifier's labels (strings, booleans, or whole numbers predicted
    as whole numbers), ``squared_error`` otherwise."""
    for champion, challenger, truth in triples:
        if isinstance(truth, str | bool) or not _numeric(truth):
            return "accuracy"
        if not (_whole(truth) and _whole(champion) and _whole(challenger)):
            return "squared_error"
    return "accuracy"


def _champion_challenger(
    current: Deployment,
    rows: pd.DataFrame,
    feedback: Mapping[str, tuple[Any, float | None]],
    metric: str | None,
    common: dict[str, Any],
) -> Report:
    import numpy as np

    champion = current.primary
    challenger = next(v for v in current.variants if v.role == "shadow")
    shadow = rows["shadow"].fillna(False).astype(bool)
    served = _first_rows(rows[(rows["variant"] == champion.name) & ~shadow])
    scored = _first_rows(rows[(rows["variant"] == challenger.name) & shadow])

    def answered(frame: pd.DataFrame) -> pd.DataFrame:
        return frame[frame["error"].isna() & frame["outputs"].notna()]

    champion_ok = answered(served)
    challenger_ok = answered(scored)
    challenger_outputs = dict(
        zip(challenger_ok["request_id"], challenger_ok["outputs"], strict=True)
    )
    triples: list[tuple[Any, Any, Any]] = []
    labelled = 0
    for request_id, outputs in zip(champion_ok["request_id"], champion_ok["outputs"], strict=True):
        if request_id not in feedback or request_id not in challenger_outputs:
            continue
        label = feedback[request_id][0]
        if label is None:
            continue
        labelled += 1
        mine = _pairs(json.loads(outputs), label)
        theirs = _pairs(json.loads(challenger_outputs[request_id]), label)
        if len(mine) != len(theirs):
            continue
        triples += [(m[0], t[0], m[1]) for m, t in zip(mine, theirs, strict=True)]
    chosen = metric or _paired_metric(triples)
    notes = []
    if chosen != "accuracy":
        numeric = [t for t in triples if all(_numeric(x) for x in t)]
        if len(numeric) < len(triples):
            if metric is not None and not numeric and triples:
                raise InvalidInput(
                    f"Metric {metric!r} needs numeric predictions and labels; these are not "
                    "(use --metric accuracy for a classifier)."
                )
            notes.append(
                f"{len(triples) - len(numeric)} pair(s) with a non-numeric prediction or label "
                "were left out."
            )
        triples = numeric
    a = np.asarray([_score(chosen, c, t) for c, _, t in triples], dtype=float)
    b = np.asarray([_score(chosen, x, t) for _, x, t in triples], dtype=float)
    lower_better = chosen != "accuracy"
    variants = (
        VariantOutcome(
            champion.name,
            champion.model,
            len(served),
            a.size,
            float(a.mean()) if a.size else None,
            float(a.std(ddof=1)) if a.size > 1 else None,
        ),
        VariantOutcome(
            challenger.name,
            challenger.model,
            len(scored),
            b.size,
            float(b.mean()) if b.size else None,
            float(b.std(ddof=1)) if b.size > 1 else None,
        ),
    )
    alpha, power, mde = common["alpha"], common["power"], common["mde"]
    if a.size < MIN_OUTCOMES:
        comparison = Comparison(champion.name, challenger.name, "not enough data")
    else:
        if chosen == "accuracy":
            test = stats.mcnemar(a.astype(bool), b.astype(bool), alpha=alpha)
        else:
            test = stats.paired_ttest(a, b, alpha=alpha)
        d = b - a
        sd = float(d.std(ddof=1))
        tau = (
            mde
            if mde is not None
            else stats.MSPRT_DEFAULT_EFFECT * float(np.concatenate([a, b]).std(ddof=1))
        )
        sequential = stats.sequential_paired(d, tau=tau, alpha=alpha) if tau > 0 else None
        planned = (
            stats.sample_size_paired(sd, mde, alpha=alpha, power=power)
            if mde is not None and sd > 0
            else None
        )
        detectable = stats.detectable_effect(sd**2, d.size, 0.0, d.size, alpha=alpha, power=power)
        verdict, by = _verdict(test, sequential, planned, d.size, lower_better=lower_better)
        comparison = Comparison(
            champion.name, challenger.name, verdict, test, sequential, planned, detectable, by
        )
    if labelled == 0:
        notes.append(
            "No labelled request was scored by both models yet: send labels with the request "
            "ids (POST /feedback or `loopml labels ingest`)."
        )
    recommendation, summary = _cc_summary(comparison, chosen, challenger.model)
    return Report(
        strategy="champion-challenger",
        metric=chosen,
        variants=variants,
        comparisons=(comparison,),
        recommendation=recommendation,
        summary=summary,
        notes=tuple(notes),
        **common,
    )


def _cc_summary(comparison: Comparison, metric: str, model: str) -> tuple[str, str]:
    challenger = model.removeprefix("models:/")
    what = "accuracy" if metric == "accuracy" else f"mean {metric}"
    if comparison.verdict == "not enough data":
        return (
            "not enough data",
            f"fewer than {MIN_OUTCOMES} labelled requests scored by both models.",
        )
    if comparison.verdict == "better":
        return (
            "promote",
            f"the challenger {challenger} has a better {what} on the same requests; promote it "
            "through the registry gate with `loopml deploy promote-challenger`.",
        )
    if comparison.verdict == "worse":
        return "keep champion", f"the challenger {challenger} has a worse {what}."
    if comparison.verdict == "no difference":
        return (
            "keep champion",
            f"no difference in {what} at the planned sample: the challenger is no better.",
        )
    return (
        "keep collecting",
        f"not decided on {what} yet (the always-valid p-value has not crossed alpha"
        + (" and the planned sample is not reached" if comparison.sample_size else "")
        + "): keep collecting labels.",
    )


def promote_challenger(
    name: str,
    *,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    metric: str | None = None,
    mde: float | None = None,
    alpha: float = 0.05,
    power: float = 0.8,
    policy: GatePolicy | None = None,
    reason: str | None = None,
    workspace: WorkspaceLike = None,
) -> tuple[Report, Deployment]:
    """Promote the challenger of champion/challenger deployment ``name`` when its report
    (same arguments as :func:`report`) recommends it: the challenger serves alone (a
    champion that followed an alias keeps following it) and goes through the registry's
    gated promotion; a blocked gate puts the champion/challenger configuration back and
    raises :class:`~loopml.exceptions.PromotionBlocked`. A report that doesn't recommend
    promotion raises :class:`NotRecommended` and changes nothing."""
    from loopml.exceptions import PromotionBlocked
    from loopml.serving.controller import serve_and_promote
    from loopml.workspace import resolve_workspace

    ws = resolve_workspace(workspace)
    current = ws.deployments.get(name)
    if current.strategy != "champion-challenger":
        raise InvalidInput(
            f"Deployment {name!r} runs {current.strategy}, not champion-challenger: no "
            f"challenger to promote. Start with `loopml deploy champion-challenger {name} "
            "--challenger MODEL`."
        )
    found = report(
        name,
        since=since,
        until=until,
        metric=metric,
        mde=mde,
        alpha=alpha,
        power=power,
        workspace=ws,
    )
    if found.revision != current.revision:
        raise Conflict(f"Deployment {name!r} changed while its report was computed; try again.")
    if found.recommendation != "promote":
        raise NotRecommended(
            f"The report of {name!r} says {found.recommendation!r}, not 'promote': "
            f"{found.summary} See `loopml deploy report {name}`."
        )
    challenger = next(v for v in current.variants if v.role == "shadow")
    [comparison] = found.comparisons
    assert comparison.test is not None
    why = (
        f"challenger promoted: {found.metric} {comparison.test.difference:+.4g}, "
        f"p {_p(comparison.test.p_value)}"
        + (f", always-valid p {_p(comparison.sequential.p_value)}" if comparison.sequential else "")
        + (f" ({reason})" if reason else "")
    )
    outcome = serve_and_promote(
        ws,
        current,
        challenger.model,
        restore=current,
        policy=policy,
        reason=why,
        undo="challenger not promoted",
        promotion_reason=f"challenger of {name!r}: {why}",
    )
    if not outcome.promoted:
        raise PromotionBlocked(
            f"{outcome.reason.rstrip('.')}. The champion/challenger configuration of {name!r} "
            "is back."
        )
    return found, outcome.deployment
