"""The one liveness rule for RUNNING records (tracking runs and pipeline runs)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from loopml.store import liveness
from loopml.store.liveness import STALE_AFTER_S, owner_alive, owner_token, process_start_ms

NOW = 1_800_000_000_000


def test_this_process_is_alive() -> None:
    assert owner_alive(owner_token(), heartbeat_at=None)


def test_a_process_that_exited_on_this_host_is_gone_at_once() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    token = f"{socket.gethostname()}:{proc.pid}:{process_start_ms(proc.pid)}"
    assert owner_alive(token, heartbeat_at=None)
    proc.kill()
    proc.wait()
    assert not owner_alive(token, heartbeat_at=NOW, now=NOW)  # a fresh heartbeat is no alibi


def test_an_exited_process_not_yet_waited_for_is_gone() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    token = f"{socket.gethostname()}:{proc.pid}:{process_start_ms(proc.pid)}"
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # exited; still a zombie
    assert not owner_alive(token, heartbeat_at=None)
    proc.wait()


def test_a_reused_pid_is_another_process() -> None:
    token = f"{socket.gethostname()}:{os.getppid()}:{process_start_ms(os.getppid()) - 60_000}"
    assert not owner_alive(token, heartbeat_at=None)


def test_another_host_is_judged_by_its_heartbeat() -> None:
    owner = "elsewhere.example:4242:1"
    assert owner_alive(owner, heartbeat_at=NOW - 5_000, now=NOW)
    assert not owner_alive(owner, heartbeat_at=NOW - int(STALE_AFTER_S * 1000) - 1, now=NOW)
    assert not owner_alive(owner, heartbeat_at=None, now=NOW)


def test_no_owner_or_a_garbled_one_is_gone() -> None:
    assert not owner_alive(None, heartbeat_at=NOW, now=NOW)
    assert not owner_alive(f"{socket.gethostname()}:not-a-pid", heartbeat_at=NOW, now=NOW)


def test_heartbeat_is_well_inside_the_stale_limit() -> None:
    assert liveness.HEARTBEAT_S * 4 <= STALE_AFTER_S


def test_pipelines_use_the_same_rule() -> None:
    from loopml.pipelines import records

    assert records.owner_alive is liveness.owner_alive
    assert records.owner_token is liveness.owner_token
