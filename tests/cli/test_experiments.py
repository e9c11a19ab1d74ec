"""`loopml experiments`: list and rename."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from click.testing import Result

from loopml.workspace import Workspace

Invoke = Callable[..., Result]


def test_list_table_and_json(
    invoke: Invoke, invoke_json: Callable[..., Any], make_run: Callable[..., str]
) -> None:
    make_run("churn")
    make_run("churn")
    make_run("ranking")
    out = invoke("experiments", "list").stdout
    assert "churn" in out and "ranking" in out
    listed = invoke_json("experiments", "list")
    assert [(e["name"], e["run_count"]) for e in listed] == [("churn", 2), ("ranking", 1)]
    assert isinstance(listed[0]["id"], int) and listed[0]["created_at"].endswith("+00:00")
    assert listed[0]["description"] is None


def test_list_when_empty(
    invoke: Invoke, invoke_json: Callable[..., Any], workspace: Workspace
) -> None:
    assert "No experiments yet" in invoke("experiments", "list").stdout
    assert invoke_json("experiments", "list") == []


def test_rename_by_name_and_by_id(
    invoke: Invoke, invoke_json: Callable[..., Any], make_run: Callable[..., str]
) -> None:
    run_id = make_run("churn")
    result = invoke("experiments", "rename", "churn", "churn-v2")
    assert result.exit_code == 0
    assert "'churn' to 'churn-v2'" in result.stdout
    exp_id = invoke_json("experiments", "list")[0]["id"]
    assert invoke("experiments", "rename", str(exp_id), "churn-v3").exit_code == 0
    assert invoke_json("runs", "show", run_id)["experiment"] == "churn-v3"
    same = invoke("experiments", "rename", "churn-v3", "churn-v3")  # it said "'churn-v3' exists"
    assert same.exit_code == 0 and "to 'churn-v3'" in same.stdout
    assert invoke_json("runs", "show", run_id)["experiment"] == "churn-v3"


def test_rename_errors(
    invoke: Invoke, error_lines: Callable[[Result], list[str]], make_run: Callable[..., str]
) -> None:
    make_run("churn")
    make_run("ranking")
    (line,) = error_lines(invoke("experiments", "rename", "nope", "x"))
    assert "nope" in line and "churn" in line  # names the known experiments
    (line,) = error_lines(invoke("experiments", "rename", "churn", "ranking"))
    assert "exists" in line
