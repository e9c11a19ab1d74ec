"""Running suites through the gateway against the fake provider (a real HTTP server on
127.0.0.1): the tracked run, the call cache, the concurrency limit, repeats, comparison,
and the judge (readable, garbage, provider down)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from llm.fake_provider import FakeProvider
from loopml.exceptions import InvalidInput
from loopml.llm.evals import CallCache, JudgeUnavailable, compare, run_suite
from loopml.llm.evals.suites import suite_from_dict
from loopml.llm.gateway import Gateway
from loopml.llm.prompts import register_prompt


def suite(cases: list[dict[str, Any]], **extra: Any) -> Any:
    return suite_from_dict({"name": "t", "cases": cases, **extra}, "t.yaml")


def qa(gw: Gateway, template: str = "{{ q }}") -> str:
    return register_prompt("qa", template, model="evalm", workspace=gw.workspace).ref


def test_a_run_scores_cases_and_records_one_tracked_run(
    gw: Gateway, fake_provider: FakeProvider
) -> None:
    ref = qa(gw)
    s = suite(
        [
            {"id": "hi", "variables": {"q": "hi"}, "expected": "echo: hi", "assert": ["exact"]},
            {
                "id": "num",
                "variables": {"q": "42"},
                "expected": 42,
                "assert": [{"type": "numeric"}, {"type": "contains", "value": "43"}],
            },
            {"id": "bad-vars", "variables": {"x": "1"}},
        ],
        thresholds={"min_pass_rate": 0.9},
    )
    result = run_suite(s, "qa@latest", gateway=gw)
    by_id = {c.case_id: c for c in result.cases}
    assert by_id["hi"].status == "passed" and by_id["hi"].output == "echo: hi"
    assert by_id["num"].status == "failed"
    assert [sc.passed for sc in by_id["num"].scores] == [True, False]
    assert by_id["bad-vars"].status == "error" and "q" in (by_id["bad-vars"].error or "")
    assert result.prompt == ref and result.pass_rate == pytest.approx(1 / 3)
    assert result.assertion_pass_rates() == {"exact": 1.0, "numeric": 1.0, "contains": 0.0}
    assert result.cost_usd > 0 and result.upstream_calls == 2
    assert result.threshold_failures() == ["pass rate 33.3% is below min_pass_rate 90.0%"]
    assert len(fake_provider.calls("eval-d")) == 2
    run = gw.workspace.runs.get(result.run_id)  # type: ignore[arg-type]
    assert run.params["prompt"] == "qa/1" and run.params["suite"] == "t"
    assert run.params["model"] == "evalm"
    assert run.metrics["pass_rate"] == pytest.approx(1 / 3)
    assert run.metrics["assert/contains/pass_rate"] == 0.0
    folder = gw.workspace.runs.download_artifacts(result.run_id, "evals")  # type: ignore[arg-type]
    cases = json.loads((folder / "cases.json").read_text())["cases"]
    assert [c["case"] for c in cases] == ["hi", "num", "bad-vars"]
    assert cases[0]["variables"] == {"q": "hi"} and cases[0]["scores"][0]["passed"] is True


def test_identical_calls_are_sent_once_and_repeats_are_not_cached(
    gw: Gateway, fake_provider: FakeProvider
) -> None:
    qa(gw)
    s = suite(
        [
            {"id": "a", "variables": {"q": "same"}, "assert": [{"type": "contains", "value": "s"}]},
            {"id": "b", "variables": {"q": "same"}, "assert": [{"type": "contains", "value": "s"}]},
        ]
    )
    cache = CallCache()
    result = run_suite(s, "qa/1", gateway=gw, cache=cache, track=False)
    assert len(fake_provider.calls("eval-d")) == 1
    assert sorted(c.cached for c in result.cases) == [False, True]
    assert result.cost_usd == pytest.approx(result.cases[0].cost_usd + result.cases[1].cost_usd)
    assert result.pass_rate == 1.0
    warm = run_suite(s, "qa/1", gateway=gw, cache=cache, track=False)  # a warm cache
    assert len(fake_provider.calls("eval-d")) == 1 and warm.upstream_calls == 0
    assert all(c.cached for c in warm.cases)
    repeated = run_suite(s, "qa/1", gateway=gw, repeat=3, track=False)
    assert len(repeated.cases) == 6 and repeated.upstream_calls == 3
    assert len(fake_provider.calls("eval-d")) == 4


def test_the_concurrency_limit_is_respected(gw: Gateway, fake_provider: FakeProvider) -> None:
    qa(gw)
    fake_provider.fail("eval-d", "slow_first", times=8, seconds=0.15)
    s = suite([{"id": str(i), "variables": {"q": str(i)}} for i in range(8)])
    result = run_suite(s, "qa/1", gateway=gw, concurrency=3, track=False)
    assert result.max_in_flight == 3
    assert result.wall_s >= 0.15 * 3  # ceil(8 / 3) waves
    assert len(fake_provider.calls("eval-d")) == 8
    assert all(c.status == "passed" for c in result.cases)


def test_a_failed_call_is_an_error_case_not_a_pass(
    gw: Gateway, fake_provider: FakeProvider
) -> None:
    qa(gw)
    fake_provider.fail("eval-d", "500", times=1)
    s = suite([{"id": "a", "variables": {"q": "x"}}, {"id": "b", "variables": {"q": "y"}}],
              thresholds={"min_pass_rate": 1})  # fmt: skip
    result = run_suite(s, "qa/1", gateway=gw, concurrency=1, track=False)
    assert [c.status for c in result.cases] == ["error", "passed"]
    assert "500" in (result.cases[0].error or "") or result.cases[0].error
    assert result.threshold_failures()


def test_compare_finds_regressions_and_improvements(gw: Gateway) -> None:
    ws = gw.workspace
    register_prompt("qa", "{{ q }}", model="evalm", workspace=ws)
    register_prompt("qa", "short {{ q }}", model="evalm", workspace=ws)
    s = suite(
        [
            {"id": "plain", "variables": {"q": "hi"}, "expected": "echo: hi", "assert": ["exact"]},
            {"id": "short", "variables": {"q": "hi"}, "assert": [{"type": "contains", "value": "short"}]},
        ]
    )  # fmt: skip
    old = run_suite(s, "qa/1", gateway=gw, track=False)
    new = run_suite(s, "qa/2", gateway=gw, track=False)
    diff = compare(new, old)
    assert [r[0] for r in diff.regressions] == ["plain"]
    assert [r[0] for r in diff.improvements] == ["short"]
    assert diff.delta == 0.0 and diff.baseline == "qa/1"


def test_no_prompt_or_model_is_a_clear_error(gw: Gateway) -> None:
    register_prompt("nomodel", "{{ q }}", workspace=gw.workspace)
    s = suite([{"variables": {"q": "x"}}])
    with pytest.raises(InvalidInput, match="--prompt"):
        run_suite(s, gateway=gw)
    with pytest.raises(InvalidInput, match="names no model: pass --model"):
        run_suite(s, "nomodel/1", gateway=gw)
    assert run_suite(s, "nomodel/1", model="evalm", gateway=gw, track=False).pass_rate == 1.0


# -- the judge -----------------------------------------------------------------------------


def judged(**options: Any) -> Any:
    return suite(
        [
            {
                "id": "a",
                "variables": {"q": "hello"},
                "assert": [{"type": "judge", "rubric": "polite", **options}],
            }
        ],
        judge_model="judge",
    )


def test_a_judge_whose_answer_reads_as_a_verdict(gw: Gateway, fake_provider: FakeProvider) -> None:
    qa(gw)
    # The fake echoes the last user message: this judge prompt makes it echo a verdict.
    register_prompt(
        "my/judge",
        '{"pass": true, "score": 0.9, "reason": "checked {{ rubric }}"} {{ output }}',
        workspace=gw.workspace,
    )
    result = run_suite(judged(prompt="my/judge"), "qa/1", gateway=gw, track=False)
    (case,) = result.cases
    assert case.status == "passed"
    assert case.scores[0].score == 0.9 and case.scores[0].detail == "checked polite"
    assert case.judge_cost_usd > 0
    (sent,) = fake_provider.calls("judge-d")
    assert "echo: hello" in sent["messages"][-1]["content"]


def test_a_judge_answering_garbage_is_a_judge_error_never_a_pass(
    gw: Gateway, fake_provider: FakeProvider
) -> None:
    qa(gw)
    result = run_suite(judged(), "qa/1", gateway=gw)  # the built-in judge, echoed: no verdict
    (case,) = result.cases
    assert case.status == "judge_error" and result.pass_rate == 0.0
    assert (
        case.scores[0].passed is None
        and "no verdict in the judge's answer" in case.scores[0].detail
    )
    (sent,) = fake_provider.calls("judge-d")
    assert "Rubric:\npolite" in sent["messages"][-1]["content"]
    from loopml.llm.prompts import get_prompt

    assert get_prompt("loopml/judge", workspace=gw.workspace).version == 1  # registered once
    run_suite(judged(), "qa/1", gateway=gw, track=False)
    assert get_prompt("loopml/judge", workspace=gw.workspace).version == 1
    assert result.metrics()["judge_errors"] == 1.0


def test_a_judge_provider_that_is_down_fails_the_suite(
    gw: Gateway, fake_provider: FakeProvider
) -> None:
    qa(gw)
    fake_provider.fail("judge-d", "503", times=5)
    with pytest.raises(JudgeUnavailable, match="could not be reached.*not scored"):
        run_suite(judged(), "qa/1", gateway=gw)


def test_pairwise_against_the_production_version(gw: Gateway, fake_provider: FakeProvider) -> None:
    from loopml.llm.evals.judge import candidate_first
    from loopml.llm.prompts import set_label

    ws = gw.workspace
    register_prompt("qa", "{{ q }}", model="evalm", workspace=ws)
    register_prompt("qa", "short {{ q }}", model="evalm", workspace=ws)
    set_label("qa", "production", 1, workspace=ws)
    # The fake echoes the judge prompt: this one always names A the winner.
    register_prompt("pick/a", '{"winner": "A", "reason": "first"} {{ answer_a }}', workspace=ws)
    register_prompt("pick/tie", '{"winner": "tie"}', workspace=ws)

    def pairwise(**options: Any) -> Any:
        check = {"type": "pairwise", "rubric": "better", "model": "judge", **options}
        ids = ["x", "y", "z", "w"]
        return suite([{"id": i, "variables": {"q": i}, "assert": [check]} for i in ids])

    result = run_suite(pairwise(prompt="pick/a"), "qa/2", gateway=gw, track=False)
    for case in result.cases:
        won = candidate_first(case.case_id, 0)
        assert case.scores[0].passed is won
        assert case.scores[0].detail.startswith("beats qa/1" if won else "loses to qa/1")
        assert case.judge_cost_usd > 0
    assert {c.scores[0].passed for c in result.cases} == {True, False}  # both positions seen
    shown = {c["messages"][-1]["content"].split("} ")[1] for c in fake_provider.calls("judge-d")}
    expected_a = {
        f"echo: short {i}" if candidate_first(i, 0) else f"echo: {i}" for i in ("x", "y", "z", "w")
    }
    assert shown == expected_a  # answer A is the candidate's or the baseline's, as drawn
    ties = run_suite(pairwise(prompt="pick/tie"), "qa/2", gateway=gw, track=False)
    assert ties.pass_rate == 1.0 and ties.cases[0].scores[0].detail.startswith("tie with qa/1")
    garbage = run_suite(pairwise(), "qa/2", gateway=gw, track=False)  # built-in, echoed
    assert {c.status for c in garbage.cases} == {"judge_error"}
    assert "no winner" in garbage.cases[0].scores[0].detail
    unset = run_suite(pairwise(against="staging"), "qa/2", gateway=gw, track=False)
    assert unset.pass_rate == 1.0 and "no baseline" in unset.cases[0].scores[0].detail
    same = run_suite(pairwise(), "qa/1", gateway=gw, track=False)
    assert same.pass_rate == 1.0
