"""The canary controller: reads the logged traffic of a canary's current step, decides
whether to wait, advance, abort or complete, and applies that decision.

:func:`decide` is pure (a deployment, the step's :class:`StepStats` and the time in, a
:class:`Decision` out); :func:`step_stats` computes the stats from the prediction log;
:func:`watch_once` does both and stores the result with the revision guard, so a change made
meanwhile by someone else is a :class:`~loopml.exceptions.Conflict`, never overwritten::

    decision = watch_once(ws, "churn")
    decision.action, decision.reason     # ('advance', 'step 1 (5%) healthy over 212 ...')

The rules, in order:

1. **Abort** as soon as an abort condition holds on the canary's stats, once the canary has
   answered at least ``min(20, min_requests)`` requests of this step (at least one): a few
   requests decide nothing, but clear trouble need not wait for ``min_requests``. A metric
   that can't be computed yet (``accuracy`` without labels, ``prediction_psi`` on text
   predictions or too few numbers) doesn't hold.
2. **Wait** until the step has lasted ``step_duration_s`` and the canary answered
   ``min_requests`` requests in it.
3. **Advance** to the next step, or after the last one **complete**: the candidate serves
   alone — or, when the primary followed an alias such as ``churn@production``, the
   deployment keeps following it — and then goes through the registry's gated promotion
   (which moves that alias). The deployment is stored first, with the revision guard, so a
   concurrent change refuses the completion before anything is promoted; a blocked gate
   (or a failed promotion) then stores the primary back as an abort, with the gate's
   summary as the reason.

Aborting stores the primary alone at 100%. Each stored outcome writes its event:
``deployment.canary_advanced``, ``deployment.canary_aborted``,
``deployment.canary_completed``.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from loopml import events
from loopml.exceptions import InvalidInput, LoopmlError, PromotionBlocked
from loopml.serving.deployments import Deployment
from loopml.serving.strategies import Abort, canary_step, single

if TYPE_CHECKING:
    import pandas as pd

    from loopml.registry.gates import GatePolicy
    from loopml.workspace import Workspace

Action = Literal["wait", "advance", "abort", "complete"]
#: Aborts are judged once the canary answered this many requests of the step (or
#: ``min_requests``, when that is smaller).
ABORT_MIN_REQUESTS = 20
#: PSI needs at least this many numeric predictions on each side: on samples of sizes n and
#: m from one distribution, PSI over 10 bins is about 9 * (1/n + 1/m) by chance alone (0.45
#: for 20 canary requests), so fewer would abort healthy canaries on noise.
PSI_MIN_VALUES = 200
PSI_BINS = 10
_EPSILON = 1e-4


@dataclass(frozen=True)
class VariantStats:
    """The logged traffic of one variant in the current step."""

    requests: int = 0
    error_rate: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    accuracy: float | None = None  # share of labelled requests predicted right; None: no labels


@dataclass(frozen=True)
class StepStats:
    """The primary's and the canary's stats over the current step, and the PSI of the
    canary's predictions against the primary's (None when not numeric or too few)."""

    primary: VariantStats
    canary: VariantStats
    prediction_psi: float | None = None

    def metric(self, name: str) -> float | None:
        """The canary's value of abort metric ``name``."""
        if name == "prediction_psi":
            return self.prediction_psi
        value = getattr(self.canary, name)
        return None if value is None else float(value)


@dataclass(frozen=True)
class Decision:
    """What the controller does with a canary now, and why (naming metrics and values)."""

    action: Action
    reason: str
    step: int  # the step index the canary is at after the decision
    deployment: Deployment | None = None  # the stored revision (None for wait)

    def line(self) -> str:
        return f"{self.action}: {self.reason}"


def psi(expected: Sequence[float], actual: Sequence[float], bins: int = PSI_BINS) -> float:
    """Population stability index of ``actual`` against ``expected``: ``bins`` bins cut at
    ``expected``'s quantiles, an epsilon share for empty bins.

    >>> round(psi(list(range(100)), list(range(100))), 6)
    0.0
    >>> psi(list(range(100)), [x + 50 for x in range(100)]) > 0.25
    True
    """
    import numpy as np

    base = np.asarray(expected, dtype=float)
    other = np.asarray(actual, dtype=float)
    if base.size == 0 or other.size == 0:
        raise InvalidInput("PSI needs values on both sides.")
    edges = np.unique(np.quantile(base, np.linspace(0, 1, bins + 1)[1:-1]))
    # Bins (-inf, e1], (e1, e2], ..., (ek, inf): a value equal to an edge goes left.
    base_counts = np.bincount(np.searchsorted(edges, base, side="left"), minlength=edges.size + 1)
    other_counts = np.bincount(np.searchsorted(edges, other, side="left"), minlength=edges.size + 1)
    p = np.maximum(base_counts / base.size, _EPSILON)
    q = np.maximum(other_counts / other.size, _EPSILON)
    return float(np.sum((q - p) * np.log(q / p)))


def decide(deployment: Deployment, stats: StepStats, now: datetime) -> Decision:
    """What to do with canary ``deployment`` at ``now`` given its current step's ``stats``
    (see the module doc for the rules). Pure: nothing is read or stored."""
    if deployment.strategy != "canary":
        raise InvalidInput(
            f"Deployment {deployment.name!r} runs {deployment.strategy}, not a canary: nothing "
            f"to watch. Start one with `loopml deploy canary {deployment.name} --candidate REF`."
        )
    settings = deployment.settings
    steps = [float(s) for s in settings["steps"]]
    step = int(settings.get("step", 0))
    min_requests = int(settings.get("min_requests", 0))
    duration = float(settings.get("step_duration_s", 0.0))
    at = f"step {step + 1} of {len(steps)} ({steps[step]:g}%)"
    served = stats.canary.requests

    if served >= max(1, min(ABORT_MIN_REQUESTS, min_requests)):
        for expression in settings.get("aborts", []):
            condition = Abort.parse(expression)
            value = stats.metric(condition.metric)
            if value is not None and condition.holds(value):
                return Decision(
                    "abort",
                    f"{condition.metric} = {value:.4g} ({condition}) at {at} over {served} "
                    f"canary requests",
                    step,
                )

    started = deployment.created_at or now
    elapsed = (_utc(now) - _utc(started)).total_seconds()
    if elapsed < duration or served < min_requests:
        return Decision(
            "wait",
            f"{at}: {elapsed:.0f}s of {duration:g}s, {served} of {min_requests} canary requests",
            step,
        )
    healthy = f"{at} healthy over {served} canary requests ({_summary(stats)})"
    if step + 1 < len(steps):
        return Decision("advance", f"{healthy}; to {steps[step + 1]:g}%", step + 1)
    return Decision("complete", f"{healthy}; promoting the candidate", step)


def _summary(stats: StepStats) -> str:
    c = stats.canary
    parts = [f"error_rate {c.error_rate:.4g}" if c.error_rate is not None else None]
    parts += [f"p99_ms {c.p99_ms:.4g}" if c.p99_ms is not None else None]
    parts += [
        f"prediction_psi {stats.prediction_psi:.4g}" if stats.prediction_psi is not None else None
    ]
    parts += [f"accuracy {c.accuracy:.4g}" if c.accuracy is not None else None]
    return ", ".join(p for p in parts if p) or "no metrics"


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _role_names(deployment: Deployment) -> tuple[str, str]:
    primary = deployment.primary.name
    canaries = [v.name for v in deployment.variants if v.role == "candidate"]
    if not canaries:
        raise InvalidInput(f"Canary {deployment.name!r} has no candidate variant.")
    return primary, canaries[0]


def step_stats(workspace: Workspace, deployment: Deployment, since: datetime) -> StepStats:
    """The stats of ``deployment``'s primary and canary over the requests they answered in
    its revision (shadow rows aside) since ``since``, from the prediction log and its
    feedback."""
    from loopml.serving.log import read_feedback, read_predictions

    rows = read_predictions(workspace, deployment.name, start=since)
    # Only this revision's rows: a replica serves the previous step's weights for up to its
    # poll interval after a change, and those requests belong to that step.
    rows = rows[(rows["revision"] == deployment.revision) & ~rows["shadow"].fillna(False)]
    labels: dict[str, Any] = {}
    feedback = read_feedback(workspace, deployment.name, start=since)
    for request_id, label in zip(feedback["request_id"], feedback["label"], strict=True):
        if label is not None:
            labels[str(request_id)] = json.loads(label)  # the newest label wins
    primary_name, canary_name = _role_names(deployment)
    primary = rows[rows["variant"] == primary_name]
    canary = rows[rows["variant"] == canary_name]
    return StepStats(
        primary=_variant_stats(primary, labels),
        canary=_variant_stats(canary, labels),
        prediction_psi=_prediction_psi(primary, canary),
    )


def _variant_stats(rows: pd.DataFrame, labels: Mapping[str, Any]) -> VariantStats:
    import numpy as np

    count = len(rows)
    if count == 0:
        return VariantStats()
    errors = int(rows["error"].notna().sum())
    latency = rows["latency_ms"].dropna().to_numpy(dtype=float)
    p50 = float(np.quantile(latency, 0.5)) if latency.size else None
    p99 = float(np.quantile(latency, 0.99)) if latency.size else None
    right = total = 0
    for request_id, outputs in zip(rows["request_id"], rows["outputs"], strict=True):
        if request_id not in labels or outputs is None:
            continue
        predicted = json.loads(outputs)
        label = labels[request_id]
        pairs = (
            zip(predicted, label, strict=False)
            if isinstance(label, list) and isinstance(predicted, list)
            else [(predicted[0] if isinstance(predicted, list) and predicted else predicted, label)]
        )
        for guess, truth in pairs:
            total += 1
            right += int(guess == truth)
    return VariantStats(
        requests=count,
        error_rate=errors / count,
        p50_ms=p50,
        p99_ms=p99,
        accuracy=right / total if total else None,
    )


def _numbers(rows: pd.DataFrame) -> list[float] | None:
    """Every prediction of ``rows`` as a float; None when one isn't a number."""
    values: list[float] = []
    for outputs in rows["outputs"].dropna():
        predicted = json.loads(outputs)
        for value in predicted if isinstance(predicted, list) else [predicted]:
            if isinstance(value, list) and len(value) == 1:
                value = value[0]
            if isinstance(value, bool) or not isinstance(value, int | float):
                return None
            if not math.isfinite(value):
                continue
            values.append(float(value))
    return values


def _prediction_psi(primary: pd.DataFrame, canary: pd.DataFrame) -> float | None:
    expected, actual = _numbers(primary), _numbers(canary)
    if expected is None or actual is None:
        return None
    if len(expected) < PSI_MIN_VALUES or len(actual) < PSI_MIN_VALUES:
        return None
    return psi(expected, actual)


def watch_once(
    workspace: Workspace,
    name: str,
    now: datetime | None = None,
    *,
    policy: GatePolicy | None = None,
) -> Decision:
    """Decide on canary ``name`` now (or at ``now``) and store the outcome: the next step,
    the primary alone (abort), or the promoted candidate alone (complete; ``policy``
    overrides the registry's gate policy of the candidate's model)."""
    current = workspace.deployments.get(name)
    at = _utc(now or datetime.now(UTC))
    since = current.created_at or at
    decision = decide(current, step_stats(workspace, current, since), at)
    deployments = workspace.deployments
    if decision.action == "wait":
        return decision
    if decision.action == "advance":
        stored = deployments.update(
            canary_step(current, decision.step),
            reason=f"canary advanced: {decision.reason}",
            event="deployment.canary_advanced",
        )
        return replace(decision, deployment=stored)
    if decision.action == "complete":
        return _complete(workspace, current, decision, policy)
    stored = deployments.update(
        single(current, current.primary.model),
        reason=f"canary aborted: {decision.reason}",
        event="deployment.canary_aborted",
    )
    return replace(decision, deployment=stored)


def _complete(
    workspace: Workspace,
    current: Deployment,
    decision: Decision,
    policy: GatePolicy | None,
) -> Decision:
    """Complete canary ``current``: the candidate serves alone and is promoted through the
    gate (:func:`serve_and_promote`); a blocked gate aborts back to the primary."""
    _, canary_name = _role_names(current)
    outcome = serve_and_promote(
        workspace,
        current,
        current.variant(canary_name).model,
        restore=single(current, current.primary.model),
        policy=policy,
        reason=f"canary completed: {decision.reason}",
        undo="canary aborted",
        completed_event="deployment.canary_completed",
        aborted_event="deployment.canary_aborted",
        promotion_reason=f"canary of {current.name!r} completed",
    )
    if outcome.promoted:
        return replace(decision, deployment=outcome.deployment)
    return Decision("abort", outcome.reason, decision.step, outcome.deployment)


@dataclass(frozen=True)
class Promotion:
    """What :func:`serve_and_promote` did: whether the candidate was promoted, why not
    (the gate's summary or the error), and the revision it stored last."""

    promoted: bool
    reason: str
    deployment: Deployment


def serve_and_promote(
    workspace: Workspace,
    current: Deployment,
    candidate: str,
    *,
    restore: Deployment,
    reason: str,
    undo: str,
    policy: GatePolicy | None = None,
    completed_event: str | None = None,
    aborted_event: str = "deployment.changed",
    promotion_reason: str | None = None,
) -> Promotion:
    """Make ``candidate`` (a model reference) serve ``current``'s traffic alone, then
    promote it through the registry's gate; if the gate blocks, store ``restore``.

    The order matters. The deployment store is guarded by ``current``'s revision, so it is
    the one step that can lose a race with a concurrent change (a person stopping a canary,
    say); taking it first means a lost race (:class:`~loopml.exceptions.Conflict`) promotes
    nothing. Only then is the registry asked; a gate that blocks (or a promotion that
    fails) stores ``restore``, guarded by the revision just stored. The other order could
    leave the candidate promoted while the deployment update was refused. Between the two
    writes a pinned candidate answers alone, as it does at a final 100% canary step; a
    deployment whose primary follows an alias (``churn@production``) keeps following it,
    so it serves the old version until the promotion moves the alias.

    ``reason`` is the stored revision's reason, ``undo`` prefixes the restore's; a
    successful promotion writes ``completed_event`` (when given) about the stored revision,
    a restore is stored with ``aborted_event``.
    """
    deployments = workspace.deployments
    version = workspace.models.get(candidate)
    label = f"{version.name}/{version.version}"
    primary = current.primary.model
    follows_alias = "@" in primary.removeprefix("models:/")
    model = primary if follows_alias else f"models:/{version.name}/{version.version}"
    stored = deployments.update(
        single(current, model), reason=f"{reason}; {label} goes through the registry gate"
    )
    try:
        workspace.models.promote(
            version.name, version.version, policy=policy, reason=promotion_reason or reason
        )
    except Exception as exc:
        # promote() moves the pointer in its last transaction, so whatever it raised, nothing
        # was promoted: put the previous serving back.
        if isinstance(exc, PromotionBlocked):
            why = f"the registry gate blocked the promotion: {exc}"
        else:
            why = f"the promotion of {label} failed: {type(exc).__name__}: {exc}"
        restored = deployments.update(
            replace(restore, revision=stored.revision),
            reason=f"{undo}: {why}",
            event=aborted_event,
        )
        if not isinstance(exc, LoopmlError):
            raise
        return Promotion(False, why, restored)
    if completed_event is not None:
        workspace.db.transact(
            lambda conn: events.emit(
                conn,
                completed_event,
                current.name,
                {
                    "revision": stored.revision,
                    "strategy": stored.strategy,
                    "reason": f"{stored.reason}; {label} promoted",
                },
            )
        )
    return Promotion(True, f"{label} promoted", stored)


def watch_all(workspace: Workspace, now: datetime | None = None) -> dict[str, Decision]:
    """:func:`watch_once` on every deployment running a canary (what each ``loopml
    scheduler run`` tick does). A canary whose decision fails (a change made meanwhile, a
    model gone) is left for the next tick; the failure is logged, the others go on."""
    decisions: dict[str, Decision] = {}
    for deployment in workspace.deployments.list():
        if deployment.strategy != "canary":
            continue
        try:
            decisions[deployment.name] = watch_once(workspace, deployment.name, now)
        except LoopmlError as exc:
            logging.getLogger(__name__).warning(
                "loopml: canary %s: no decision this time: %s", deployment.name, exc
            )
    return decisions
