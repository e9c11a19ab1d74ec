"""Suite files: YAML and JSONL, inline cases and dataset files, and malformed suites as one
clear error naming the case and the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loopml.exceptions import InvalidInput
from loopml.llm.evals import load_suite
from loopml.llm.evals.suites import suite_from_dict


def test_yaml_suite_with_defaults_and_a_dataset(tmp_path: Path) -> None:
    (tmp_path / "more.jsonl").write_text(
        json.dumps({"id": "b", "variables": {"q": "two"}, "expected": "echo: two"}) + "\n\n"
    )
    (tmp_path / "suite.yaml").write_text(
        "name: smoke\n"
        "prompt: qa/1\n"
        "thresholds: {min_pass_rate: 0.5}\n"
        "assert: [{type: latency, max_ms: 5000}]\n"
        "cases:\n"
        "  - id: a\n"
        "    variables: {q: one}\n"
        "    expected: 'echo: one'\n"
        "    assert: [exact, {type: contains, value: one, name: has-one}]\n"
        "dataset: more.jsonl\n"
    )
    suite = load_suite(tmp_path / "suite.yaml")
    assert suite.name == "smoke" and suite.prompt == "qa/1"
    assert [c.id for c in suite.cases] == ["a", "b"]
    assert [a.name for a in suite.cases[0].assertions] == ["latency", "exact", "has-one"]
    assert [a.name for a in suite.cases[1].assertions] == ["latency"]
    assert suite.thresholds == {"min_pass_rate": 0.5}
    assert suite.assertion_names == ["latency", "exact", "has-one"]
    again = load_suite(tmp_path / "suite.yaml")
    assert again.digest == suite.digest


def test_jsonl_suite_is_cases(tmp_path: Path) -> None:
    path = tmp_path / "cases.jsonl"
    path.write_text(
        "\n".join(
            json.dumps({"variables": {"q": str(i)}, "assert": [{"type": "regex", "value": r"\d"}]})
            for i in range(3)
        )
    )
    suite = load_suite(path)
    assert suite.name == "cases" and [c.id for c in suite.cases] == ["#1", "#2", "#3"]


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"cases": [{"id": "x", "variables": ["q"]}]}, "case 'x', field 'variables'"),
        ({"cases": [{"id": "x", "assert": [{"type": "contans"}]}]}, "Did you mean 'contains'?"),
        ({"cases": [{"id": "x", "assert": [{"type": "contains"}]}]}, "field 'value' is required"),
        ({"cases": [{"id": "x", "assert": [{"type": "regex", "value": "("}]}]}, "not a regex"),
        ({"cases": [{"id": "x", "assert": [{"type": "latency"}]}]}, "'max_ms' is required"),
        (
            {"cases": [{"id": "x", "assert": [{"type": "json_schema", "schema": {"type": 3}}]}]},
            "invalid schema",
        ),
        (
            {"cases": [{"id": "x", "assert": [{"type": "exact", "valu": 1}]}]},
            "unknown field 'valu'",
        ),
        ({"cases": [{}, {"variable": {}}]}, "case #2, field 'variable'"),
        ({"cases": [{"id": "x"}, {"id": "x"}]}, "'id' is used twice"),
        ({"cases": []}, "has no cases"),
        ({"cases": [{"id": "x"}], "thresholds": {"min_pass": 1}}, "unknown threshold"),
        ({"case": []}, "Did you mean 'cases'?"),
        ({"cases": [{"id": "x", "assert": [{"type": "judge"}]}]}, "'rubric' is required"),
        ({"cases": [{"id": "x", "assert": [{"type": "pairwise"}]}]}, "(pairwise): field 'rubric'"),
        (
            {"cases": [{"id": "x", "assert": [{"type": "pairwise", "rubric": "r", "against": 3}]}]},
            "field 'against' must be text",
        ),
        (
            {"cases": [{"id": "x", "assert": [{"type": "similar", "value": "a", "threshold": 2}]}]},
            "between 0 and 1",
        ),
    ],
)
def test_malformed_suites_name_the_case_and_field(data: dict, fragment: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        suite_from_dict(data, "suite.yaml")
    assert fragment in str(caught.value)
    assert str(caught.value).startswith("suite.yaml")


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="No suite file"):
        load_suite(tmp_path / "nosuch.yaml")
    (tmp_path / "bad.yaml").write_text("cases: [\n")
    with pytest.raises(InvalidInput, match="not valid YAML"):
        load_suite(tmp_path / "bad.yaml")
    (tmp_path / "bad.jsonl").write_text('{"id": 1}\n{oops\n')
    with pytest.raises(InvalidInput, match="line 2: not JSON"):
        load_suite(tmp_path / "bad.jsonl")
    (tmp_path / "s.yaml").write_text("cases: [{id: a}]\ndataset: none.jsonl\n")
    with pytest.raises(InvalidInput, match="No suite file .*none.jsonl"):
        load_suite(tmp_path / "s.yaml")


def test_human_labels() -> None:
    suite = suite_from_dict(
        {"cases": [{"id": "a", "human": "pass"}, {"id": "b", "human": False}, {"id": "c"}]}
    )
    assert [c.human for c in suite.cases] == [True, False, None]
    with pytest.raises(InvalidInput, match="case 'x', field 'human'.*pass or fail"):
        suite_from_dict({"cases": [{"id": "x", "human": "maybe"}]})
    with pytest.raises(InvalidInput, match="field 'human'"):
        suite_from_dict({"cases": [{"id": "x", "human": ["pass"]}]})


def _git(root: Path, *args: str) -> None:
    import os
    import subprocess

    identity = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
                "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}  # fmt: skip
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True,
                   env={**os.environ, **identity})  # fmt: skip


def test_a_dataset_version_kept_by_loopml_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import loopml.data
    from loopml.config import write_default_config

    root = tmp_path / "project"
    write_default_config(root)
    _git(root, "init", "-q")
    monkeypatch.chdir(root)
    cases = root / "cases.jsonl"
    cases.write_text(json.dumps({"id": "old", "variables": {"q": "1"}}) + "\n")
    loopml.data.add("cases.jsonl")
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "v1")
    cases.unlink()
    cases.write_text(json.dumps({"id": "new", "variables": {"q": "2"}}) + "\n")
    loopml.data.add("cases.jsonl")
    (root / "suite.yaml").write_text("dataset: {path: cases.jsonl, rev: HEAD}\n")
    pinned = load_suite(root / "suite.yaml")
    assert [c.id for c in pinned.cases] == ["old"] and pinned.dataset == "cases.jsonl@HEAD"
    (root / "now.yaml").write_text("dataset: cases.jsonl\n")
    assert [c.id for c in load_suite(root / "now.yaml").cases] == ["new"]
    (root / "bad.yaml").write_text("dataset: {path: cases.jsonl, revision: HEAD}\n")
    with pytest.raises(InvalidInput, match="rev: ..."):
        load_suite(root / "bad.yaml")
