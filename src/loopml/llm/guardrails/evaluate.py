"""Precision and recall of a policy's rules on labelled cases.

Cases are JSON Lines, one case a line::

    {"text": "card 4111 1111 1111 1111", "stage": "input", "expect": {"pii": true, "injection": false}}

``stage`` is ``input`` (the text is one user message) or ``output`` (an answer). ``expect``
maps a rule's name, or a detector's name, to whether it should fire (find something); a
detector's name stands for every rule of that detector applying at the case's stage (so the
shipped cases, labelled ``pii``/``secrets``/``injection``, score any policy). A label that no
rule of the policy matches is counted as unscored. Optional keys: ``kind`` (a label of your
own, shown with misses) and ``context`` (what a groundedness rule gets).

Every rule runs on every case (a block does not stop the others), and a rule *fires* when it
finds something or fails closed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from loopml.exceptions import InvalidInput
from loopml.llm.guardrails.policy import Policy, Rule

_CASE_KEYS = ("text", "stage", "expect", "kind", "context")
SHIPPED = "cases.jsonl"


@dataclass(frozen=True)
class Case:
    """One labelled case (``line``: where it is in its file, from 1)."""

    text: str
    stage: str
    expect: Mapping[str, bool]
    kind: str | None = None
    context: Any = None
    line: int = 0


def read_cases(path: str | Path | None = None) -> list[Case]:
    """The cases in a JSONL file (the shipped set when ``path`` is None); a malformed line
    raises :class:`~loopml.exceptions.InvalidInput` naming the file and line."""
    if path is None:
        source = "the shipped cases"
        lines = resources.files("loopml.llm.guardrails").joinpath(SHIPPED).read_text("utf-8")
    else:
        file = Path(path).expanduser()
        source = str(file)
        try:
            lines = file.read_text(encoding="utf-8")
        except OSError as exc:
            raise InvalidInput(
                f"Cannot read cases from {file}: {exc.strerror or exc}. Give a JSONL file of "
                '{"text", "stage", "expect"} lines.'
            ) from None
    cases = []
    for number, raw in enumerate(lines.splitlines(), start=1):
        if raw.strip():
            cases.append(_parse_case(raw, f"{source}:{number}", number))
    if not cases:
        raise InvalidInput(f"{source} holds no cases.")
    return cases


def _parse_case(raw: str, where: str, line: int) -> Case:
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise InvalidInput(f"{where}: not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InvalidInput(f'{where}: a case is an object {{"text", "stage", "expect"}}')
    for key in data:
        if key not in _CASE_KEYS:
            raise InvalidInput(f"{where}: unknown key {key!r}; a case has {', '.join(_CASE_KEYS)}")
    text, stage, expect = data.get("text"), data.get("stage", "input"), data.get("expect")
    if not isinstance(text, str):
        raise InvalidInput(f"{where}: text must be a string, got {text!r}")
    if stage not in ("input", "output"):
        raise InvalidInput(f"{where}: stage must be input or output, got {stage!r}")
    if (
        not isinstance(expect, dict)
        or not expect
        or not all(isinstance(v, bool) for v in expect.values())
    ):
        raise InvalidInput(
            f'{where}: expect must map rule names to true or false, e.g. {{"pii": true}}, '
            f"got {expect!r}"
        )
    kind = data.get("kind")
    return Case(text, stage, expect, str(kind) if kind is not None else None,
                data.get("context"), line)  # fmt: skip


@dataclass
class RuleScore:
    """Counts of one rule on the cases that label it."""

    rule: str
    detector: str
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    @property
    def precision(self) -> float | None:
        fired = self.tp + self.fp
        return self.tp / fired if fired else None

    @property
    def recall(self) -> float | None:
        positives = self.tp + self.fn
        return self.tp / positives if positives else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "detector": self.detector,
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "tn": self.tn,
            "precision": self.precision,
            "recall": self.recall,
        }


@dataclass(frozen=True)
class Miss:
    """A case a rule got wrong: ``expected`` true and it did not fire, or the reverse."""

    line: int
    rule: str
    expected: bool
    kind: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"line": self.line, "rule": self.rule, "expected": self.expected, "kind": self.kind}


@dataclass
class Report:
    """Per-rule scores of one policy on a set of cases."""

    policy: str
    version: int | None
    cases: int
    rules: list[RuleScore]
    misses: list[Miss] = field(default_factory=list)
    unscored: dict[str, int] = field(default_factory=dict)  # label → cases no rule matched

    def score(self, rule: str) -> RuleScore:
        for s in self.rules:
            if s.rule == rule:
                return s
        raise KeyError(rule)

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "version": self.version,
            "cases": self.cases,
            "rules": [r.to_dict() for r in self.rules],
            "misses": [m.to_dict() for m in self.misses],
            "unscored": dict(self.unscored),
        }


def _rules_for(policy: Policy, label: str, stage: str) -> list[Rule]:
    rules = policy.rules_for(stage)
    named = [r for r in rules if r.name == label]
    return named or [r for r in rules if r.detector == label]


def evaluate(policy: Policy, cases: Iterable[Case]) -> Report:
    """Run every rule of ``policy`` on every case and count, per rule, true and false
    positives and negatives against the case's labels."""
    scores = {r.name: RuleScore(r.name, r.detector) for r in policy.rules}
    report = Report(policy.name, policy.version, 0, list(scores.values()))
    for case in cases:
        report.cases += 1
        if case.stage == "input":
            verdict = policy.check_input(
                [{"role": "user", "content": case.text}], stop_at_block=False
            )
        else:
            verdict = policy.check_output(case.text, context=case.context, stop_at_block=False)
        for label, expected in case.expect.items():
            rules = _rules_for(policy, label, case.stage)
            if not rules:
                report.unscored[label] = report.unscored.get(label, 0) + 1
                continue
            for rule in rules:
                fired = verdict.fired(rule.name)
                score = scores[rule.name]
                if fired and expected:
                    score.tp += 1
                elif fired:
                    score.fp += 1
                elif expected:
                    score.fn += 1
                else:
                    score.tn += 1
                if fired != expected:
                    report.misses.append(Miss(case.line, rule.name, expected, case.kind))
    return report
