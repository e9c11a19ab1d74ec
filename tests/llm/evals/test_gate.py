"""The eval gate of protected prompt labels, through ``set_label`` and the CLI, and
``loopml evals run`` as a CI step (exit codes), against the fake provider on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from llm.fake_provider import FakeProvider
from loopml.cli.main import cli
from loopml.exceptions import InvalidConfig
from loopml.llm.evals import EvalGate, gate_for
from loopml.llm.prompts import LabelBlocked, label_history, register_prompt, set_label
from loopml.workspace import Workspace

SUITE = """\
name: qa-smoke
model: evalm
thresholds: {min_pass_rate: 1.0}
cases:
  - id: plain
    variables: {q: hi}
    expected: "echo: hi"
    assert: [exact]
  - id: number
    variables: {q: "7"}
    expected: 7
    assert: [{type: numeric}, {type: cost, max_usd: 1.0}]
"""


def _deployment(fake: FakeProvider, name: str) -> str:
    return (
        f'deployments = [{{name = "{name}", provider = "openai", model = "fake-small", '
        f'base_url = "{fake.base_url(name)}", api_key_env = "FAKE_PROVIDER_KEY"}}]\n'
    )


@pytest.fixture
def project(
    tmp_path: Path, fake_provider: FakeProvider, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Workspace]:
    monkeypatch.setenv("FAKE_PROVIDER_KEY", "sk-fake")
    ws = Workspace.init(tmp_path / "project")
    with (ws.root / "loopml.toml").open("a") as f:
        f.write(
            '\n[prompts]\nprotected_labels = ["production"]\n'
            '\n[gates.prompts.qa]\nsuite = "evals/qa.yaml"\nmax_regression = 0.0\n'
            "max_cost_per_case = 0.01\n"
            "\n[gateway]\nrequire_key = false\nnum_retries = 0\nlog_flush_interval = 0.05\n"
            "[gateway.models.evalm]\n" + _deployment(fake_provider, "eval-d") + "\n"
            "[gateway.prices.fake-small]\ninput = 1.0\noutput = 2.0\n"
        )
    (ws.root / "evals").mkdir()
    (ws.root / "evals" / "qa.yaml").write_text(SUITE)
    ws.close()
    monkeypatch.chdir(ws.root)
    opened = Workspace.open(ws.root)
    yield opened
    opened.close()


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), prog_name="loopml")


def test_the_gate_passes_a_good_version_and_blocks_a_worse_one(project: Workspace) -> None:
    ws = project
    v1 = register_prompt("qa", "{{ q }}", workspace=ws)
    v2 = register_prompt("qa", "short {{ q }}", workspace=ws)  # "echo: short hi": worse
    v3 = register_prompt("qa", "{{ q }}", params={"temperature": 0}, workspace=ws)
    gate = EvalGate.for_prompt("qa", workspace=ws)
    move = set_label("qa", "production", v1.version, gate=gate, workspace=ws)
    assert move.kind == "set" and move.verdict is not None and move.verdict.passed
    assert move.verdict.details["pass_rate"] == 1.0 and "baseline" not in move.verdict.details
    with pytest.raises(LabelBlocked, match="refused qa/2.*regression 50.0% against qa/1"):
        set_label("qa", "production", v2.version, gate=gate, workspace=ws)
    blocked = label_history("qa", "production", workspace=ws)[-1]
    assert blocked.kind == "blocked" and blocked.verdict is not None
    details = blocked.verdict.details
    assert details["regressions"] == ["plain"] and details["baseline"] == "qa/1"
    assert details["pass_rate"] == 0.5 and details["baseline_pass_rate"] == 1.0
    assert ws.runs.get(details["run_id"]).params["prompt"] == "qa/2"
    assert ws.runs.get(details["baseline_run_id"]).params["prompt"] == "qa/1"
    forced = set_label(
        "qa", "production", v2.version, gate=gate, force=True, reason="hotfix", workspace=ws
    )
    assert forced.kind == "override" and forced.verdict is not None
    assert forced.verdict.forced and not forced.verdict.passed
    assert forced.verdict.reason == "hotfix" and forced.verdict.details["regressions"] == ["plain"]
    good = set_label("qa", "production", v3.version, gate=gate, workspace=ws)
    assert good.kind == "set" and good.verdict is not None and good.verdict.passed
    assert good.verdict.details["improvements"] == ["plain"]


def test_gate_configuration(project: Workspace, tmp_path: Path) -> None:
    assert gate_for(project, "qa", "staging") is None  # not protected
    assert gate_for(project, "other", "production") is None  # no table, no default
    assert isinstance(gate_for(project, "qa", "production"), EvalGate)
    with pytest.raises(InvalidConfig, match=r"No eval gate for prompt 'other'.*gates.prompts"):
        EvalGate.for_prompt("other", workspace=project)
    from loopml.llm.evals.gate import EvalGatePolicy

    with pytest.raises(InvalidConfig, match="did you mean 'min_pass_rate'"):
        EvalGatePolicy.from_dict({"suite": "s.yaml", "min_pass": 1}, "[gates.prompts.qa]")
    with pytest.raises(InvalidConfig, match="suite = "):
        EvalGatePolicy.from_dict({}, "[gates.prompts.qa]")
    with pytest.raises(InvalidConfig, match="share from 0 to 1"):
        EvalGatePolicy.from_dict({"suite": "s", "max_regression": 5}, "[gates.prompts.qa]")
    shown = invoke("config", "show")
    assert shown.exit_code == 0, shown.output


def test_prompts_label_uses_the_gate_and_force_is_an_override(project: Workspace) -> None:
    assert invoke("prompts", "register", "qa", "--file", _write("a.txt", "{{ q }}")).exit_code == 0
    assert (
        invoke("prompts", "register", "qa", "-f", _write("b.txt", "short {{ q }}")).exit_code == 0
    )
    out = invoke("prompts", "label", "qa", "production", "1")
    assert out.exit_code == 0, out.output
    refused = invoke("prompts", "label", "qa", "production", "2")
    assert refused.exit_code == 1
    assert refused.stderr.startswith("error: The promotion gate refused qa/2")
    assert "regression 50.0%" in refused.stderr
    forced = invoke("prompts", "label", "qa", "production", "2", "--force", "--reason", "hotfix")
    assert forced.exit_code == 0 and "(override)" in forced.stdout
    moves = json.loads(invoke("prompts", "history", "qa", "production", "--json").stdout)
    assert [m["kind"] for m in moves] == ["set", "blocked", "override"]
    assert moves[-1]["verdict"]["forced"] and moves[-1]["reason"] == "hotfix"


def _write(name: str, content: str) -> str:
    Path(name).write_text(content)
    return name


def test_evals_run_exit_codes_table_and_compare(project: Workspace) -> None:
    register_prompt("qa", "{{ q }}", workspace=project)
    register_prompt("qa", "short {{ q }}", workspace=project)
    set_label("qa", "staging", 1, workspace=project)
    ok = invoke("evals", "run", "evals/qa.yaml", "--prompt", "qa/1")
    assert ok.exit_code == 0, ok.output
    assert "qa-smoke on qa/1 (evalm)" in ok.stdout and "pass rate 100.0% (2/2" in ok.stdout
    assert "numeric" in ok.stdout and "per assertion" in ok.stdout
    worse = invoke("evals", "run", "evals/qa.yaml", "--prompt", "qa/2", "--compare", "staging")
    assert worse.exit_code == 1
    assert "regression: plain passed → failed" in worse.stdout
    assert worse.stderr.strip() == (
        "error: the suite's thresholds failed: pass rate 50.0% is below min_pass_rate 100.0%."
    )
    data = json.loads(
        invoke(
            "evals",
            "run",
            "evals/qa.yaml",
            "--prompt",
            "qa/2",
            "--compare",
            "1",
            "--repeat",
            "2",
            "--json",
        ).stdout  # fmt: skip
    )
    assert data["prompt"] == "qa/2" and len(data["cases"]) == 4
    assert data["comparison"]["baseline"] == "qa/1"
    assert [r["case"] for r in data["comparison"]["regressions"]] == ["plain", "plain"]
    assert data["metrics"]["assert/exact/pass_rate"] == 0.0
    missing = invoke("evals", "run", "evals/nosuch.yaml", "--prompt", "qa/1")
    assert missing.exit_code == 1 and "No suite file" in missing.stderr
    no_prompt = invoke("evals", "run", "evals/qa.yaml")
    assert no_prompt.exit_code == 1 and "--prompt" in no_prompt.stderr


CALIBRATION = """\
name: judge-calibration
model: evalm
cases:
  - {id: a, variables: {q: x}, expected: "true", human: pass, assert: [{type: judge, rubric: r, prompt: cal/judge}]}
  - {id: b, variables: {q: x}, expected: "true", human: fail, assert: [{type: judge, rubric: r, prompt: cal/judge}]}
  - {id: c, variables: {q: x}, expected: "false", human: fail, assert: [{type: judge, rubric: r, prompt: cal/judge}]}
  - {id: d, variables: {q: x}, expected: "false", human: fail, assert: [{type: judge, rubric: r, prompt: cal/judge}]}
  - {id: e, variables: {q: x}, expected: "true", assert: [{type: judge, rubric: r, prompt: cal/judge}]}
"""


def test_evals_calibrate_reports_judge_agreement(project: Workspace) -> None:
    register_prompt("qa", "{{ q }}", workspace=project)
    # The fake echoes the judge prompt: this one answers the case's expected as its verdict.
    register_prompt("cal/judge", '{"pass": {{ expected }}}', workspace=project)
    Path("cal.yaml").write_text(CALIBRATION)
    shown = invoke("evals", "calibrate", "cal.yaml", "--prompt", "qa/1", "--json")
    assert shown.exit_code == 0, shown.output
    judge = json.loads(shown.stdout)["judges"]["judge"]
    assert judge["n"] == 4 and judge["accuracy"] == 0.75 and judge["kappa"] == pytest.approx(0.5)
    assert judge["judge_pass_human_fail"] == 1 and not judge["low"]
    run = project.runs.get(json.loads(shown.stdout)["run_id"])
    assert run.metrics["judge/judge/kappa"] == pytest.approx(0.5)
    strict = invoke("evals", "calibrate", "cal.yaml", "--prompt", "qa/1", "--min-kappa", "0.8")
    assert strict.exit_code == 1 and "judge vs humans" in strict.stdout
    assert "below --min-kappa 0.8: judge" in strict.stderr
    Path("plain.yaml").write_text(SUITE)
    unlabelled = invoke("evals", "calibrate", "plain.yaml", "--prompt", "qa/1")
    assert unlabelled.exit_code == 1 and "no human-labelled case" in unlabelled.stderr
