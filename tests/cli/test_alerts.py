"""``loopml alerts``: list, ack, evaluate and deliver, their --json, and bad input as one
``error:`` line."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from click.testing import Result
from sqlalchemy import insert

from loopml.monitoring.tables import monitor_metrics, monitor_windows
from loopml.workspace import Workspace

T0 = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp() * 1000)
HOUR = 3_600_000
RULES = """
[[monitor.alerts]]
name = "input drift"
deployment = "churn"
when = "max(psi) > 0.25"
for = 2
severity = "critical"
channels = ["stdout"]

[[monitor.alerts]]
name = "errors"
when = "error_rate > 0.02"
channels = ["webhook:http://127.0.0.1:1/down"]
"""


def window(
    ws: Workspace, deployment: str, index: int, metrics: dict[tuple[str, str], float]
) -> None:
    """A computed window, stored as `loopml monitor run` stores it."""

    def tx(conn: Any) -> None:
        start = T0 + index * HOUR
        key = conn.execute(
            insert(monitor_windows).values(
                deployment=deployment,
                start_at=start,
                end_at=start + HOUR,
                rows=10,
                status="ok",
                computed_at=start + HOUR,
            )
        ).inserted_primary_key
        for (feature, metric), value in metrics.items():
            conn.execute(
                insert(monitor_metrics).values(
                    window_id=key[0], feature=feature, metric=metric, value=value
                )
            )

    ws.db.transact(tx)


@pytest.fixture
def ruled(workspace: Workspace) -> Workspace:
    """The workspace with RULES in its loopml.toml and drift on churn in windows 0 and 1."""
    config = workspace.root / "loopml.toml"
    config.write_text(config.read_text() + RULES)
    for i in range(2):
        window(workspace, "churn", i, {("age", "psi"): 0.4 + i / 10, ("", "error_rate"): 0.0})
    return workspace


def ok(result: Result) -> Result:
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def test_evaluate_list_ack(
    ruled: Workspace, invoke: Callable[..., Result], invoke_json: Callable[..., Any]
) -> None:
    assert "No alerts. Rules are [[monitor.alerts]]" in ok(invoke("alerts", "list")).stdout
    out = ok(invoke("alerts", "evaluate")).stdout.splitlines()
    assert out[0] == "fired: alert 1 firing: input drift on churn, max(psi) > 0.25 (value 0.5)"
    assert out[1].startswith("[CRITICAL] input drift on churn: max(psi) > 0.25 for 2 windows")
    assert out[2] == "1 change; 1 notice delivered."
    assert ok(invoke("alerts", "evaluate")).stdout == "No change.\n"

    listed = ok(invoke("alerts", "list")).stdout
    assert "input drift" in listed and "firing" in listed and "critical" in listed
    (alert,) = invoke_json("alerts", "list")
    assert alert["id"] == 1 and alert["status"] == "firing" and alert["value"] == 0.5
    assert alert["window_end"] == "2026-11-01T02:00:00+00:00"
    assert datetime.fromisoformat(alert["fired_at"]).utcoffset() is not None
    assert invoke_json("alerts", "list", "--deployment", "fraud") == []
    assert len(invoke_json("alerts", "list", "--open", "--since", "1h")) == 1
    assert invoke_json("alerts", "list", "--since", "2999-01-01T00:00:00+00:00") == []

    acked = ok(invoke("alerts", "ack", "1", "--by", "ana")).stdout
    assert acked.startswith("alert 1 acked: input drift on churn, max(psi) > 0.25 (value 0.5)")
    assert "acknowledged by ana at " in acked
    assert invoke_json("alerts", "ack", "1")["acked_by"] == "ana"

    window(ruled, "churn", 2, {("age", "psi"): 0.1})
    changes = invoke_json("alerts", "evaluate", "churn")
    assert [c["kind"] for c in changes["changes"]] == ["resolved"]
    assert changes["changes"][0]["window_start"] == "2026-11-01T02:00:00+00:00"
    assert changes["delivered"] == 1
    assert invoke_json("alerts", "list", "--open") == []


@pytest.mark.slow  # two rounds of three attempts with the real backoff
def test_undelivered_notices_are_an_error_until_delivered(
    ruled: Workspace, invoke: Callable[..., Result]
) -> None:
    window(ruled, "fraud", 0, {("", "error_rate"): 0.5})
    ok(invoke("alerts", "evaluate", "fraud", "--no-deliver"))
    result = invoke("alerts", "deliver")
    assert result.exit_code == 1 and result.stdout == "0 notices delivered.\n"
    (line,) = result.stderr.splitlines()
    assert line.startswith(
        "error: 1 notice not delivered yet (alert 1 fired to webhook:http://127.0.0.1:1/down:"
    )
    assert line.endswith("retried by the next `loopml alerts deliver` or `loopml monitor run`.")
    as_json = invoke("alerts", "deliver", "--json")
    body = json.loads(as_json.stdout)
    assert body["delivered"] == 0 and body["undelivered"][0]["attempts"] == 6


def test_bad_input_is_one_error_line(
    workspace: Workspace, invoke: Callable[..., Result], error_lines: Callable[[Result], list[str]]
) -> None:
    assert error_lines(invoke("alerts", "ack", "7")) == [
        "error: No alert 7: `loopml alerts list` shows the alerts and their ids."
    ]
    assert error_lines(invoke("alerts", "list", "--since", "last week"))[0] == (
        "error: --since 'last week': use a duration back from now (6h, 7d) or an ISO time "
        "like 2026-11-30T16:32:07-05:00."
    )
    assert error_lines(invoke("alerts", "evaluate"))[0].startswith(
        "error: No alert rules: add [[monitor.alerts]] tables to loopml.toml"
    )
    config = workspace.root / "loopml.toml"
    config.write_text(config.read_text() + RULES.replace("for = 2", "for = 0"))
    (line,) = error_lines(invoke("alerts", "list"))
    assert line.endswith(
        'loopml.toml [[monitor.alerts]] #1 "input drift": for = 0: the number of consecutive '
        "windows must be a whole number, at least 1."
    )
