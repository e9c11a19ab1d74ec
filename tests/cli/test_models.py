"""``loopml models``: the registry from the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from click.testing import Result
from sklearn.datasets import make_classification
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression

from loopml.workspace import Workspace


@pytest.fixture
def two_versions(workspace: Workspace) -> Workspace:
    x, y = make_classification(n_samples=400, n_features=4, random_state=1)
    frame = pd.DataFrame(x, columns=["a", "b", "c", "d"])
    frame.iloc[300:].assign(label=y[300:]).to_csv(workspace.root / "holdout.csv", index=False)
    with (workspace.root / "loopml.toml").open("a") as fh:
        fh.write(
            '\n[gates.churn]\nmetric = "accuracy"\nholdout = "holdout.csv"\nlabel = "label"\n'
            "margin = 0.01\n"
        )
    ws = Workspace.open(workspace.root)
    with ws.start_run(experiment="churn") as run:
        run.log_param("C", 1.0)
        ws.register_model(
            "churn", LogisticRegression().fit(frame[:300], y[:300]), input_example=frame.head()
        )
    ws.register_model(
        "churn", DummyClassifier().fit(frame[:300], y[:300]), input_example=frame.head()
    )
    ws.close()
    return workspace


@pytest.mark.slow
def test_list_versions_show(two_versions: Workspace, invoke_json: Callable[..., Any]) -> None:
    (model,) = invoke_json("models", "list")
    assert model["name"] == "churn" and model["versions"] == 2 and model["production"] is None
    versions = invoke_json("models", "versions", "churn")
    assert [v["version"] for v in versions] == [1, 2]
    shown = invoke_json("models", "show", "churn/1")
    assert shown["stage"] == "None" and shown["signature"]["inputs"][0]["name"] == "a"


@pytest.mark.slow
def test_gate_from_config_blocks_and_passes(
    two_versions: Workspace, invoke: Callable[..., Result], invoke_json: Callable[..., Any]
) -> None:
    ok = invoke("models", "promote", "churn", "1")
    assert ok.exit_code == 0, ok.output
    assert "PASS" in ok.stdout and "now in Production" in ok.stdout
    dry = invoke("models", "promote", "churn", "2", "--dry-run")
    assert dry.exit_code == 1 and "beats_champion" in dry.stdout and "FAIL" in dry.stdout
    assert dry.stderr == "error: The gate would block churn/2; nothing was moved.\n"
    assert [e["kind"] for e in invoke_json("models", "history", "churn")].count("gate") == 1
    assert invoke_json("models", "promote", "churn", "1", "--dry-run")["passed"] is True
    both = invoke("models", "promote", "churn", "2", "--dry-run", "--force")
    assert both.exit_code == 1 and "leave out --force" in both.stderr
    blocked = invoke("models", "promote", "churn", "2")
    assert blocked.exit_code == 1
    assert "beats_champion" in blocked.stdout and "FAIL" in blocked.stdout
    assert blocked.stderr.startswith("error: Promotion of churn/2 blocked")
    assert "Traceback" not in blocked.output
    assert invoke_json("models", "show", "churn@production")["version"] == 1
    forced = invoke("models", "promote", "churn", "2", "--force")
    assert forced.exit_code == 1 and "needs a reason" in forced.stderr
    forced = invoke("models", "promote", "churn", "2", "--force", "--reason", "incident 7")
    assert forced.exit_code == 0, forced.output
    assert invoke_json("models", "show", "churn@production")["version"] == 2
    back = invoke("models", "rollback", "churn", "--reason", "regression")
    assert back.exit_code == 0 and "churn/1" in back.stdout
    history = invoke_json("models", "history", "churn")
    assert [e["kind"] for e in history].count("gate") == 3
    assert any(e["kind"] == "override" and e["reason"] == "incident 7" for e in history)
    text = invoke("models", "history", "churn")
    assert "rollback" in text.stdout and "regression" in text.stdout


@pytest.mark.slow
def test_time_travel_alias_and_lineage(
    two_versions: Workspace, invoke: Callable[..., Result], invoke_json: Callable[..., Any]
) -> None:
    before = datetime.now(UTC).isoformat()
    assert invoke("models", "promote", "churn", "1").exit_code == 0
    then = invoke_json("models", "show", "churn", "--at", before)
    assert then["production"] is None
    now = invoke_json("models", "show", "churn", "--at", datetime.now(UTC).isoformat())
    assert now["production"] == 1
    assert invoke("models", "alias", "set", "churn", "champion", "1").exit_code == 0
    assert invoke_json("models", "show", "churn@champion")["version"] == 1
    chain = invoke_json("models", "lineage", "churn@production")
    assert chain["run"]["params"] == {"C": "1.0"} and chain["gate"]["passed"]
    assert chain["promotions"][0]["stage"] == "Production"
    tree = invoke("models", "lineage", "models:/churn@production")
    assert "params: C=1.0" in tree.stdout and "gate: PASS" in tree.stdout
    assert invoke("models", "alias", "delete", "churn", "champion").exit_code == 0
    missing = invoke("models", "show", "churn@champion")
    assert missing.exit_code == 1 and "no alias or stage 'champion'" in missing.stderr
    bad = invoke("models", "show", "churn", "--at", "yesterday")
    assert bad.exit_code == 1 and "ISO time" in bad.stderr


def test_approval_flow(two_versions: Workspace, invoke: Callable[..., Result]) -> None:
    toml = two_versions.root / "loopml.toml"
    toml.write_text(toml.read_text() + "require_approval = true\n")
    waiting = invoke("models", "promote", "churn", "1")
    assert waiting.exit_code == 1 and "awaits approval" in waiting.stderr
    approved = invoke("models", "approve", "churn", "1", "--reason", "reviewed")
    assert approved.exit_code == 0 and "Production" in approved.stdout


def test_unknown_model(workspace: Workspace, invoke: Callable[..., Result]) -> None:
    result = invoke("models", "versions", "ghost")
    assert result.exit_code == 1 and result.stderr.startswith("error: No registered model")
    json_result = invoke("models", "list", "--json")
    assert json.loads(json_result.stdout) == []


def _console_script() -> list[str]:
    """The installed ``loopml`` command: its sys.path[0] is the virtualenv's bin folder, not
    the current directory (``python -m`` would hide an import that only works from there)."""
    loopml = Path(sys.executable).with_name("loopml")
    return [str(loopml)] if loopml.exists() else [sys.executable, "-m", "loopml.cli"]


def _loopml(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_console_script(), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore", "COLUMNS": "200", **env},
        timeout=120,
        check=False,
    )


def _set_gate(ws: Workspace, body: str) -> None:
    toml = ws.root / "loopml.toml"
    text_ = toml.read_text()
    text_ = text_[: text_.index("[gates.churn]")] if "[gates.churn]" in text_ else text_
    toml.write_text(text_ + "[gates.churn]\n" + textwrap.dedent(body))


@pytest.mark.parametrize(
    ("gate", "expected"),
    [
        ('holdout = "empty.csv"\nlabel = "label"\n', "empty.csv is empty"),
        ('holdout = 42\nlabel = "label"\n', "[gates.churn]: holdout must be a non-empty string"),
        ('holdout = "holdout.csv"\nlabel = "churned"\n', "no label column 'churned'"),
        ('holdout = "missing.csv"\nlabel = "label"\n', "missing.csv does not exist"),
        ('holdout = "holdout.csv"\nlabel = "label"\nmin_score = "high"\n', "min_score must be"),
        ('holdout = "holdout.csv"\nlabel = "label"\nmargin = -1\n', "margin must be at least 0"),
    ],
)
@pytest.mark.slow
def test_an_unusable_gate_is_one_error_line(
    two_versions: Workspace,
    invoke: Callable[..., Result],
    invoke_json: Callable[..., Any],
    error_lines: Callable[[Result], list[str]],
    gate: str,
    expected: str,
) -> None:
    (two_versions.root / "empty.csv").write_bytes(b"")
    _set_gate(two_versions, gate)
    lines = error_lines(invoke("models", "promote", "churn", "1"))
    assert len(lines) == 1 and expected in lines[0], lines
    assert invoke_json("models", "show", "churn/1")["stage"] == "None"  # nothing moved
    assert "gate" not in [e["kind"] for e in invoke_json("models", "history", "churn")]


@pytest.mark.slow
def test_tables_show_stages_and_aliases_as_words(
    two_versions: Workspace, invoke: Callable[..., Result]
) -> None:
    assert invoke("models", "alias", "set", "churn", "champion", "1").exit_code == 0
    assert invoke("models", "alias", "set", "churn", "production-candidate", "1").exit_code == 0
    listed = invoke("models", "list").stdout
    assert "champion → 1, production-candidate → 1" in listed and "{" not in listed
    versions = invoke("models", "versions", "churn").stdout
    assert "None" not in versions
    assert "champion, production-candidate" in versions
    shown = invoke("models", "show", "churn/2").stdout
    assert "None" not in shown and "no stage" in shown
    at = invoke("models", "show", "churn", "--at", datetime.now(UTC).isoformat()).stdout
    assert "aliases = champion → 1, production-candidate → 1" in at and "{" not in at
    assert "Staging = none" in at
    assert invoke("models", "promote", "churn", "2", "--to", "staging").exit_code == 0
    at = invoke("models", "show", "churn", "--at", datetime.now(UTC).isoformat()).stdout
    assert "Staging = 2;" in at and "[" not in at
    lineage = invoke("models", "lineage", "churn/1").stdout
    assert "(no stage, sklearn)" in lineage


@pytest.mark.slow
def test_a_model_without_a_gate_is_promoted_with_one_warning_line(
    two_versions: Workspace,
    invoke: Callable[..., Result],
    error_lines: Callable[[Result], list[str]],
) -> None:
    config = two_versions.root / "loopml.toml"
    config.write_text(config.read_text().replace("[gates.churn]", "[gates.chrun]"))  # a typo
    promoted = invoke("models", "promote", "churn", "1")
    assert promoted.exit_code == 0, promoted.output
    assert promoted.stderr.splitlines() == [
        "warning: No gate is configured for 'churn': only the signature is checked. Add "
        "[gates.churn] to loopml.toml (metric, holdout, label) to score candidates against the "
        "champion ([gates.chrun] names no registered model: a typo for churn?)."
    ]
    assert "No checks ran" in promoted.stdout and "Check" not in promoted.stdout
    (again,) = error_lines(invoke("models", "promote", "churn", "1"))
    assert again == "error: churn/1 is already in Production: nothing to promote."
    (at,) = error_lines(invoke("models", "show", "churn/1", "--at", "2026-01-01"))
    assert "give the model's name alone (churn), not churn/1" in at


def test_history_stays_legible_in_80_columns(
    two_versions: Workspace, invoke: Callable[..., Result]
) -> None:
    """Times carry their offset now; the event, target and time must still not be cut."""
    assert invoke("models", "promote", "churn", "1").exit_code == 0
    shown = invoke("models", "history", "churn", env={"COLUMNS": "80"}).stdout
    assert max(len(line) for line in shown.splitlines()) <= 80
    rows = shown.split("─\n", 1)[1]  # below the header rule
    assert "registered" in rows and "Production" in rows and "…" not in rows


def test_missing_model_files_message_has_one_full_stop(
    two_versions: Workspace, invoke: Callable[..., Result], error_lines: Callable[..., list[str]]
) -> None:
    ws = Workspace.open(two_versions.root)
    ws.blobs.delete(ws.get_model_version("models:/churn/1").digest)
    ws.close()
    (line,) = error_lines(invoke("models", "promote", "churn", "1"))
    assert "missing or corrupted" in line and ".)" not in line and ".." not in line


@pytest.mark.slow
def test_a_time_copied_from_history_answers_in_another_time_zone(two_versions: Workspace) -> None:
    new_york = {"TZ": "America/New_York"}
    promoted = _loopml("models", "promote", "churn", "1", cwd=two_versions.root, **new_york)
    assert promoted.returncode == 0, promoted.stderr
    history = _loopml("models", "history", "churn", cwd=two_versions.root, **new_york)
    assert history.returncode == 0, history.stderr
    row = next(line for line in history.stdout.splitlines() if " stage " in line)
    when = row.split()[0]  # one word, as printed: 2026-11-30T16:32:07-05:00
    assert when[-6:] in {"-05:00", "-04:00"}, row
    for copied in (when, when[:-6]):  # with its offset, and without (= local time)
        shown = _loopml(
            "models", "show", "churn", "--at", copied, cwd=two_versions.root, **new_york
        )
        assert shown.returncode == 0, shown.stderr
        assert "Production = 1;" in shown.stdout, (copied, shown.stdout)
        assert when in shown.stdout  # the answer states the time the way history does
    helped = _loopml("models", "show", "--help", cwd=two_versions.root)
    assert "without an offset it is local time" in " ".join(helped.stdout.split())


@pytest.mark.slow
def test_a_check_module_at_the_workspace_root_works_from_a_subfolder(
    two_versions: Workspace,
) -> None:
    (two_versions.root / "root_checks_cli.py").write_text(
        textwrap.dedent(
            """
            def sane(model, holdout):
                return True, {"rows": len(holdout)}
            """
        )
    )
    _set_gate(
        two_versions,
        'holdout = "holdout.csv"\nlabel = "label"\nchecks = ["root_checks_cli:sane"]\n',
    )
    sub = two_versions.root / "notebooks" / "deep"
    sub.mkdir(parents=True)
    done = _loopml("models", "promote", "churn", "1", "--json", cwd=sub)
    assert done.returncode == 0, done.stderr
    verdict = json.loads(done.stdout)
    check = {c["name"]: c for c in verdict["checks"]}["check:root_checks_cli:sane"]
    assert check["passed"] and check["details"] == {"rows": 100}
