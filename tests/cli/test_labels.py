"""``loopml labels ingest``: what it kept, what it skipped (by row), --json, and a file
without the required columns as one ``error:`` line."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from click.testing import Result

from loopml.serving import read_feedback
from loopml.workspace import Workspace


def test_ingest_reports_bad_rows_and_unknown_ids(
    workspace: Workspace, invoke: Callable[..., Result], invoke_json: Callable[..., Any]
) -> None:
    (workspace.root / "labels.csv").write_text(
        "request_id,label,time\nr1,1,\n,0,\nr2,0,soon\nr3,1,2026-12-01T09:00:00+01:00\nr1,0,\n"
    )
    result = invoke("labels", "ingest", "labels.csv", "--deployment", "churn")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "Ingested 2 label(s) of 5 row(s) for churn from labels.csv.",
        "1 row(s) repeated a request id; the last one was kept.",
        "2 request id(s) are not in churn's prediction log (kept: they join once their "
        "predictions are logged).",
        "2 bad row(s) skipped:",
        "  row 2: no request_id",
        "  row 3: time 'soon' is not an ISO 8601 time: Invalid isoformat string: 'soon'",
    ]
    feedback = read_feedback(workspace, "churn").set_index("request_id")
    assert feedback.loc["r1", "label"] == "0" and feedback.loc["r3", "label"] == "1"
    done = invoke_json("labels", "ingest", "labels.csv", "--deployment", "churn")
    assert (done["ingested"], done["bad"], done["duplicates"], done["unknown"]) == (2, 2, 1, 2)
    assert done["bad_rows"][0] == {"row": 2, "reason": "no request_id"}


def test_a_file_without_request_ids_is_one_error_line(
    workspace: Workspace,
    invoke: Callable[..., Result],
    error_lines: Callable[[Result], list[str]],
) -> None:
    (workspace.root / "labels.csv").write_text("id,label\nr1,1\n")
    lines = error_lines(invoke("labels", "ingest", "labels.csv", "--deployment", "churn"))
    assert lines == [
        "error: labels.csv has no request_id column: a labels file holds request_id, label "
        "or reward, and optionally time. Its columns: ['id', 'label']."
    ]
    missing = invoke("labels", "ingest", "labels.csv")
    assert missing.exit_code == 2 and "--deployment" in missing.stderr
