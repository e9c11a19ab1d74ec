"""Nothing is lost when the server goes away: a real ``loopml server`` process is killed
(SIGKILL) and started again in the middle of a run, and training processes exit while it
is down."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select

from client.conftest import ServerProcess
from loopml.client import session_for
from loopml.server.batches import client_batches
from loopml.tracking.tables import metrics
from loopml.workspace import Workspace

POINTS = 20_000
FLUSH_INTERVAL = 0.2


def stored(root: Path, run_id: str) -> tuple[int, int, int]:
    """(metric rows, distinct steps, points the server's batch ids account for)."""
    with Workspace.open(root) as ws, ws.db.read() as conn:
        rows = conn.execute(
            select(func.count(), func.count(func.distinct(metrics.c.step))).where(
                metrics.c.run_id == run_id
            )
        ).one()
        batched = conn.execute(
            select(func.coalesce(func.sum(client_batches.c.points), 0)).where(
                client_batches.c.run_id == run_id
            )
        ).scalar()
    return int(rows[0]), int(rows[1]), int(batched or 0)


@pytest.mark.slow
def test_a_server_killed_and_restarted_mid_run_loses_no_point_and_stores_none_twice(
    server_process: Callable[[], ServerProcess],
    spool_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LOOPML_TRACKING_FLUSH_INTERVAL", str(FLUSH_INTERVAL))
    server = server_process()
    server.start()
    ws = Workspace.open(server.url)
    spool = session_for(server.url).spool
    worst = 0.0
    spooled_during_outage = 0
    with ws.runs.start(experiment="outage", log_environment=False) as run:
        for i in range(POINTS):
            started = time.perf_counter()
            run.log_metric("loss", float(i), step=i)
            worst = max(worst, time.perf_counter() - started)
            if i == 5_000:
                server.kill()
            if i == 12_000:
                spooled_during_outage = len(spool.pending())
                server.start(wait=False)  # back while the loop goes on
            if i % 500 == 499:
                time.sleep(0.05)  # training work: several flush intervals pass
    server.wait()
    ws.runs.flush()
    assert spooled_during_outage > 0, "the outage should have sent batches to the spool"
    assert spool.pending() == []
    assert stored(server.root, run.id) == (POINTS, POINTS, POINTS)
    assert ws.runs.get(run.id).status == "FINISHED"
    # A correctness bound, not a speed target: log_metric never waited on the network.
    assert worst < FLUSH_INTERVAL, f"a log_metric call blocked for {worst:.3f} s"
    ws.close()


CLIENT = textwrap.dedent(
    """
    import pathlib, sys, time
    from loopml.workspace import Workspace

    url, id_file, go = sys.argv[1], pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3])
    ws = Workspace.open(url)
    run = ws.runs.start(experiment="exit", log_environment=False)
    run.log_param("lr", 0.1)
    for i in range(1000):
        run.log_metric("m", float(i), step=i)
    id_file.write_text(run.id)
    while not go.exists():
        time.sleep(0.05)
    # exits with the run live: loopml ends it and sends (or keeps) what is queued
    """
)


def what_happened(tmp_path: Path, spool_dir: Path) -> str:
    """The client's output and the spool's files, for a failure's message."""
    files = sorted(str(p.relative_to(spool_dir)) for p in spool_dir.rglob("*") if p.is_file())
    reasons = [p.read_text() for p in spool_dir.rglob("*.why")]
    return f"client: {(tmp_path / 'client.log').read_text()[-2000:]}\nspool: {files}\n{reasons}"


def run_client(url: str, tmp_path: Path, spool_dir: Path) -> tuple[subprocess.Popen[bytes], Path]:
    script = tmp_path / "client.py"
    script.write_text(CLIENT)
    env = {
        **os.environ,
        "LOOPML_SPOOL_DIR": str(spool_dir),
        "LOOPML_TRACKING_FLUSH_INTERVAL": "0.2",
    }
    id_file, go = tmp_path / "run_id", tmp_path / "go"
    with open(tmp_path / "client.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, str(script), url, str(id_file), str(go)],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    while not id_file.exists():
        assert proc.poll() is None, "the client died"
        assert time.monotonic() < deadline, "the client did not start its run"
        time.sleep(0.05)
    return proc, go


@pytest.mark.slow
def test_what_a_process_spooled_is_sent_at_its_exit_once_the_server_is_back(
    server_process: Callable[[], ServerProcess], spool_dir: Path, tmp_path: Path
) -> None:
    server = server_process()  # not started: the client starts its run offline
    proc, go = run_client(server.url, tmp_path, spool_dir)
    run_id = (tmp_path / "run_id").read_text()
    server.start()
    go.touch()
    assert proc.wait(60) == 0
    assert stored(server.root, run_id)[:2] == (1000, 1000), what_happened(tmp_path, spool_dir)
    with Workspace.open(server.root) as ws:
        record = ws.runs.get(run_id)
    assert record.status == "FINISHED" and record.params == {"lr": "0.1"}
    assert record.experiment == "exit"
    assert not list(spool_dir.rglob("*.json"))


@pytest.mark.slow
def test_what_a_process_left_in_the_spool_is_sent_by_the_next_process(
    server_process: Callable[[], ServerProcess], spool_dir: Path, tmp_path: Path
) -> None:
    server = server_process()
    proc, go = run_client(server.url, tmp_path, spool_dir)
    run_id = (tmp_path / "run_id").read_text()
    go.touch()
    assert proc.wait(60) == 0  # the server never came: everything stays in the spool
    left = list(spool_dir.rglob("*.json"))
    assert left, "the spool should hold the run's requests"
    server.start()
    env = {**os.environ, "LOOPML_SPOOL_DIR": str(spool_dir)}
    subprocess.run(
        [
            sys.executable,
            "-c",
            f"from loopml.workspace import Workspace; Workspace.open({server.url!r}).runs",
        ],
        env=env,
        check=True,
        timeout=60,
    )
    assert stored(server.root, run_id)[:2] == (1000, 1000)
    with Workspace.open(server.root) as ws:
        assert ws.runs.get(run_id).status == "FINISHED"
    assert not list(spool_dir.rglob("*.json"))
