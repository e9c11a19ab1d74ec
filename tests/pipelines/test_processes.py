"""Processes die: a worker killed mid-task, a task past its timeout, and the whole runner
killed with SIGKILL — the run is recorded as failed or killed, and resume finishes it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from loopml.pipelines import pipeline, resume, run_pipeline, task
from loopml.pipelines import records as rec
from loopml.workspace import Workspace


@task
def prepare(marks: str) -> int:
    Path(marks, f"prepare-{time.monotonic_ns()}").touch()
    return 41


@task
def fragile(x: int, marks: str) -> int:
    if not Path(marks, "survive").exists():
        Path(marks, "survive").touch()
        os.kill(os.getpid(), signal.SIGKILL)  # the worker process dies mid-task
    return x + 1


@pipeline
def killable(marks: str):
    return fragile(prepare(marks), marks)


@pytest.mark.slow
def test_worker_killed_mid_task_fails_the_run_and_resume_works(
    pws: Workspace, tmp_path: Path
) -> None:
    marks = str(tmp_path)
    run = run_pipeline(killable, {"marks": marks}, executor="processes", raise_on_failure=False)
    assert run.status == "FAILED"
    error = run.tasks["fragile"].error or ""
    assert error.startswith("TaskKilled: The worker process running task 'fragile'")
    assert "signal SIGKILL" in error
    resumed = resume(run.id, workspace=pws)
    assert resumed.status == "FINISHED" and resumed.result == 42
    assert resumed.tasks["prepare"].attempts == 1
    assert len(list(tmp_path.glob("prepare-*"))) == 1
    assert rec.get_run(pws.db, run.id).executor == "processes"


@task(timeout=0.5)
def stuck() -> int:
    time.sleep(60)
    return 0


@task
def fine() -> int:
    return 1


@pipeline
def partly_stuck():
    return stuck(), fine()


@pytest.mark.slow
def test_timeout_kills_the_worker_process(pws: Workspace) -> None:
    started = time.monotonic()
    run = run_pipeline(partly_stuck, executor="processes", raise_on_failure=False)
    assert time.monotonic() - started < 30
    assert "did not finish within its timeout of 0.5s" in (run.tasks["stuck"].error or "")
    assert "killed" in (run.tasks["stuck"].error or "")
    assert run.tasks["fine"].status == "COMPLETED"


@task
def lock_in_worker() -> object:
    return threading.Lock()


@pipeline
def returns_lock():
    return lock_in_worker()


@pytest.mark.slow
def test_unstorable_result_from_a_worker_names_the_task(pws: Workspace) -> None:
    run = run_pipeline(returns_lock, executor="processes", raise_on_failure=False)
    error = run.tasks["lock_in_worker"].error or ""
    assert error.startswith("OutputNotStorable: Task 'lock_in_worker' returned a value")


PIPELINE_FILE = """
import time
from pathlib import Path
from loopml.pipelines import pipeline, task

@task
def first(folder: str) -> int:
    Path(folder, f"first-{time.monotonic_ns()}").touch()
    time.sleep(0.1)  # real work: recorded before `second` starts
    return 1

@task
def second(x: int, folder: str) -> int:
    Path(folder, "second-started").touch()
    while not Path(folder, "release").exists():
        time.sleep(0.05)
    return x + 1

@pipeline
def slow(folder: str):
    return second(first(folder), folder)
"""


def start_slow_run(pws: Workspace, tmp_path: Path) -> tuple[subprocess.Popen[bytes], Path]:
    """Start ``loopml pipelines run`` on the slow pipeline; return once its second task runs."""
    (tmp_path / "flow.py").write_text(textwrap.dedent(PIPELINE_FILE))
    folder = tmp_path / "marks"
    folder.mkdir()
    command = [sys.executable, "-m", "loopml.cli", "pipelines", "run", str(tmp_path / "flow.py")]
    proc = subprocess.Popen(
        [*command, "--param", f"folder={folder}"],
        cwd=pws.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while not (folder / "second-started").exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return proc, folder


@pytest.mark.slow
def test_runner_killed_mid_run_is_marked_killed_and_resumes(pws: Workspace, tmp_path: Path) -> None:
    proc, folder = start_slow_run(pws, tmp_path)
    proc.kill()
    proc.wait(timeout=30)
    (run,) = rec.list_runs(pws.db, "slow")
    assert run.status == "RUNNING"  # as the dead process left it
    assert rec.reap_stale(pws.db) == [run.id]
    killed = rec.get_run(pws.db, run.id)
    assert killed.status == "KILLED" and "resume" in (killed.error or "")
    assert killed.task("first").status == "COMPLETED"
    # RUNNING (marked FAILED by the reaper) or still PENDING if the process died before its
    # start was flushed: either way it reruns.
    assert killed.task("second").status in ("FAILED", "PENDING")
    (folder / "release").touch()
    resumed = resume(run.id, workspace=pws)
    assert resumed.status == "FINISHED" and resumed.result == 2
    assert len(list(folder.glob("first-*"))) == 1


@pytest.mark.slow
def test_sigterm_marks_the_run_killed(pws: Workspace, tmp_path: Path) -> None:
    proc, folder = start_slow_run(pws, tmp_path)
    proc.terminate()
    proc.wait(timeout=30)
    (run,) = rec.list_runs(pws.db, "slow")
    assert run.status == "KILLED"  # recorded by the process itself on its way out
    assert pws.get_run(run.tracking_run_id or "").status == "KILLED"
    (folder / "release").touch()
    assert resume(run.id, workspace=pws).status == "FINISHED"


def test_a_queued_run_whose_process_died_is_reaped(pws: Workspace) -> None:
    pws.db.transact(
        lambda conn: rec.insert_run(
            conn,
            id="e" * 32,
            pipeline="gone",
            status="QUEUED",
            params="{}",
            trigger="manual",
            owner="nohost:1:1",
            heartbeat_at=0,
        )
    )
    assert rec.reap_stale(pws.db) == ["e" * 32]
    assert rec.get_run(pws.db, "e" * 32).status == "KILLED"
