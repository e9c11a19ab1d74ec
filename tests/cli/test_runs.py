"""`loopml runs`: list, show, artifacts, delete/restore, compare, and RUN prefixes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

import loopml.tracking.api
from loopml.workspace import Workspace

Invoke = Callable[..., Result]


def header_keys(out: str) -> list[str]:
    """The column names of ``runs list``'s table: its two header lines put a key's section
    ("metrics") over its name ("acc"), aligned to the column's left or right edge."""
    top, bottom = out.splitlines()[:2]
    sections = [(m.start(), m.end(), m.group()) for m in re.finditer(r"\S+", top)]
    keys = []
    for m in re.finditer(r"\S+", bottom):
        over = [s for start, end, s in sections if start == m.start() or end == m.end()]
        keys.append(f"{over[0]}.{m.group()}" if over else m.group())
    return keys


@pytest.fixture
def three_runs(make_run: Callable[..., str]) -> list[str]:
    """Three finished runs of 'churn' (oldest first) and one failed run of 'ranking'."""
    return [
        make_run(
            name="rf-shallow",
            params={"model": "rf", "depth": 3, "lr": 0.1},
            metrics={"acc": 0.81, "loss": 0.6},
            tags={"team": "growth"},
        ),
        make_run(
            name="rf-deep",
            params={"model": "rf", "depth": 9, "lr": 0.1},
            metrics={"acc": 0.93, "loss": 0.2},
            tags={"team": "growth"},
        ),
        make_run(
            name="gbm",
            params={"model": "gbm", "depth": 6, "lr": 0.05},
            metrics={"acc": 0.88, "loss": 0.3},
        ),
        make_run(experiment="ranking", name="broken", params={"model": "nn"}, fail=True),
    ]


# -- list -------------------------------------------------------------------------------------


def test_list_table_shows_short_ids_info_and_relevant_columns(
    invoke: Invoke, three_runs: list[str]
) -> None:
    result = invoke("runs", "list")
    assert result.exit_code == 0, result.output
    out = result.stdout
    for run_id in three_runs:
        assert run_id[:8] in out
        assert run_id not in out  # full ids only in JSON
    for word in ("rf-shallow", "rf-deep", "gbm", "broken", "churn", "ranking"):
        assert word in out
    assert "FINISHED" in out and "FAILED" in out
    header = header_keys(out)
    assert header[:6] == ["Run", "Name", "Experiment", "Status", "Started", "Duration"]
    # Metrics first, then the params whose values differ; a constant param is left out
    # only when there are more params than room (here all three fit).
    assert header[6:8] == ["metrics.acc", "metrics.loss"]
    assert set(header[8:]) == {"params.depth", "params.lr", "params.model"}
    rows = [line for line in out.splitlines() if "rf-deep" in line]
    assert "0.93" in rows[0] and "0.2" in rows[0]
    # Newest first.
    assert out.index("broken") < out.index("gbm") < out.index("rf-deep") < out.index("rf-shallow")


def test_list_json_has_full_ids_and_every_param_metric_and_tag(
    invoke_json: Callable[..., Any], three_runs: list[str]
) -> None:
    runs = invoke_json("runs", "list")
    assert [r["run_id"] for r in runs] == three_runs[::-1]
    deep = next(r for r in runs if r["name"] == "rf-deep")
    assert deep["experiment"] == "churn"
    assert deep["status"] == "FINISHED"
    assert deep["params"] == {"model": "rf", "depth": "9", "lr": "0.1"}
    assert deep["metrics"] == {"acc": 0.93, "loss": 0.2}
    assert deep["tags"] == {"team": "growth"}
    assert deep["deleted"] is False
    assert deep["duration"] >= 0
    assert deep["start_time"].endswith("+00:00")
    broken = runs[0]
    assert broken["status"] == "FAILED" and broken["metrics"] == {}


def test_list_json_is_strict_for_nan_and_infinity(
    invoke: Invoke, make_run: Callable[..., str]
) -> None:
    make_run(metrics={"nan": float("nan"), "inf": float("inf"), "ninf": float("-inf")})
    make_run(metrics={"other": 1.0})
    result = invoke("runs", "list", "--json")
    assert "NaN" not in result.stdout
    import json

    other, run = json.loads(result.stdout)
    # A metric logged as NaN is null; one never logged is absent, not null.
    assert run["metrics"] == {"nan": None, "inf": "Infinity", "ninf": "-Infinity"}
    assert other["metrics"] == {"other": 1.0}
    table = invoke("runs", "list", "-c", "metrics.nan").stdout
    assert "nan" in table and "—" in table


@pytest.mark.slow
def test_list_filters_orders_and_limits(
    invoke_json: Callable[..., Any], three_runs: list[str]
) -> None:
    by_experiment = invoke_json("runs", "list", "--experiment", "ranking")
    assert [r["name"] for r in by_experiment] == ["broken"]
    both = invoke_json("runs", "list", "-e", "ranking", "-e", "churn")
    assert len(both) == 4
    good = invoke_json(
        "runs", "list", "--filter", "metrics.acc > 0.85", "--order-by", "metrics.acc DESC"
    )
    assert [r["name"] for r in good] == ["rf-deep", "gbm"]
    ordered = invoke_json(
        "runs", "list", "--order-by", "params.model", "--order-by", "metrics.loss DESC"
    )
    assert [r["name"] for r in ordered] == ["gbm", "broken", "rf-shallow", "rf-deep"]
    assert len(invoke_json("runs", "list", "--max-results", "2")) == 2


def test_list_puts_filter_and_order_keys_first(invoke: Invoke, three_runs: list[str]) -> None:
    result = invoke("runs", "list", "-f", "params.model = 'rf'", "-o", "tags.team")
    header = header_keys(result.stdout)
    assert header[6:9] == ["params.model", "tags.team", "metrics.acc"]
    assert "gbm" not in result.stdout


def test_list_columns_option(invoke: Invoke, three_runs: list[str]) -> None:
    result = invoke("runs", "list", "--columns", "params.lr,tags.team", "-c", "metrics.loss")
    header = header_keys(result.stdout)
    assert header[6:] == ["params.lr", "tags.team", "metrics.loss"]
    assert "metrics.acc" not in header
    bad = invoke("runs", "list", "--columns", "lr")
    assert bad.exit_code == 2
    assert "params.NAME" in bad.stderr


def test_list_all_includes_deleted_runs(
    invoke: Invoke, invoke_json: Callable[..., Any], workspace: Workspace, three_runs: list[str]
) -> None:
    workspace.delete_run(three_runs[0])
    assert three_runs[0] not in [r["run_id"] for r in invoke_json("runs", "list")]
    everything = invoke_json("runs", "list", "--all")
    assert {r["run_id"]: r["deleted"] for r in everything}[three_runs[0]] is True
    assert "(deleted)" in invoke("runs", "list", "--all").stdout


def test_list_when_empty(
    invoke: Invoke, invoke_json: Callable[..., Any], workspace: Workspace
) -> None:
    assert invoke("runs", "list").stdout.strip() == "No runs yet."
    assert invoke_json("runs", "list") == []


@pytest.mark.slow
def test_list_and_show_a_sigkilled_run_as_killed(
    invoke: Invoke, invoke_json: Callable[..., Any], workspace: Workspace
) -> None:
    code = textwrap.dedent(
        """
        import sys, time, loopml
        run = loopml.Workspace.open(sys.argv[1]).start_run(log_environment=False)
        print(run.id, flush=True)
        time.sleep(120)
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(workspace.root)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    run_id = child.stdout.readline().strip()
    child.kill()  # SIGKILL: no chance to end the run
    child.wait(timeout=60)
    assert [r["status"] for r in invoke_json("runs", "list")] == ["KILLED"]
    assert "KILLED" in invoke("runs", "list").stdout
    shown = invoke("runs", "show", run_id[:8]).stdout
    assert "KILLED" in shown and "stopped without ending it" in shown


def test_list_with_only_deleted_runs_hints_at_all(
    invoke: Invoke, workspace: Workspace, three_runs: list[str]
) -> None:
    for run_id in three_runs:
        workspace.delete_run(run_id)
    assert invoke("runs", "list").stdout.strip() == (
        "No runs to show: 4 deleted runs are hidden (`loopml runs list --all` lists them)."
    )
    filtered = invoke("runs", "list", "--filter", "params.model = 'gbm'")
    assert filtered.stdout.strip() == "No runs match; 1 deleted run matches (add --all to list it)."
    assert invoke("runs", "list", "--filter", "params.model = 'svm'").stdout.strip() == (
        "No runs match."
    )


def test_order_by_with_a_comma_says_to_repeat_the_option(
    invoke: Invoke, error_lines: Callable[[Result], list[str]], three_runs: list[str]
) -> None:
    lines = error_lines(invoke("runs", "list", "--order-by", "metrics.acc DESC, params.lr"))
    assert "repeat -o/--order-by (-o 'metrics.acc DESC' -o 'params.lr')" in lines[0]
    assert lines[2].index("^") == lines[1].index(",")  # at the comma, not at DESC


def test_list_says_when_max_results_cut_the_list(invoke: Invoke, three_runs: list[str]) -> None:
    result = invoke("runs", "list", "-n", "2")
    assert "showing the first 2 runs" in result.stderr
    assert result.stderr.count("\n") == 1
    assert invoke("runs", "list", "-n", "4").stderr == ""


def test_bad_filter_is_one_error_with_a_caret(
    invoke: Invoke, error_lines: Callable[[Result], list[str]], three_runs: list[str]
) -> None:
    lines = error_lines(invoke("runs", "list", "--filter", "metrics.acc >> 0.9"))
    assert len(lines) == 3
    assert lines[1].strip() == "metrics.acc >> 0.9"
    assert lines[2].strip() == "^"
    assert lines[2].index("^") == lines[1].index(">>") + 1


def test_unknown_experiment_is_an_error(
    invoke: Invoke, error_lines: Callable[[Result], list[str]], three_runs: list[str]
) -> None:
    (line,) = error_lines(invoke("runs", "list", "--experiment", "nope"))
    assert "nope" in line


def test_no_workspace_is_an_error_that_says_what_to_do(
    invoke: Invoke,
    error_lines: Callable[[Result], list[str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    (line,) = error_lines(invoke("runs", "list"))
    assert "loopml init" in line


# -- RUN prefixes -----------------------------------------------------------------------------


def test_run_is_found_by_full_id_or_unique_prefix(
    invoke_json: Callable[..., Any], three_runs: list[str]
) -> None:
    run_id = three_runs[1]
    for ref in (run_id, run_id[:4], run_id[:8], run_id[:8].upper()):
        assert invoke_json("runs", "show", ref)["run_id"] == run_id


def test_unknown_and_short_run_ids_are_errors(
    invoke: Invoke, error_lines: Callable[[Result], list[str]], three_runs: list[str]
) -> None:
    unused = next(c for c in "0123456789abcdef" if not any(r.startswith(c) for r in three_runs))
    (line,) = error_lines(invoke("runs", "show", unused * 6))
    assert "No run" in line and "loopml runs list" in line
    (line,) = error_lines(invoke("runs", "show", "not-a-run"))
    assert "No run" in line
    (line,) = error_lines(invoke("runs", "show", three_runs[0][:3]))
    assert "at least 4 characters" in line


def test_ambiguous_prefix_lists_the_candidates(
    invoke: Invoke,
    error_lines: Callable[[Result], list[str]],
    make_run: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with monkeypatch.context() as patch:
        fake_uuid = types.SimpleNamespace(
            uuid4=lambda: types.SimpleNamespace(hex="abcd" + os.urandom(14).hex())
        )
        patch.setattr(loopml.tracking.api, "uuid", fake_uuid)
        first, second = make_run(name="first"), make_run(name="second")
    (line,) = error_lines(invoke("runs", "show", "abcd"))
    assert "ambiguous" in line and "2 runs" in line
    assert first[:12] in line and second[:12] in line
    assert "first" in line and "second" in line
    assert invoke("runs", "show", first[:12]).exit_code == 0


# -- show -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_show_prints_info_params_metrics_tags_and_inputs(
    invoke: Invoke, workspace: Workspace, tmp_path: Path
) -> None:
    data = tmp_path / "train.csv"
    data.write_text("a,b\n1,2\n")
    with workspace.start_run("churn", name="with-data", log_environment=False) as run:
        run.log_params({"lr": 0.01})
        run.log_metric("acc", 0.5, step=0)
        run.log_metric("acc", 0.75, step=1)
        run.set_tag("team", "growth")
        ref = run.log_input(data, name="train")
    result = invoke("runs", "show", run.id[:8])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert f"Run {run.id}" in out
    for expected in (
        "with-data",
        "churn",
        "FINISHED",
        "lr",
        "0.01",
        "acc",
        "0.75",
        "team",
        "growth",
    ):
        assert expected in out
    assert "Inputs" in out and "train" in out and ref.digest[:16] in out
    assert re.search(r"artifacts +none", out)
    assert "not recorded" in out  # environment
    assert "Error" not in out


def test_show_json(invoke_json: Callable[..., Any], make_run: Callable[..., str]) -> None:
    run_id = make_run(params={"lr": 0.01}, metrics={"acc": 0.5}, tags={"team": "growth"})
    shown = invoke_json("runs", "show", run_id)
    assert shown["run_id"] == run_id
    assert shown["params"] == {"lr": "0.01"}
    assert shown["metrics"] == {"acc": 0.5}
    assert shown["tags"] == {"team": "growth"}
    assert shown["inputs"] == [] and shown["environment"] is None
    assert shown["status"] == "FINISHED" and shown["error"] is None


def test_show_failed_run_prints_its_traceback(
    invoke: Invoke, invoke_json: Callable[..., Any], make_run: Callable[..., str]
) -> None:
    run_id = make_run(fail=True)
    out = invoke("runs", "show", run_id).stdout
    assert "FAILED" in out and "Error" in out
    assert "RuntimeError: the loss went to the moon" in out
    assert "Traceback" in invoke_json("runs", "show", run_id)["error"]


def test_show_environment_summary(invoke: Invoke, workspace: Workspace) -> None:
    with workspace.start_run("churn", log_environment=True) as run:
        pass
    env = workspace.get_run(run.id).environment
    assert env is not None
    out = invoke("runs", "show", run.id).stdout
    assert f"{env['python']['version']} (CPython)" in out
    assert env["host"] in out
    assert f"{env['package_count']} installed" in out
    assert "platform" in out and "git" in out
    shown = invoke("runs", "show", run.id, "--json")
    assert '"packages_digest"' in shown.stdout


# -- artifacts --------------------------------------------------------------------------------


def test_artifacts_list_and_json(
    invoke: Invoke, invoke_json: Callable[..., Any], make_run: Callable[..., str]
) -> None:
    run_id = make_run(
        texts={"notes/a.txt": "alpha", "notes/deep/b.txt": "beta!", "model.json": "{}"}
    )
    assert (
        f"3 files, 12 bytes (loopml runs artifacts {run_id[:8]})"
        in invoke("runs", "show", run_id).stdout
    )
    out = invoke("runs", "artifacts", run_id[:6]).stdout
    assert "notes/a.txt" in out and "notes/deep/b.txt" in out and "model.json" in out
    assert "3 files" in out
    listed = invoke_json("runs", "artifacts", run_id)
    assert [a["path"] for a in listed] == ["model.json", "notes/a.txt", "notes/deep/b.txt"]
    assert listed[1]["size"] == 5 and len(listed[1]["digest"]) == 64
    only = invoke_json("runs", "artifacts", run_id, "--path", "notes/deep")
    assert [a["path"] for a in only] == ["notes/deep/b.txt"]


def test_artifacts_download_verifies_and_says_where(
    invoke: Invoke, invoke_json: Callable[..., Any], make_run: Callable[..., str], tmp_path: Path
) -> None:
    run_id = make_run(texts={"notes/a.txt": "alpha", "model.json": "{}"})
    dst = tmp_path / "out"
    result = invoke("runs", "artifacts", run_id, "--download", str(dst))
    assert result.exit_code == 0, result.output
    assert str(dst) in result.stdout and "2 files" in result.stdout
    assert (dst / "notes" / "a.txt").read_text() == "alpha"
    one = invoke_json("runs", "artifacts", run_id, "-d", str(tmp_path / "one"), "-p", "notes/a.txt")
    assert one["path"] == str(tmp_path / "one" / "notes" / "a.txt")
    assert [f["path"] for f in one["files"]] == ["notes/a.txt"]


def test_artifacts_download_of_a_corrupt_blob_fails_cleanly(
    invoke: Invoke,
    error_lines: Callable[[Result], list[str]],
    make_run: Callable[..., str],
    workspace: Workspace,
    tmp_path: Path,
) -> None:
    run_id = make_run(texts={"a.txt": "alpha"})
    (item,) = workspace.list_artifacts(run_id)
    blob = Path(workspace.blobs.path_of(item.digest))
    blob.chmod(0o644)
    blob.write_text("tampered")
    (line,) = error_lines(invoke("runs", "artifacts", run_id, "--download", str(tmp_path / "x")))
    assert item.digest in line


def test_artifacts_when_there_are_none(
    invoke: Invoke,
    error_lines: Callable[[Result], list[str]],
    make_run: Callable[..., str],
    tmp_path: Path,
) -> None:
    run_id = make_run()
    assert "has no artifacts" in invoke("runs", "artifacts", run_id).stdout
    (line,) = error_lines(invoke("runs", "artifacts", run_id, "-d", str(tmp_path / "x")))
    assert "no artifact" in line


# -- delete / restore -------------------------------------------------------------------------


def test_delete_and_restore(
    invoke: Invoke, invoke_json: Callable[..., Any], three_runs: list[str]
) -> None:
    run_id = three_runs[0]
    result = invoke("runs", "delete", run_id[:8])
    assert result.exit_code == 0
    assert f"Deleted run {run_id}" in result.stdout and "loopml runs restore" in result.stdout
    assert run_id not in [r["run_id"] for r in invoke_json("runs", "list")]
    assert "already deleted" in invoke("runs", "delete", run_id).stdout
    # A deleted run is still found by prefix (to show or restore it).
    assert invoke_json("runs", "show", run_id[:8])["deleted"] is True
    result = invoke("runs", "restore", run_id[:8])
    assert f"Restored run {run_id}" in result.stdout
    assert run_id in [r["run_id"] for r in invoke_json("runs", "list")]
    assert "is not deleted" in invoke("runs", "restore", run_id).stdout


def test_delete_unknown_run(
    invoke: Invoke, error_lines: Callable[[Result], list[str]], workspace: Workspace
) -> None:
    (line,) = error_lines(invoke("runs", "delete", "deadbeef"))
    assert "deadbeef" in line


# -- compare ----------------------------------------------------------------------------------


def test_compare_shows_only_differences_by_default(invoke: Invoke, three_runs: list[str]) -> None:
    shallow, deep = three_runs[0], three_runs[1]
    result = invoke("runs", "compare", shallow[:8], deep[:8])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert shallow[:8] in out and deep[:8] in out
    assert "rf-shallow" in out and "rf-deep" in out
    assert "params.depth" in out and "metrics.acc" in out and "metrics.loss" in out
    assert "params.model" not in out and "params.lr" not in out
    everything = invoke("runs", "compare", shallow, deep, "--all").stdout
    assert "params.model" in everything and "params.lr" in everything


def test_compare_highlights_the_differences(
    invoke: Invoke, three_runs: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")
    out = invoke("runs", "compare", three_runs[0], three_runs[1], "--all").stdout
    differs = next(line for line in out.splitlines() if "params.depth" in line)
    same = next(line for line in out.splitlines() if "params.model" in line)
    assert "\x1b[1;33m" in differs
    assert "\x1b[1;33m" not in same


def test_compare_json(invoke_json: Callable[..., Any], three_runs: list[str]) -> None:
    shallow, deep, gbm, broken = three_runs
    compared = invoke_json("runs", "compare", shallow, deep, broken)
    assert [r["run_id"] for r in compared["runs"]] == [shallow, deep, broken]
    rows = {row["key"]: row for row in compared["rows"]}
    assert rows["params.depth"]["values"] == {shallow: "3", deep: "9", broken: None}
    assert rows["metrics.acc"]["values"][deep] == 0.93
    assert all(row["differs"] for row in compared["rows"])
    full = invoke_json("runs", "compare", shallow, deep, "--all")
    rows = {row["key"]: row for row in full["rows"]}
    assert rows["params.model"] == {
        "key": "params.model",
        "values": {shallow: "rf", deep: "rf"},
        "differs": False,
    }


def test_compare_identical_runs(invoke: Invoke, make_run: Callable[..., str]) -> None:
    a, b = make_run(params={"lr": 1}), make_run(params={"lr": 1})
    assert "have the same 1 params and 0 metrics" in invoke("runs", "compare", a, b).stdout


def test_compare_needs_two_runs(invoke: Invoke, three_runs: list[str]) -> None:
    result = invoke("runs", "compare", three_runs[0])
    assert result.exit_code == 2
    result = invoke("runs", "compare", three_runs[0], three_runs[0][:8])
    assert result.exit_code == 2
    assert "two different runs" in result.stderr
