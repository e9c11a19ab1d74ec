"""Evaluation: per-rule counts on labelled cases, the shipped set's measured floors, and the
shipped file matching its generator."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loopml.exceptions import InvalidInput
from loopml.llm.guardrails.cases import PATH, render
from loopml.llm.guardrails.evaluate import evaluate, read_cases
from loopml.llm.guardrails.policy import Policy, default_policy


def write(tmp_path: Path, *lines: object) -> Path:
    path = tmp_path / "cases.jsonl"
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    return path


def test_counts_per_rule(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {"text": "card 4111 1111 1111 1111", "stage": "input", "expect": {"pii": True}},
        {"text": "order 4111 1111 1111 1112", "expect": {"pii": False}},  # stage defaults to input
        {"text": "nothing here", "stage": "output", "expect": {"pii": True, "secrets": False}},
        {"text": "192.168.0.1 is the router", "expect": {"pii": False}, "kind": "hard"},
        {"text": "x", "expect": {"banned": True}},
        "",
    )
    report = evaluate(default_policy(), read_cases(path))
    pii = report.score("pii")
    assert (pii.tp, pii.fp, pii.fn, pii.tn) == (1, 1, 1, 1)
    assert pii.precision == 0.5 and pii.recall == 0.5
    out = report.score("secrets_out")  # "secrets" at output is the secrets_out rule
    assert (out.tp, out.fp, out.fn, out.tn) == (0, 0, 0, 1)
    assert out.precision is None and out.recall is None
    assert report.unscored == {"banned": 1}
    assert [(m.line, m.rule, m.expected, m.kind) for m in report.misses] == [
        (3, "pii", True, None),
        (4, "pii", False, "hard"),
    ]
    assert report.to_dict()["rules"][0]["rule"] == "injection"


def test_a_rule_name_wins_over_a_detector_name(tmp_path: Path) -> None:
    policy = Policy.from_dict(
        "two",
        {"rules": [{"name": "cards", "detector": "pii", "action": "flag",
                    "options": {"entities": ["credit_card"]}},
                   {"name": "pii", "detector": "regex", "action": "flag",
                    "options": {"pattern": "secret sauce"}}]},
    )  # fmt: skip
    path = write(tmp_path, {"text": "the secret sauce", "expect": {"pii": True, "cards": False}})
    report = evaluate(policy, read_cases(path))
    assert report.score("pii").tp == 1 and report.score("cards").tn == 1


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", ":1: not JSON"),
        ("[1]", "a case is an object"),
        ('{"text": 1, "expect": {"pii": true}}', "text must be a string"),
        (
            '{"text": "x", "stage": "middle", "expect": {"pii": true}}',
            "stage must be input or output",
        ),
        ('{"text": "x", "expect": {"pii": "yes"}}', "expect must map rule names to true or false"),
        ('{"text": "x", "expect": {}}', "expect must map"),
        ('{"text": "x", "expect": {"pii": true}, "label": 1}', "unknown key 'label'"),
    ],
)
def test_malformed_cases_name_the_line(tmp_path: Path, line: str, message: str) -> None:
    path = write(tmp_path, line)
    with pytest.raises(InvalidInput, match=message) as error:
        read_cases(path)
    assert f"{path}:1" in str(error.value)


def test_missing_or_empty_files(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="Cannot read cases from"):
        read_cases(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(InvalidInput, match="holds no cases"):
        read_cases(tmp_path / "empty.jsonl")


def test_the_shipped_file_is_what_the_generator_writes() -> None:
    assert PATH.read_text(encoding="utf-8") == render()
    assert render() == render()  # deterministic


def test_the_default_policy_on_the_shipped_cases_holds_its_measured_floors() -> None:
    cases = read_cases()
    assert len(cases) == 480
    report = evaluate(default_policy(), cases)
    # Measured on this set (see docs/guardrails.md); floors sit just under the figures, so a
    # regression of a single case in a small class shows.
    floors = {  # rule: (precision, recall), measured just above these
        "pii": (0.98, 1.0),  # 161/163, 161/161: two honest hard negatives are flagged
        "secrets": (1.0, 1.0),  # 50/50
        "secrets_out": (1.0, 1.0),  # 20/20
        "injection": (0.99, 0.90),  # 112/113, 112/124: the 12 held-out phrasings are missed
    }
    for rule, (precision, recall) in floors.items():
        score = report.score(rule)
        assert score.precision is not None and score.precision >= precision, (rule, score)
        assert score.recall is not None and score.recall >= recall, (rule, score)
