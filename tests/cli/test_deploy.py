"""``loopml deploy``: every command, its --json, and bad input as one ``error:`` line."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from click.testing import Result

from loopml.workspace import Workspace


class Constant:
    """A tiny model: predicts ``value`` for every row."""

    def __init__(self, value: int) -> None:
        self.value = value

    def predict(self, rows: Any) -> list[int]:
        return [self.value] * len(rows)


@pytest.fixture
def models(workspace: Workspace) -> Workspace:
    """churn versions 1–4, version 1 in Production."""
    for value in range(4):
        workspace.models.register("churn", Constant(value))
    workspace.models.promote("churn", 1, to="production")
    return workspace


@pytest.fixture
def deployed(models: Workspace, invoke: Callable[..., Result]) -> Workspace:
    created = invoke("deploy", "create", "churn", "--model", "churn@production", "--key", "user")
    assert created.exit_code == 0, created.output
    return models


def ok(result: Result) -> Result:
    assert result.exit_code == 0, (result.output, result.exception)
    return result


@pytest.mark.slow
def test_create_status_list(
    models: Workspace, invoke: Callable[..., Result], invoke_json: Callable[..., Any]
) -> None:
    assert "No deployments yet" in ok(invoke("deploy", "list")).stdout
    created = ok(
        invoke("deploy", "create", "churn", "--model", "churn@production", "--reason", "launch")
    )
    assert created.stdout == "churn: revision 1, single: primary churn@production 100%\n"
    status = invoke_json("deploy", "status", "churn")
    assert status["revision"] == 1 and status["strategy"] == "single"
    assert status["reason"] == "launch" and status["key"] is None
    assert status["variants"] == [
        {"name": "primary", "model": "models:/churn@production", "weight": 100.0, "role": "primary"}
    ]
    shown = ok(invoke("deploy", "status", "churn")).stdout
    assert "churn  revision 1  single" in shown and "launch" in shown
    assert "key: request id" in shown and "churn@production" in shown
    ok(invoke("deploy", "create", "pricing", "--model", "churn/2", "--feature-service", "fs"))
    listed = invoke_json("deploy", "list")
    assert [(x["name"], x["feature_service"]) for x in listed] == [
        ("churn", None),
        ("pricing", "fs"),
    ]
    table = ok(invoke("deploy", "list")).stdout
    assert "pricing" in table and "churn/2 100%" in table


def test_canary_status_and_json(
    deployed: Workspace, invoke: Callable[..., Result], invoke_json: Callable[..., Any]
) -> None:
    started = ok(
        invoke(
            "deploy",
            "canary",
            "churn",
            "--candidate",
            "churn/2",
            "--steps",
            "10,50,100",
            "--step-duration",
            "5m",
            "--min-requests",
            "50",
            "--abort",
            "error_rate > 0.02",
            "--abort",
            "p99_ms > 250",
            "--reason",
            "try v2",
        )
    )
    assert started.stdout == (
        "churn: revision 2, canary at step 1 of 3 (10, 50, 100%): primary churn@production 90%, "
        "canary churn/2 10%\n"
    )
    status = invoke_json("deploy", "status", "churn")
    assert status["settings"] == {
        "steps": [10.0, 50.0, 100.0],
        "step": 0,
        "step_duration_s": 300.0,
        "min_requests": 50,
        "aborts": ["error_rate > 0.02", "p99_ms > 250"],
    }
    assert status["key"] == "user"
    shown = ok(invoke("deploy", "status", "churn")).stdout
    assert "step 1 of 3" in shown and "each step 300s and 50 requests" in shown
    assert "error_rate > 0.02, p99_ms > 250" in shown and "candidate" in shown


@pytest.mark.slow
def test_every_strategy_then_history_and_rollback(
    deployed: Workspace, invoke: Callable[..., Result], invoke_json: Callable[..., Any]
) -> None:
    shadow = ok(invoke("deploy", "shadow", "churn", "--candidate", "churn/2"))
    assert "shadow churn/2 off path" in shadow.stdout
    green = invoke_json("deploy", "blue-green", "churn", "--candidate", "churn/3")
    assert [(v["name"], v["role"]) for v in green["variants"]] == [
        ("blue", "primary"),
        ("green", "standby"),
    ]
    assert "green churn/3 100%" in ok(invoke("deploy", "switch", "churn")).stdout
    back = invoke_json("deploy", "switch", "churn", "--reason", "green slow")
    assert back["reason"] == "green slow" and back["variants"][0]["weight"] == 100.0
    split = invoke_json(
        "deploy",
        "ab",
        "churn",
        "--variant",
        "a=churn/3:30",
        "--variant",
        "b=models:/churn/4:70",
        "--key",
        "account",
        "--metric",
        "value",
    )
    assert [(v["name"], v["model"], v["weight"]) for v in split["variants"]] == [
        ("a", "models:/churn/3", 30.0),
        ("b", "models:/churn/4", 70.0),
    ]
    assert split["key"] == "account" and split["settings"] == {"metric": "value"}
    even = invoke_json("deploy", "ab", "churn", "--variant", "x=churn/1", "--variant", "y=churn/2")
    assert [v["weight"] for v in even["variants"]] == [50.0, 50.0]
    assert even["settings"] == {"metric": "conversion"} and even["key"] == "account"
    challenger = ok(invoke("deploy", "champion-challenger", "churn", "--challenger", "churn/4"))
    assert "challenger churn/4 off path" in challenger.stdout

    history = invoke_json("deploy", "history", "churn")
    assert [h["strategy"] for h in history] == [
        "single",
        "shadow",
        "blue-green",
        "blue-green",
        "blue-green",
        "ab",
        "ab",
        "champion-challenger",
    ]
    assert history[3]["reason"] == "switch to green (models:/churn/3)"
    assert all(h["actor"] and h["created_at"] for h in history)

    rolled = ok(invoke("deploy", "rollback", "churn", "--reason", "challenger crashes"))
    assert rolled.stdout.startswith("churn: revision 9, ab: x churn/1 50%, y churn/2 50%")
    table = ok(invoke("deploy", "history", "churn")).stdout
    assert "challenger crashes" in table and "switch to green" in table
    assert "x churn/1 50%" in table
    # format_time's local time with its UTC offset, to the second
    assert history[0]["created_at"][:4] in table


BAD_INPUT = [
    (("status", "chrun"), ("No deployment 'chrun'", "Did you mean 'churn'?")),
    (("history", "nosuch"), ("No deployment 'nosuch'",)),
    (("rollback", "churn"), ("no earlier revision",)),
    (("create", "churn", "--model", "churn/2"), ("exists",)),
    (("create", "new", "--model", "nosuch@production"), ("nosuch",)),
    (("shadow", "churn", "--candidate", "churn/9"), ("no version 9",)),
    (("canary", "churn", "--candidate", "churn/2", "--steps", "5,x"), ("--steps '5,x'",)),
    (("canary", "churn", "--candidate", "churn/2", "--steps", "5,500"), ("500 not within",)),
    (("canary", "churn", "--candidate", "churn/2", "--step-duration", "soon"), ("soon",)),
    (("canary", "churn", "--candidate", "churn/2", "--abort", "p99 > 3"), ("'p99_ms'",)),
    (("canary", "churn", "--candidate", "churn/2", "--abort", "error_rate ~ 3"), ("'~'",)),
    (("blue-green", "churn", "--candidate", "churn@production"), ("already serves",)),
    (("switch", "churn"), ("not blue-green",)),
    (("ab", "churn", "--variant", "a=churn/2:50", "--variant", "b=churn/3:20"), ("70",)),
    (("ab", "churn", "--variant", "a=churn/2:50", "--variant", "b=churn/3"), ("every",)),
    (("ab", "churn", "--variant", "a=churn/2", "--variant", "a=churn/3"), ("repeat",)),
    (("ab", "churn", "--variant", "churn/2"), ("NAME=MODEL:WEIGHT",)),
    (("champion-challenger", "churn", "--challenger", "nosuch/1"), ("nosuch",)),
]


@pytest.mark.parametrize(
    ("args", "fragments"), BAD_INPUT, ids=[" ".join(args) for args, _ in BAD_INPUT]
)
@pytest.mark.slow
def test_bad_input_is_one_error_line_and_changes_nothing(
    deployed: Workspace,
    invoke: Callable[..., Result],
    error_lines: Callable[[Result], list[str]],
    args: tuple[str, ...],
    fragments: tuple[str, ...],
) -> None:
    lines = error_lines(invoke("deploy", *args))
    assert len(lines) == 1, lines
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert deployed.deployments.revision("churn") == 1


def test_every_command_has_help(invoke: Callable[..., Result]) -> None:
    from loopml.cli.deploy import deploy

    for name, command in deploy.commands.items():
        assert command.help and command.help.strip(), name
        shown = ok(invoke("deploy", name, "--help")).stdout
        assert "Usage: loopml deploy " + name in shown
