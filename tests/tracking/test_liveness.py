"""A run whose process died (SIGKILL, out of memory, a lost machine) does not stay RUNNING."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from sqlalchemy import select, update

from loopml.exceptions import Conflict
from loopml.store.liveness import STALE_AFTER_S
from loopml.tracking.runs import now_ms
from loopml.tracking.tables import runs
from loopml.workspace import Workspace

CHILD = """
    import sys, time, loopml
    ws = loopml.Workspace.open(sys.argv[1])
    run = ws.start_run(experiment="doomed", log_environment=False)
    run.log_param("lr", 0.1)
    time.sleep(0.05)
    run.log_metric("loss", 0.5)
    ws.flush()
    print(run.id, flush=True)
    time.sleep(120)
"""


def sigkilled_run(root: Path) -> str:
    """Start a run in a child process, SIGKILL the child, return the run's id."""
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(CHILD), str(root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    run_id = proc.stdout.readline().strip()
    assert run_id, proc.communicate(timeout=60)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    return run_id


@pytest.mark.slow
def test_a_sigkilled_run_shows_as_killed(tmp_path: Path) -> None:
    Workspace.init(tmp_path).close()
    run_id = sigkilled_run(tmp_path)
    ws = Workspace.open(tmp_path)
    frame = ws.search_runs(experiments=["doomed"])
    assert frame["status"].tolist() == ["KILLED"]
    record = ws.get_run(run_id)
    assert record.status == "KILLED" and record.end_time is not None
    # Ended at its last sign of life: here its last metric point, after its last heartbeat.
    assert record.end_time == ws.metric_history(run_id, "loss")["timestamp"].max()
    assert "stopped without ending it" in (record.error or "")
    assert record.params == {"lr": "0.1"} and record.metrics == {"loss": 0.5}
    # Persisted, so a filter agrees with what is shown.
    assert ws.search_runs(filter="attributes.status = 'RUNNING'").empty
    # And it can be continued.
    with ws.start_run(run_id=run_id) as run:
        run.log_metric("loss", 0.4)
    assert ws.get_run(run_id).status == "FINISHED"
    ws.close()


def _set_owner(ws: Workspace, run_id: str, owner: str, heartbeat_at: int) -> None:
    ws.db.transact(
        lambda conn: conn.execute(
            update(runs).where(runs.c.id == run_id).values(owner=owner, heartbeat_at=heartbeat_at)
        )
    )


def test_a_run_on_another_host_is_killed_when_its_heartbeat_is_stale(ws: Workspace) -> None:
    fresh = ws.start_run(log_environment=False)
    stale = ws.start_run(log_environment=False, nested=True)
    for run in (fresh, stale):
        ws.runs._forget(run)  # as if another process ran them
    _set_owner(ws, fresh.id, "elsewhere.example:4242:1", now_ms())
    last_beat = now_ms() - int(STALE_AFTER_S * 1000) - 1000
    _set_owner(ws, stale.id, "elsewhere.example:4343:1", last_beat)
    frame = ws.search_runs().set_index("run_id")
    assert frame.loc[fresh.id, "status"] == "RUNNING"
    assert frame.loc[stale.id, "status"] == "KILLED"
    record = ws.get_run(stale.id)
    assert "elsewhere.example:4343:1" in (record.error or "")
    assert record.end_time is not None and round(record.end_time.timestamp() * 1000) == last_beat
    with pytest.raises(Conflict, match="running in another process"):
        ws.start_run(run_id=fresh.id)


def test_this_process_s_runs_stay_running(ws: Workspace) -> None:
    run = ws.start_run(log_environment=False)
    assert ws.search_runs()["status"].tolist() == ["RUNNING"]
    assert ws.get_run(run.id).status == "RUNNING"
    run.end()


def test_the_metric_writer_thread_keeps_the_heartbeat(sqlite_ws: Workspace) -> None:
    ws = sqlite_ws
    ws.runs._writer().heartbeat_interval = 0.05
    run = ws.start_run(log_environment=False)  # logs nothing: the beat must not need metrics

    def beat() -> int:
        with ws.db.read() as conn:
            return int(
                conn.execute(select(runs.c.heartbeat_at).where(runs.c.id == run.id)).scalar()
            )

    ws.db.transact(
        lambda c: c.execute(update(runs).where(runs.c.id == run.id).values(heartbeat_at=0))
    )
    deadline = time.monotonic() + 60
    while beat() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert beat() > 0
    run.end()
