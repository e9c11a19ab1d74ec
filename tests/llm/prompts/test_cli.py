"""``loopml prompts …``: register from text, JSON and YAML files, list, show (and --at),
versions, label (protected: --force --reason), rollback, history, diff, render; --json on
listings; bad input as one ``error:`` line."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from loopml.cli.main import cli
from loopml.cli.render import format_time
from loopml.llm.prompts import label_history
from loopml.workspace import Workspace

Invoke = Callable[..., Result]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    ws = Workspace.init(tmp_path / "project")
    with (ws.root / "loopml.toml").open("a") as f:
        f.write('\n[prompts]\nprotected_labels = ["production"]\n')
    ws.close()
    monkeypatch.chdir(ws.root)
    (ws.root / "answer.txt").write_text("Answer briefly: {{ question }}\n")
    (ws.root / "answer.yaml").write_text(
        "template:\n"
        "  - role: system\n"
        "    content: 'Answer from: {{ context }}'\n"
        "  - role: user\n"
        "    content: '{{ question }}'\n"
        "model: gpt-4o-mini\n"
        "params: {temperature: 0}\n"
    )
    (ws.root / "chat.json").write_text(json.dumps([{"role": "user", "content": "Hi {{ name }}"}]))
    yield ws.root


@pytest.fixture
def invoke() -> Invoke:
    def run(*args: str) -> Result:
        return CliRunner().invoke(cli, list(args), prog_name="loopml")

    return run


def _ok(result: Result) -> str:
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout


def _error(result: Result, fragment: str) -> None:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert fragment in result.stderr, result.stderr


def test_register_list_show_versions(project: Path, invoke: Invoke) -> None:
    assert _ok(invoke("prompts", "list")).startswith("No prompts yet: `loopml prompts register")
    out = _ok(invoke("prompts", "register", "support/answer", "--file", "answer.txt", "-m", "v1"))
    assert out.strip() == "Registered support/answer/1 (text; variables: question)"
    again = _ok(invoke("prompts", "register", "support/answer", "-f", "answer.txt"))
    assert "Unchanged: already support/answer/1" in again
    out = _ok(invoke("prompts", "register", "support/answer", "-f", "answer.yaml",
                     "--param", "max_tokens=200"))  # fmt: skip
    assert "support/answer/2 (chat; variables: context, question)" in out
    _ok(invoke("prompts", "register", "greet", "-f", "chat.json"))
    listed = json.loads(_ok(invoke("prompts", "list", "--json")))
    assert [(p["name"], p["versions"]) for p in listed] == [("greet", 1), ("support/answer", 2)]
    assert "support/answer" in _ok(invoke("prompts", "list"))
    shown = json.loads(_ok(invoke("prompts", "show", "support/answer", "--json")))
    assert shown["model"] == "gpt-4o-mini"
    assert shown["params"] == {"temperature": 0, "max_tokens": 200}
    text = _ok(invoke("prompts", "show", "support/answer/2"))
    assert "[system]" in text and "Answer from: {{ context }}" in text
    versions = json.loads(_ok(invoke("prompts", "versions", "support/answer", "--json")))
    assert [(v["version"], v["commit_message"]) for v in versions] == [(1, "v1"), (2, None)]
    assert "v1" in _ok(invoke("prompts", "versions", "support/answer"))


def test_labels_protected_rollback_history_and_time_travel(project: Path, invoke: Invoke) -> None:
    _ok(invoke("prompts", "register", "support/answer", "-f", "answer.txt"))
    _ok(invoke("prompts", "register", "support/answer", "-f", "answer.yaml"))
    assert _ok(invoke("prompts", "label", "support/answer", "staging", "1")).strip() == (
        "support/answer@staging: none → 1"
    )
    _error(invoke("prompts", "label", "support/answer", "production", "1"), "--force --reason")
    _error(invoke("prompts", "label", "support/answer", "production", "1", "--force"),
           "needs a reason")  # fmt: skip
    out = _ok(invoke("prompts", "label", "support/answer", "production", "1", "--force",
                     "--reason", "launch"))  # fmt: skip
    assert "(override)" in out
    time.sleep(1.1)  # --at reads whole seconds
    between = format_time(label_history("support/answer", workspace=project)[-1].created_at)
    time.sleep(1.1)
    _ok(invoke("prompts", "label", "support/answer", "production", "2", "--force", "--reason", "x"))
    then = json.loads(_ok(invoke("prompts", "show", "support/answer@production", "--at",
                                 between, "--json")))  # fmt: skip
    assert then["version"] == 1 and then["labels_at"] == {"production": 1, "staging": 1}
    assert "labels production → 1, staging → 1" in _ok(
        invoke("prompts", "show", "support/answer", "--at", between)
    )
    assert "2 → 1" in _ok(invoke("prompts", "rollback", "support/answer", "production"))
    moves = json.loads(_ok(invoke("prompts", "history", "support/answer", "production", "--json")))
    assert [(m["kind"], m["version"]) for m in moves] == [
        ("override", 1), ("override", 2), ("rollback", 1)
    ]  # fmt: skip
    assert moves[0]["reason"] == "launch" and moves[0]["verdict"]["forced"] is True
    table = _ok(invoke("prompts", "history", "support/answer"))
    assert "override" in table and "FAIL no gate ran — launch" in table


def test_diff_and_render(project: Path, invoke: Invoke) -> None:
    _ok(invoke("prompts", "register", "support/answer", "-f", "answer.txt"))
    (project / "answer.txt").write_text("Answer politely: {{ question }}\n")
    _ok(invoke("prompts", "register", "support/answer", "-f", "answer.txt"))
    out = _ok(invoke("prompts", "diff", "support/answer", "1", "2"))
    assert "-Answer briefly: {{ question }}\n+Answer politely: {{ question }}" in out
    assert "same content" in _ok(invoke("prompts", "diff", "support/answer", "1", "1"))
    rendered = _ok(invoke("prompts", "render", "support/answer/1", "--var", "question=Why?"))
    assert rendered == "Answer briefly: Why?\n\n"
    _ok(invoke("prompts", "register", "rag", "-f", "answer.yaml"))
    (project / "vars.json").write_text(json.dumps({"context": "C", "question": "Q"}))
    data = json.loads(_ok(invoke("prompts", "render", "rag", "--vars-file", "vars.json",
                                 "--var", "question=Q2", "--json")))  # fmt: skip
    assert data["rendered"] == [
        {"role": "system", "content": "Answer from: C"}, {"role": "user", "content": "Q2"}
    ]  # fmt: skip
    assert "[user]\nQ2" in _ok(
        invoke("prompts", "render", "rag", "--var", "context=C", "--var", "question=Q2")
    )


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("register", "bad@name", "-f", "answer.txt"), "Bad prompt name 'bad@name'"),
        (("register", "x", "-f", "nosuch.txt"), "No template file 'nosuch.txt'"),
        (("register", "x", "-f", "broken.txt"), "line 2, character 5 is not closed"),
        (("register", "x", "-f", "broken.json"), "broken.json does not parse"),
        (("register", "x", "-f", "answer.txt", "--param", "nokey"), "--param takes KEY=VALUE"),
        (("show", "support/nosuch"), "No prompt 'support/nosuch'"),
        (("show", "support/answer@prod"), "no label 'prod'"),
        (("show", "support/answer", "--at", "yesterday"), "--at needs an ISO time"),
        (("render", "support/answer", "--var", "q=1"), "Missing variable(s) 'question'"),
        (("render", "support/answer", "--var", "question=1", "--var", "x=2"), "Unknown variable"),
        (("label", "support/answer", "latest", "1"), "'latest' is not a label"),
        (("label", "support/answer", "staging", "7"), "no version 7"),
        (("rollback", "support/answer", "staging"), "points at no version"),
        (("diff", "support/answer", "1", "9"), "no version 9"),
    ],
)
def test_bad_input_is_one_error_line(
    project: Path, invoke: Invoke, args: tuple[str, ...], fragment: str
) -> None:
    (project / "broken.txt").write_text("fine\nbad {{ x\n")
    (project / "broken.json").write_text("[{")
    _ok(invoke("prompts", "register", "support/answer", "-f", "answer.txt"))
    _error(invoke("prompts", *args), fragment)
