"""Deployment strategies: pure constructors from a deployment's current revision to the
next (:func:`shadow`, :func:`canary`, :func:`blue_green`, :func:`switch`, :func:`ab`,
:func:`champion_challenger`, :func:`single`), and canary abort conditions (:class:`Abort`).
``ws.deployments.<strategy>(name, ...)`` applies one and stores it
(:class:`loopml.serving.namespace.Deployments`).
"""

from __future__ import annotations

import itertools
import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from loopml.exceptions import InvalidInput
from loopml.serving.deployments import (
    Deployment,
    Variant,
)

if TYPE_CHECKING:
    pass


# -- strategies: pure constructors from the current revision to the next -------------------

#: What an abort condition of a canary may watch (on the current step's logged traffic).
ABORT_METRICS = ("error_rate", "p99_ms", "p50_ms", "prediction_psi", "accuracy")
_ABORT_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    ">=": operator.ge,
    "<": operator.lt,
    ">": operator.gt,
}
# METRIC, then any run of operator symbols (checked after, to name a wrong one), then the rest.
_ABORT = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*([^\w\s.+-]+)?\s*(.*?)\s*$")
DEFAULT_STEPS = (5.0, 25.0, 50.0, 100.0)
AB_METRICS = ("conversion", "value")


@dataclass(frozen=True)
class Abort:
    """A canary abort condition, ``METRIC OP NUMBER``: the canary rolls back when it holds.

    >>> Abort.parse("error_rate > 0.02")
    Abort(metric='error_rate', op='>', threshold=0.02)
    >>> Abort.parse("p99_ms>=250").holds(300.0), str(Abort.parse("p99_ms>=250"))
    (True, 'p99_ms >= 250')
    """

    metric: str
    op: str
    threshold: float

    @classmethod
    def parse(cls, expression: str) -> Abort:
        match = _ABORT.match(expression or "")
        metric, op, number = match.groups() if match else ("", None, "")
        if not metric:
            raise InvalidInput(
                f"Abort condition {expression!r}: write METRIC OP NUMBER, e.g. 'error_rate > 0.02'."
            )
        if metric not in ABORT_METRICS:
            import difflib

            close = difflib.get_close_matches(metric, ABORT_METRICS, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise InvalidInput(
                f"Abort condition {expression!r}: unknown metric {metric!r}.{hint} One of "
                f"{', '.join(ABORT_METRICS)}."
            )
        if op not in _ABORT_OPS:
            shown = repr(op) if op else "none"
            raise InvalidInput(
                f"Abort condition {expression!r}: operator {shown} is not one of "
                f"{' '.join(_ABORT_OPS)}; write e.g. '{metric} > 0.5'."
            )
        try:
            threshold = float(number)
        except ValueError:
            threshold = math.nan
        if not math.isfinite(threshold):
            raise InvalidInput(
                f"Abort condition {expression!r}: {number or 'nothing'!r} after {op!r} is not "
                f"a finite number; write e.g. '{metric} {op} 0.5'."
            )
        return cls(metric, op, threshold)

    def holds(self, value: float) -> bool:
        """Whether ``value`` of :attr:`metric` meets the condition (the canary aborts)."""
        return _ABORT_OPS[self.op](value, self.threshold)

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.threshold:g}"


def _model_ref(model: str) -> str:
    return model if model.startswith("models:/") else f"models:/{model}"


def _new_model(current: Deployment, model: str, what: str) -> str:
    ref = _model_ref(model)
    if ref == current.primary.model:
        raise InvalidInput(
            f"Deployment {current.name!r} already serves {ref} from its primary; name another "
            f"version as the {what}."
        )
    return ref


def single(current: Deployment, model: str) -> Deployment:
    """``model`` answers every request alone (``churn@production`` follows the alias)."""
    return replace(current, variants=(Variant("primary", model),), strategy="single", settings={})


def shadow(current: Deployment, candidate: str) -> Deployment:
    """The primary answers; ``candidate`` scores every request off the response path."""
    ref = _new_model(current, candidate, "shadow candidate")
    return replace(
        current,
        variants=(
            Variant("primary", current.primary.model),
            Variant("shadow", ref, weight=0, role="shadow"),
        ),
        strategy="shadow",
        settings={},
    )


def check_steps(steps: Sequence[float]) -> tuple[float, ...]:
    """``steps`` as floats if they rise strictly within 1–100; :class:`InvalidInput` else.

    >>> check_steps([5, 25, 50, 100])
    (5.0, 25.0, 50.0, 100.0)
    """
    try:
        values = tuple(float(s) for s in steps)
    except (TypeError, ValueError):
        raise InvalidInput(
            f"Canary steps {list(steps)!r}: percentages of traffic, e.g. 5,25,50,100."
        ) from None
    if not values:
        raise InvalidInput("A canary needs at least one step, e.g. 5,25,50,100.")
    outside = [f"{v:g}" for v in values if not 1 <= v <= 100]
    if outside:
        raise InvalidInput(
            f"Canary steps {', '.join(f'{v:g}' for v in values)}: {', '.join(outside)} not "
            "within 1–100 (percent of traffic)."
        )
    for before, after in itertools.pairwise(values):
        if after <= before:
            raise InvalidInput(
                f"Canary steps {', '.join(f'{v:g}' for v in values)}: each step must be larger "
                f"than the one before ({after:g} follows {before:g})."
            )
    return values


def canary(
    current: Deployment,
    candidate: str,
    steps: Sequence[float] = DEFAULT_STEPS,
    *,
    step_duration: float = 600.0,
    min_requests: int = 200,
    aborts: Sequence[str] = (),
) -> Deployment:
    """``candidate`` answers ``steps[0]`` percent of the traffic, the primary the rest. A
    controller moves it along ``steps`` (each held ``step_duration`` seconds and at least
    ``min_requests`` requests) and rolls it back when one of ``aborts`` holds."""
    values = check_steps(steps)
    parsed = [str(Abort.parse(a)) for a in aborts]
    if not (isinstance(step_duration, int | float) and 0 < step_duration < math.inf):
        raise InvalidInput(f"Canary step duration {step_duration!r}: a positive number of seconds.")
    if isinstance(min_requests, bool) or not isinstance(min_requests, int) or min_requests < 0:
        raise InvalidInput(f"Canary min_requests {min_requests!r}: a whole number, 0 or more.")
    ref = _new_model(current, candidate, "canary candidate")
    settings = {
        "steps": list(values),
        "step": 0,
        "step_duration_s": float(step_duration),
        "min_requests": min_requests,
        "aborts": parsed,
    }
    return canary_step(
        replace(
            current,
            variants=(
                Variant("primary", current.primary.model),
                Variant("canary", ref, weight=0, role="candidate"),
            ),
            strategy="canary",
            settings=settings,
        ),
        0,
    )


def canary_step(current: Deployment, step: int) -> Deployment:
    """The canary at step ``step`` (an index into its steps): the candidate answers that
    share of the traffic. What a controller stores to advance it."""
    if current.strategy != "canary":
        raise InvalidInput(
            f"Deployment {current.name!r} runs {current.strategy}, not a canary; start one "
            f"with `loopml deploy canary {current.name} --candidate REF`."
        )
    steps = list(current.settings["steps"])
    if not 0 <= step < len(steps):
        raise InvalidInput(f"Canary of {current.name!r} has steps 0–{len(steps) - 1}, not {step}.")
    share = float(steps[step])
    variants = tuple(
        replace(v, weight=share if v.role == "candidate" else 100.0 - share)
        if v.role in ("primary", "candidate")
        else v
        for v in current.variants
    )
    return replace(current, variants=variants, settings={**current.settings, "step": step})


def blue_green(current: Deployment, candidate: str) -> Deployment:
    """The live model stays ``blue`` and answers everything; ``candidate`` is loaded warm as
    ``green`` with no traffic until :func:`switch`."""
    ref = _new_model(current, candidate, "green side")
    return replace(
        current,
        variants=(
            Variant("blue", current.primary.model),
            Variant("green", ref, weight=0, role="standby"),
        ),
        strategy="blue-green",
        settings={},
    )


def switch(current: Deployment) -> Deployment:
    """Blue-green: the standby side answers 100% at once, the live one becomes standby (a
    second switch moves it back)."""
    if current.strategy != "blue-green":
        raise InvalidInput(
            f"Deployment {current.name!r} runs {current.strategy}, not blue-green: nothing to "
            f"switch. Start with `loopml deploy blue-green {current.name} --candidate REF`."
        )
    swapped = {"primary": ("standby", 0.0), "standby": ("primary", 100.0)}
    variants = tuple(
        replace(v, role=swapped[v.role][0], weight=swapped[v.role][1]) if v.role in swapped else v
        for v in current.variants
    )
    return replace(current, variants=variants)


def ab(
    current: Deployment,
    variants: Mapping[str, tuple[str, float]],
    *,
    key: str | None = None,
    metric: str = "conversion",
) -> Deployment:
    """A sticky A/B split: ``{"a": ("churn/3", 50), "b": ("churn/4", 50)}`` (weights add up
    to 100), keyed by request field ``key`` (else the deployment's key, else the request
    id); ``metric`` is the outcome the report tests: ``conversion`` (binary) or ``value``."""
    if metric not in AB_METRICS:
        raise InvalidInput(f"A/B metric {metric!r}: one of {', '.join(AB_METRICS)}.")
    if len(variants) < 2:
        raise InvalidInput(
            f"An A/B test needs at least two variants, got {len(variants)}: e.g. "
            "a=churn/3:50 b=churn/4:50."
        )
    arms = tuple(
        Variant(name, model, weight=weight, role="variant")
        for name, (model, weight) in variants.items()
    )
    total = sum(v.weight for v in arms)
    if abs(total - 100.0) > 1e-6:
        raise InvalidInput(
            f"A/B weights {', '.join(f'{v.name}={v.weight:g}' for v in arms)} add up to "
            f"{total:g}, not 100."
        )
    models = [v.model for v in arms]
    if len(set(models)) != len(models):
        raise InvalidInput(f"A/B variants serve the same model twice: {models}.")
    return replace(
        current,
        variants=arms,
        strategy="ab",
        key=key if key is not None else current.key,
        settings={"metric": metric},
    )


def champion_challenger(current: Deployment, challenger: str) -> Deployment:
    """The primary becomes the ``champion`` and answers everything; ``challenger`` scores
    every request off the response path, to be compared on the same requests."""
    ref = _new_model(current, challenger, "challenger")
    return replace(
        current,
        variants=(
            Variant("champion", current.primary.model),
            Variant("challenger", ref, weight=0, role="shadow"),
        ),
        strategy="champion-challenger",
        settings={},
    )
