"""The RAG assertions of eval suites (groundedness, context relevance, answer relevance):
judged through the gateway by the fake provider (a real HTTP server on 127.0.0.1), whose
echo of a judge prompt holding verdict JSON reads as that verdict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from llm.fake_provider import FakeProvider
from loopml.exceptions import InvalidInput
from loopml.llm.evals import JudgeUnavailable, load_suite, run_suite
from loopml.llm.evals.suites import suite_from_dict
from loopml.llm.gateway import Gateway
from loopml.llm.prompts import get_prompt, register_prompt

CONTEXT = "Refunds are accepted within 30 days of purchase."
CLAIMS = (
    '{"claims": [{"claim": "30 days", "supported": true}, '
    '{"claim": "of purchase", "supported": true}, '
    '{"claim": "free shipping", "supported": false}], "reason": "shipping is invented"}'
)


def rag_suite(checks: list[dict[str, Any]], **variables: Any) -> Any:
    variables = variables or {"question": "Can I get a refund?", "context": CONTEXT}
    case = {"id": "refund", "variables": variables, "assert": checks}
    return suite_from_dict({"name": "rag", "cases": [case], "judge_model": "judge"}, "rag.yaml")


def answerer(gw: Gateway) -> str:
    return register_prompt(
        "rag/answer", "{{ question }} Use: {{ context }}", model="evalm", workspace=gw.workspace
    ).ref


def test_groundedness_scores_the_supported_share_of_the_claims(
    gw: Gateway, fake_provider: FakeProvider
) -> None:
    answerer(gw)
    # The fake echoes the last user message: this judge prompt makes it echo claims.
    register_prompt(
        "my/grounded",
        CLAIMS + " Q={{ question }} | C={{ context }} | A={{ answer }}",
        workspace=gw.workspace,
    )
    result = run_suite(
        rag_suite([{"type": "groundedness", "prompt": "my/grounded"}]),
        "rag/answer/1",
        gateway=gw,
        track=False,
    )
    (case,) = result.cases
    (score,) = case.scores
    assert case.status == "passed" and score.type == "groundedness"
    assert score.score == pytest.approx(2 / 3)
    assert score.detail == "2 of 3 claims supported: shipping is invented"
    assert case.judge_cost_usd > 0 and result.judge_cost_usd == case.judge_cost_usd
    (sent,) = fake_provider.calls("judge-d")
    shown = sent["messages"][-1]["content"]
    assert "Q=Can I get a refund? |" in shown and f"C={CONTEXT} |" in shown
    assert f"A=echo: Can I get a refund? Use: {CONTEXT}" in shown
    assert sent["model"] == "fake-small"

    strict = rag_suite([{"type": "groundedness", "prompt": "my/grounded", "threshold": 0.9}])
    failed = run_suite(strict, "rag/answer/1", gateway=gw, track=False)
    assert failed.cases[0].status == "failed" and failed.pass_rate == 0.0
    assert failed.cases[0].scores[0].score == pytest.approx(2 / 3)


def test_relevance_judges_a_threshold_named_variables_and_the_last_user_message(
    gw: Gateway, fake_provider: FakeProvider
) -> None:
    ws = gw.workspace
    # No `question` variable: the judge is given the rendered prompt's last user message.
    register_prompt(
        "rag/chat",
        [{"role": "system", "content": "Answer from {{ docs }}"}, {"role": "user", "content": "{{ q }}"}],
        model="evalm",
        workspace=ws,
    )  # fmt: skip
    register_prompt(
        "my/relevant", '{"score": 0.4, "reason": "partly"} Q={{ question }} C={{ context }}',
        workspace=ws,
    )  # fmt: skip

    def run(**options: Any) -> Any:
        checks = [
            {"type": "context_relevance", "prompt": "my/relevant", "context": "docs", **options},
            {"type": "answer_relevance", "name": "on topic", "prompt": "my/relevant", **options},
        ]
        chunks = ["Refunds: 30 days.", {"text": "Shipping: 5 days."}]
        s = rag_suite(checks, q="Refund window?", docs=chunks)
        return run_suite(s, "rag/chat/1", gateway=gw, track=False)

    low = run()
    assert low.cases[0].status == "failed"
    assert [(s.name, s.passed, s.score, s.detail) for s in low.cases[0].scores] == [
        ("context_relevance", False, 0.4, "partly"),
        ("on topic", False, 0.4, "partly"),
    ]
    assert low.assertion_pass_rates() == {"context_relevance": 0.0, "on topic": 0.0}
    high = run(threshold=0.3)
    assert high.cases[0].status == "passed" and high.pass_rate == 1.0
    shown = {c["messages"][-1]["content"] for c in fake_provider.calls("judge-d")}
    assert any("Q=Refund window? C=Refunds: 30 days.\n\nShipping: 5 days." in s for s in shown)


def test_the_built_in_judges_are_registered_once_and_an_echo_is_a_judge_error(
    gw: Gateway, fake_provider: FakeProvider
) -> None:
    answerer(gw)
    s = rag_suite(
        [{"type": "groundedness"}, {"type": "context_relevance"}, {"type": "answer_relevance"}]
    )
    result = run_suite(s, "rag/answer/1", gateway=gw)  # built-in prompts, echoed: no verdict
    (case,) = result.cases
    assert case.status == "judge_error" and result.pass_rate == 0.0
    assert [sc.passed for sc in case.scores] == [None, None, None]
    assert all("no verdict in the judge's answer" in sc.detail for sc in case.scores)
    assert result.metrics()["judge_errors"] == 1.0
    sent = [c["messages"] for c in fake_provider.calls("judge-d")]
    assert len(sent) == 3
    grounded = next(m for m in sent if "grounded" in m[0]["content"])
    assert f"Context:\n{CONTEXT}" in grounded[-1]["content"]
    assert "Question:\nCan I get a refund?" in grounded[-1]["content"]
    run_suite(s, "rag/answer/1", gateway=gw, track=False)
    for kind in ("groundedness", "context_relevance", "answer_relevance"):
        assert get_prompt(f"loopml/{kind}", workspace=gw.workspace).version == 1


def test_a_case_built_without_its_context_is_not_judged(
    gw: Gateway, fake_provider: FakeProvider
) -> None:
    from loopml.llm.evals import Assertion, Case, Suite

    answerer(gw)
    check = Assertion("groundedness", "grounded", {"context": "docs"})
    case = Case("bare", {"question": "q", "context": "c"}, assertions=(check,))
    result = run_suite(Suite("py", (case,), judge_model="judge"), "rag/answer/1", gateway=gw)
    (score,) = result.cases[0].scores
    assert result.cases[0].status == "judge_error"
    assert (score.passed, score.detail) == (None, "the case has no variable 'docs'")
    assert fake_provider.calls("judge-d") == []


def test_a_rag_judge_provider_that_is_down_fails_the_suite(
    gw: Gateway, fake_provider: FakeProvider
) -> None:
    answerer(gw)
    fake_provider.fail("judge-d", "503", times=5)
    with pytest.raises(JudgeUnavailable, match="could not be reached.*not scored"):
        run_suite(rag_suite([{"type": "groundedness"}]), "rag/answer/1", gateway=gw)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        (
            {"id": "nocontext", "variables": {"question": "q"}, "assert": [{"type": "groundedness"}]},
            "case 'nocontext', assertion 1 (groundedness): the case has no variable 'context'",
        ),
        (
            {"id": "named", "variables": {"context": "c"},
             "assert": ["is_json", {"type": "context_relevance", "context": "docs"}]},
            "case 'named', assertion 2 (context_relevance): the case has no variable 'docs'",
        ),
        (
            {"id": "q", "variables": {"context": "c"},
             "assert": [{"type": "answer_relevance", "question": "ask"}]},
            "case 'q', assertion 1 (answer_relevance): the case has no variable 'ask'",
        ),
        (
            {"id": "t", "variables": {"context": "c"},
             "assert": [{"type": "groundedness", "threshold": 2}]},
            "case 't', assertion 1 (groundedness): field 'threshold' must be between 0 and 1",
        ),
        (
            {"id": "u", "variables": {"context": "c"},
             "assert": [{"type": "groundedness", "rubric": "x"}]},
            "case 'u', assertion 1 (groundedness): unknown field 'rubric'",
        ),
        (
            {"id": "v", "variables": {"context": "c"},
             "assert": [{"type": "context_relevance", "context": 3}]},
            "case 'v', assertion 1 (context_relevance): field 'context' must be text",
        ),
    ],
)  # fmt: skip
def test_bad_rag_assertions_in_a_suite_file_name_the_case(
    tmp_path: Path, case: dict[str, Any], message: str
) -> None:
    import yaml

    path = tmp_path / "rag.yaml"
    path.write_text(yaml.safe_dump({"name": "rag", "cases": [case]}))
    with pytest.raises(InvalidInput) as caught:
        load_suite(path)
    assert str(caught.value).startswith(f"{path}, {message}")


def test_answer_relevance_needs_no_context_and_suite_defaults_check_every_case(
    tmp_path: Path,
) -> None:
    path = tmp_path / "rag.yaml"
    path.write_text(
        "name: rag\n"
        "assert: [{type: answer_relevance}]\n"
        "cases:\n"
        "  - {id: plain, variables: {question: hi}}\n"
    )
    suite = load_suite(path)
    assert [a.type for a in suite.cases[0].assertions] == ["answer_relevance"]
    path.write_text(
        "name: rag\n"
        "assert: [{type: groundedness}]\n"
        "cases:\n"
        "  - {id: ok, variables: {context: c}}\n"
        "  - {id: bare, variables: {question: hi}}\n"
    )
    with pytest.raises(InvalidInput, match="case 'bare', assertion 1 \\(groundedness\\)"):
        load_suite(path)


def test_the_rag_suite_in_the_docs_loads(tmp_path: Path) -> None:
    docs = (Path(__file__).parents[3] / "docs" / "evals.md").read_text()
    block = docs.split("# evals/rag.yaml\n", 1)[1].split("```", 1)[0]
    path = tmp_path / "rag.yaml"
    path.write_text(block)
    suite = load_suite(path)
    assert [[a.type for a in c.assertions] for c in suite.cases] == [
        ["groundedness", "answer_relevance"],
        ["groundedness", "answer_relevance", "context_relevance"],
    ]


def test_calibration_covers_the_rag_judges(gw: Gateway) -> None:
    from loopml.llm.evals.calibration import calibrate

    answerer(gw)
    # This judge answers the case's own "verdict" variable: 3 of 4 agree with the humans.
    register_prompt(
        "my/relevance",
        '{"score": {{ context }}} {{ question }} {{ answer }}',
        workspace=gw.workspace,
    )
    cases = [
        {
            "id": f"c{i}",
            "variables": {"question": "q", "context": verdict},
            "human": human,
            "assert": [{"type": "context_relevance", "prompt": "my/relevance"}],
        }
        for i, (verdict, human) in enumerate(
            [("0.9", "pass"), ("0.8", "pass"), ("0.1", "fail"), ("0.7", "fail")]
        )
    ]
    suite = suite_from_dict({"name": "cal", "cases": cases, "judge_model": "judge"}, "c.yaml")
    found = calibrate(run_suite(suite, "rag/answer/1", gateway=gw, track=False))
    agreement = found["context_relevance"]
    assert agreement.n == 4 and agreement.accuracy == 0.75
    assert agreement.judge_pass_human_fail == 1
