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
    unknown = invoke("deploy", "create", "pricing", "--model", "churn/2", "--feature-service", "fs")
    assert unknown.exit_code == 1 and "No feature definitions: features.py" in unknown.stderr
    ok(invoke("deploy", "create", "pricing", "--model", "churn/2"))
    listed = invoke_json("deploy", "list")
    assert [(x["name"], x["feature_service"]) for x in listed] == [
        ("churn", None),
        ("pricing", None),
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


def log_outcomes(
    ws: Workspace,
    name: str,
    rows: list[tuple[str, str, bool, Any]],
    outcomes: dict[str, Any],
    *,
    reward: bool = True,
) -> None:
    """Log ``(request_id, variant, shadow, prediction)`` rows of deployment ``name``'s
    current revision, and feedback (rewards, or labels) for ``outcomes``."""
    from datetime import timedelta

    from loopml.serving.log import PredictionLogger, to_json

    current = ws.deployments.get(name)
    assert current.created_at is not None
    logger = PredictionLogger(ws.blobs)
    for i, (request_id, variant, shadow, prediction) in enumerate(rows):
        logger.log(
            {
                "request_id": request_id,
                "time": current.created_at + timedelta(milliseconds=i + 1),
                "deployment": name,
                "revision": current.revision,
                "model": current.variant(variant).model.removeprefix("models:/"),
                "variant": variant,
                "shadow": shadow,
                "inputs": to_json([{"x": 1}]),
                "outputs": to_json([prediction]),
                "latency_ms": 1.0,
                "error": None,
            }
        )
    for request_id, value in outcomes.items():
        logger.feedback(
            {
                "request_id": request_id,
                "time": current.created_at + timedelta(minutes=1),
                "deployment": name,
                "label": None if reward else to_json(value),
                "reward": float(value) if reward else None,
            }
        )
    logger.close()


@pytest.mark.slow
def test_report_of_an_ab_test_as_text_and_json(
    deployed: Workspace, invoke: Callable[..., Result], invoke_json: Callable[..., Any]
) -> None:
    ws = deployed
    ok(invoke("deploy", "ab", "churn", "--variant", "a=churn/2:50", "--variant", "b=churn/3:50"))
    empty = ok(invoke("deploy", "report", "churn")).stdout
    assert "churn: A/B test" in empty and "not enough data" in empty
    rows = [(f"{v}{i}", v, False, 1) for i in range(400) for v in "ab"]
    # a converts 1 in 10, b 1 in 4.
    outcomes = {f"a{i}": int(i % 10 == 0) for i in range(400)}
    outcomes |= {f"b{i}": int(i % 4 == 0) for i in range(400)}
    log_outcomes(ws, "churn", rows, outcomes)
    text = ok(invoke("deploy", "report", "churn", "--mde", "0.05")).stdout
    assert "metric conversion" in text and "b vs a: better" in text
    assert "two-proportion z-test" in text and "planned sample:" in text
    data = invoke_json("deploy", "report", "churn", "--mde", "0.05", "--alpha", "0.01")
    assert data["strategy"] == "ab" and data["alpha"] == 0.01 and data["mde"] == 0.05
    assert [(v["name"], v["outcomes"], v["mean"]) for v in data["variants"]] == [
        ("a", 400, 0.1),
        ("b", 400, 0.25),
    ]
    [comparison] = data["comparisons"]
    assert comparison["verdict"] == "better" and comparison["test"]["difference"] == 0.15
    assert data["recommendation"] == "decided"
    # A window that ends before the first request holds none of them.
    early = invoke_json("deploy", "report", "churn", "--until", "2000-01-01T00:00:00Z")
    assert [v["requests"] for v in early["variants"]] == [0, 0]
    assert early["recommendation"] == "not enough data"
    recent = invoke_json("deploy", "report", "churn", "--since", "1h")
    assert [v["requests"] for v in recent["variants"]] == [400, 400]


def test_report_and_promote_a_better_challenger(
    deployed: Workspace, invoke: Callable[..., Result], invoke_json: Callable[..., Any]
) -> None:
    ws = deployed
    ok(invoke("deploy", "champion-challenger", "churn", "--challenger", "churn/4"))
    rows = [(f"r{i}", "champion", False, i % 2) for i in range(120)]
    rows += [(f"r{i}", "challenger", True, 1) for i in range(120)]
    log_outcomes(ws, "churn", rows, {f"r{i}": 1 for i in range(120)}, reward=False)
    data = invoke_json("deploy", "report", "churn")
    assert data["strategy"] == "champion-challenger" and data["metric"] == "accuracy"
    assert data["recommendation"] == "promote"
    assert [v["mean"] for v in data["variants"]] == [0.5, 1.0]
    text = ok(invoke("deploy", "report", "churn")).stdout
    assert "champion/challenger" in text and "McNemar's test" in text
    assert "promote: the challenger churn/4" in text
    promoted = ok(invoke("deploy", "promote-challenger", "churn", "--reason", "wins live"))
    # The champion followed churn@production: the deployment keeps following it, and the
    # gate moved the alias to the challenger.
    assert promoted.stdout.startswith("churn: revision 3, single: primary churn@production 100%")
    assert ws.models.get("models:/churn@production").version == 4
    assert "wins live" in (ws.deployments.get("churn").reason or "")


REPORT_BAD_INPUT = [
    (("report", "churn"), "runs single"),
    (("report", "nosuch"), "No deployment 'nosuch'"),
    (("promote-challenger", "churn"), "not champion-challenger"),
    (("ab-report", "--mde", "-1"), "Minimum detectable effect -1.0: a positive number"),
    (("ab-report", "--mde", "big"), "--mde 'big' is not a number"),
    (("ab-report", "--alpha", "2"), "alpha 2.0"),
    (("ab-report", "--power", "1"), "power 1.0"),
    (("ab-report", "--since", "last week"), "--since 'last week'"),
    (("ab-report", "--metric", "accuracy"), "does not apply to an A/B test"),
    (("cc-promote",), "not 'promote'"),
]


@pytest.mark.slow
def test_report_bad_input_is_one_error_line(
    deployed: Workspace,
    invoke: Callable[..., Result],
    error_lines: Callable[[Result], list[str]],
) -> None:
    for args, fragment in REPORT_BAD_INPUT:
        if args[0] == "ab-report":
            deployed.deployments.ab("churn", {"a": ("churn/2", 50), "b": ("churn/3", 50)})
            args = ("report", "churn", *args[1:])
        elif args[0] == "cc-promote":
            deployed.deployments.champion_challenger("churn", "churn/4")
            args = ("promote-challenger", "churn")
        revision = deployed.deployments.revision("churn")
        lines = error_lines(invoke("deploy", *args))
        assert len(lines) == 1, (args, lines)
        assert fragment in lines[0], (args, fragment, lines[0])
        assert deployed.deployments.revision("churn") == revision
        deployed.deployments.single("churn", "churn@production")
