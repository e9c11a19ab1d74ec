"""How far a judge agrees with humans: on the cases of a suite that carry a human label
(``human: pass`` / ``human: fail``), the judge's verdicts against those labels — accuracy
and Cohen's kappa (agreement beyond chance), so a judge whose agreement is low is visible.

    >>> a = agreement([(True, True), (True, False), (False, False), (False, False)])
    >>> a.n, a.accuracy, round(a.kappa, 3)
    (4, 0.75, 0.5)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from loopml.llm.evals.runner import SuiteResult

#: The model-graded assertions whose verdicts are calibrated against human labels.
JUDGED = ("judge", "groundedness", "context_relevance", "answer_relevance")

#: Below this kappa a judge is flagged: Landis & Koch's "fair" agreement or worse.
LOW_KAPPA = 0.4


@dataclass(frozen=True)
class Agreement:
    """A judge against human labels: ``n`` labelled verdicts (judge errors apart),
    ``accuracy``, ``kappa`` (None when undefined: every label and verdict the same) and the
    confusion counts."""

    n: int
    accuracy: float | None
    kappa: float | None
    both_pass: int
    both_fail: int
    judge_pass_human_fail: int
    judge_fail_human_pass: int
    judge_errors: int = 0

    @property
    def low(self) -> bool:
        return self.kappa is not None and self.kappa < LOW_KAPPA

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "accuracy": self.accuracy,
            "kappa": self.kappa,
            "low": self.low,
            "both_pass": self.both_pass,
            "both_fail": self.both_fail,
            "judge_pass_human_fail": self.judge_pass_human_fail,
            "judge_fail_human_pass": self.judge_fail_human_pass,
            "judge_errors": self.judge_errors,
        }


def agreement(pairs: Sequence[tuple[bool, bool]], judge_errors: int = 0) -> Agreement:
    """Agreement of ``(judge, human)`` verdict pairs (pure)."""
    n = len(pairs)
    tp = sum(1 for j, h in pairs if j and h)
    tn = sum(1 for j, h in pairs if not j and not h)
    fp = sum(1 for j, h in pairs if j and not h)
    fn = sum(1 for j, h in pairs if not j and h)
    if n == 0:
        return Agreement(0, None, None, 0, 0, 0, 0, judge_errors)
    observed = (tp + tn) / n
    judge_yes, human_yes = (tp + fp) / n, (tp + fn) / n
    chance = judge_yes * human_yes + (1 - judge_yes) * (1 - human_yes)
    kappa = None if chance >= 1.0 else (observed - chance) / (1 - chance)
    return Agreement(n, observed, kappa, tp, tn, fp, fn, judge_errors)


def calibrate(result: SuiteResult) -> dict[str, Agreement]:
    """Each model-graded assertion of ``result`` (:data:`JUDGED`, by name) against the
    human labels of its cases."""
    labels = {case.id: case.human for case in result.suite.cases}
    pairs: dict[str, list[tuple[bool, bool]]] = {}
    errors: dict[str, int] = {}
    for case in result.cases:
        human = labels.get(case.case_id)
        if human is None:
            continue
        for score in case.scores:
            if score.type not in JUDGED:
                continue
            pairs.setdefault(score.name, [])
            if score.passed is None:
                errors[score.name] = errors.get(score.name, 0) + 1
            else:
                pairs[score.name].append((score.passed, human))
    return {name: agreement(found, errors.get(name, 0)) for name, found in pairs.items()}
