"""``loopml monitor set-reference | run | show``: output, --json, warnings on stderr, and bad
input as one ``error:`` line."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from loopml.cli.main import cli
from loopml.monitoring.windows import align
from loopml.workspace import Workspace
from monitoring.traffic import classifier, deploy, features, log

HOUR = timedelta(hours=1)
parse = datetime.fromisoformat


def ok(result: Result) -> Result:
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def one_error_line(*args: str) -> str:
    """Run the CLI as a user meets it; assert one ``error:`` line and return it."""
    result = CliRunner().invoke(cli, list(args), prog_name="loopml")
    assert result.exit_code == 1, (result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.fixture
def traffic(workspace: Workspace) -> datetime:
    """churn/1 deployed as ``churn`` (no reference yet); 60 requests logged three hours ago
    and 60 with x shifted two hours ago. The first hour."""
    deploy(workspace, reference=False)
    first = align(datetime.now(UTC) - 3 * HOUR, HOUR)
    log(workspace, features(60, seed=40), start=first)
    log(workspace, features(60, seed=41, shift=3.0), start=first + HOUR, prefix="d")
    return first


@pytest.mark.slow
def test_set_reference_run_and_show(
    workspace: Workspace,
    traffic: datetime,
    tmp_path: Path,
    invoke: Callable[..., Result],
    invoke_json: Callable[..., Any],
) -> None:
    _, train = classifier()
    data = tmp_path / "train.parquet"
    train.to_parquet(data)
    said = ok(invoke("monitor", "set-reference", "churn/1", "--data", str(data))).stdout
    assert said.startswith("churn/1: reference of 2,000 rows, 3 feature(s), and its predictions")
    stored = invoke_json("monitor", "set-reference", "churn", "--data", str(data))
    assert stored["model"] == "churn" and stored["version"] == 1
    assert stored["features"] == ["x", "z", "c"] and stored["predictions"] is True

    shown = ok(invoke("monitor", "run", "churn"))
    assert "3 window(s) computed, 1 empty (no traffic)." in shown.stdout
    assert "x " in shown.stdout  # the worst PSI column names the shifted feature
    assert ok(invoke("monitor", "run", "churn")).stdout == "churn: no closed window to compute.\n"

    windows = invoke_json("monitor", "run", "churn", "--since", "3h")
    assert [w["status"] for w in windows] == ["ok", "ok", "empty"]
    assert windows[1]["metrics"]["x"]["psi"] > 0.25 > windows[0]["metrics"]["x"]["psi"]
    assert windows[0]["start"] == traffic.isoformat()
    assert windows[2]["metrics"] == {"": {"rows": 0.0}}

    table = ok(invoke("monitor", "show", "churn")).stdout
    assert "error_rate" in table and "churn/1" in table and "empty" in table
    psi = ok(invoke("monitor", "show", "churn", "--metric", "psi", "--feature", "x")).stdout
    assert psi.count(" x ") == 2
    series = invoke_json("monitor", "show", "churn", "--metric", "p99_ms")
    assert [row["feature"] for row in series] == ["", ""]
    assert all(row["value"] > 0 and row["model"] == "churn/1" for row in series)
    # a known metric with no values yet is not an error; an unknown one is
    nothing = ok(invoke("monitor", "show", "churn", "--metric", "accuracy")).stdout
    assert nothing == "churn: no stored values of accuracy.\n"
    unknown = one_error_line("monitor", "show", "churn", "--metric", "p99")
    assert unknown.startswith("error: Unknown metric 'p99'. Did you mean 'p99_ms'? churn's ")
    assert "windows have " in unknown and "error_rate" in unknown and "psi" in unknown

    # another window length would overlap the hourly windows: refused, the store unchanged
    refused = one_error_line("monitor", "run", "churn", "--window", "7m")
    assert "The stored windows of 'churn' are 1h long, not 7m" in refused
    assert "--restart" in refused
    assert len(invoke_json("monitor", "show", "churn", "--metric", "rows")) == 3
    restarted = invoke_json("monitor", "run", "churn", "--window", "30m", "--restart")
    assert restarted[0]["start"] == traffic.isoformat() and len(restarted) >= 6
    half = timedelta(minutes=30)
    assert all(parse(w["end"]) - parse(w["start"]) == half for w in restarted)
    stored = invoke_json("monitor", "show", "churn", "--metric", "rows")
    assert [row["start"] for row in stored] == [w["start"] for w in restarted]


@pytest.mark.slow
def test_warnings_go_to_stderr(traffic: datetime) -> None:
    result = CliRunner().invoke(cli, ["monitor", "run", "churn"], prog_name="loopml")
    assert result.exit_code == 0, result.output
    assert "no reference profile for churn/1" in result.stderr
    assert "no reference" not in result.stdout


def test_show_before_any_run(workspace: Workspace, invoke: Callable[..., Result]) -> None:
    said = ok(invoke("monitor", "show", "churn")).stdout
    assert said == "churn: no computed windows yet; compute them with `loopml monitor run churn`.\n"
    assert json.loads(ok(invoke("monitor", "show", "churn", "--json")).stdout) == []


def test_bad_input_is_one_error_line(workspace: Workspace) -> None:
    assert "nosuch" in one_error_line("monitor", "run", "nosuch")
    assert "whole minutes" in one_error_line("monitor", "run", "nosuch", "--window", "90s")
    zero = one_error_line("monitor", "run", "nosuch", "--window", "0s")
    assert "'0s' is a duration of zero: it must be positive" in zero
    assert "not a duration" not in zero
    unknown = one_error_line("monitor", "show", "churn", "--metric", "nosuch")
    assert "Unknown metric 'nosuch'" in unknown and "churn has no stored window yet" in unknown
    assert "p99_ms" in unknown
    assert "--since" in one_error_line("monitor", "run", "nosuch", "--since", "yesterday")
    assert "nosuch" in one_error_line("monitor", "set-reference", "nosuch", "--data", __file__)
