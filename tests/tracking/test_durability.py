"""Nothing is lost: concurrent writers, SIGTERM, interpreter exit, one flush interval."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from loopml.workspace import Workspace


def _python(code: str, *args: str, **kwargs: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,  # type: ignore[call-overload]
    )


@pytest.mark.slow
def test_four_processes_log_10k_points_each_to_one_sqlite_workspace(tmp_path: Path) -> None:
    Workspace.init(tmp_path).close()
    code = """
        import sys, loopml
        ws = loopml.Workspace.open(sys.argv[1])
        with ws.start_run(experiment="shared", name=sys.argv[2], log_environment=False) as run:
            for i in range(10_000):
                run.log_metric("m", float(i), step=i)
                if i % 2500 == 0:
                    run.log_param(f"p{i}", i)
        print(run.id)
    """
    procs = [_python(code, str(tmp_path), f"w{n}") for n in range(4)]
    results = [p.communicate(timeout=240) for p in procs]
    for proc, (_out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
        assert "locked" not in err
    ws = Workspace.open(tmp_path)
    frame = ws.search_runs(experiments=["shared"])
    assert len(frame) == 4 and set(frame["status"]) == {"FINISHED"}
    total = sum(len(ws.metric_history(run_id, "m")) for run_id in frame["run_id"])
    assert total == 40_000
    assert set(frame["metrics.m"]) == {9999.0}
    ws.close()


@pytest.mark.slow
def test_two_processes_create_the_same_experiment(tmp_path: Path) -> None:
    Workspace.init(tmp_path).close()
    # A barrier, not a wall-clock start time: each child says it is ready (imports done, store
    # open), then waits for a line on stdin; both get it once both are ready.
    code = """
        import sys, loopml
        ws = loopml.Workspace.open(sys.argv[1])
        ws.db.connect()
        print("ready", flush=True)
        sys.stdin.readline()
        print(ws.get_experiment(ws.start_run(experiment="race", log_environment=False).id and "race").id)
        ws.end_run()
    """
    procs = [_python(code, str(tmp_path), stdin=subprocess.PIPE) for _ in range(2)]
    for proc in procs:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready", proc.communicate(timeout=60)
    for proc in procs:  # release both before waiting for either
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert outs[0][0] == outs[1][0]
    ws = Workspace.open(tmp_path)
    assert [e.name for e in ws.list_experiments()] == ["race"]
    assert ws.list_experiments()[0].run_count == 2
    ws.close()


@pytest.mark.slow
def test_sigterm_flushes_buffered_points(tmp_path: Path) -> None:
    Workspace.init(tmp_path).close()
    code = """
        import sys, time, loopml
        ws = loopml.Workspace.open(sys.argv[1])
        ws.settings = ws.settings.with_overrides(flush_interval=3600.0)  # no timed flush
        run = ws.start_run(experiment="term", log_environment=False)
        for i in range(5000):
            run.log_metric("m", float(i), step=i)
        print(run.id, ws.runs._writer().pending(), flush=True)
        time.sleep(60)
    """
    proc = _python(code, str(tmp_path))
    assert proc.stdout is not None
    run_id, pending = proc.stdout.readline().split()
    assert int(pending) == 5000  # nothing written yet
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM
    ws = Workspace.open(tmp_path)
    assert len(ws.metric_history(run_id, "m")) == 5000
    assert ws.get_run(run_id).status == "KILLED"
    ws.close()


@pytest.mark.slow
def test_sigterm_inside_with_block_marks_killed(tmp_path: Path) -> None:
    Workspace.init(tmp_path).close()
    code = """
        import sys, time, loopml
        ws = loopml.Workspace.open(sys.argv[1])
        with ws.start_run(log_environment=False) as run:
            run.log_metric("m", 1.0)
            print(run.id, flush=True)
            time.sleep(60)
    """
    proc = _python(code, str(tmp_path))
    assert proc.stdout is not None
    run_id = proc.stdout.readline().strip()
    os.kill(proc.pid, signal.SIGTERM)
    proc.communicate(timeout=30)
    ws = Workspace.open(tmp_path)
    record = ws.get_run(run_id)
    assert record.status == "KILLED" and record.metrics == {"m": 1.0}
    ws.close()


@pytest.mark.slow
def test_exit_without_ending_finishes_and_flushes(tmp_path: Path) -> None:
    Workspace.init(tmp_path).close()
    code = """
        import sys, loopml
        loopml.set_default_workspace(loopml.Workspace.open(sys.argv[1]))
        loopml.log_metric("m", 3.0)
        print(loopml.active_run().id)
    """
    out, err = _python(code, str(tmp_path)).communicate(timeout=60)
    ws = Workspace.open(tmp_path)
    record = ws.get_run(out.strip())
    assert record.status == "FINISHED" and record.metrics == {"m": 3.0}, err
    ws.close()


@pytest.mark.slow
def test_uncaught_exception_without_with_marks_failed(tmp_path: Path) -> None:
    Workspace.init(tmp_path).close()
    code = """
        import sys, loopml
        loopml.set_default_workspace(loopml.Workspace.open(sys.argv[1]))
        run = loopml.start_run(log_environment=False)
        print(run.id, flush=True)
        raise RuntimeError("crash")
    """
    out, _err = _python(code, str(tmp_path)).communicate(timeout=60)
    ws = Workspace.open(tmp_path)
    record = ws.get_run(out.strip())
    assert record.status == "FAILED" and "RuntimeError: crash" in (record.error or "")
    ws.close()


def test_background_flush_within_interval(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path)
    ws.settings = ws.settings.with_overrides(flush_interval=0.2)
    run = ws.start_run(log_environment=False)
    run.log_metric("m", 1.0)
    reader = Workspace.open(tmp_path)
    deadline = time.monotonic() + 10
    from loopml.tracking.search import get_run

    while time.monotonic() < deadline and "m" not in get_run(reader.db, run.id).metrics:
        time.sleep(0.05)
    assert get_run(reader.db, run.id).metrics == {"m": 1.0}
    run.end()
    reader.close()
    ws.close()


def test_flush_failure_keeps_points(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path)
    ws.settings = ws.settings.with_overrides(flush_interval=3600.0)
    run = ws.start_run(log_environment=False)
    run.log_metric("m", 1.0)
    writer = ws.runs._writer()
    real = writer.db.transact

    def broken(fn):  # type: ignore[no-untyped-def]
        raise OSError("disk gone")

    writer.db.transact = broken  # type: ignore[method-assign]
    with pytest.raises(OSError):
        writer.flush()
    assert writer.pending() == 1
    writer.db.transact = real  # type: ignore[method-assign]
    run.end()
    assert ws.get_run(run.id).metrics == {"m": 1.0}
    ws.close()
