"""The scheduler: cron slots, new data versions and events become pipeline runs, each
exactly once, even with two schedulers at once or one killed and restarted."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from loopml.exceptions import LoopmlWarning
from loopml.pipelines import (
    PipelineDefinitionError,
    Scheduler,
    emit_event,
    list_events,
    on_event,
    on_new_data,
    on_schedule,
    pipeline,
    task,
)
from loopml.pipelines import records as rec
from loopml.pipelines.tables import pipeline_runs
from loopml.workspace import Workspace


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


@task
def stamp(day: str, note: str) -> str:
    return f"{day}:{note}"


@pipeline(schedule="0 3 * * *", partition="day")
def nightly(day: str = "none", note: str = "cron"):
    return stamp(day, note)


def test_cron_starts_from_first_sight_and_catches_up(pws: Workspace) -> None:
    clock = Clock(datetime(2026, 11, 1, 12, 0, tzinfo=UTC))
    sched = Scheduler([nightly], pws, clock=clock)
    assert sched.tick() == []  # first sight: no runs for the past
    clock.now = datetime(2026, 11, 3, 4, 0, tzinfo=UTC)  # slots on the 2nd and 3rd are due
    claims = sched.tick()
    assert [c.slot for c in claims] == ["2026-11-02T03:00:00+00:00", "2026-11-03T03:00:00+00:00"]
    assert sched.tick() == []
    sched.execute(claims, wait=True)
    runs = rec.list_runs(pws.db, "nightly")
    assert sorted(r.partition or "" for r in runs) == ["2026-11-02", "2026-11-03"]
    assert {r.status for r in runs} == {"FINISHED"}
    assert {r.trigger for r in runs} == {"schedule:0 3 * * *"}
    run = rec.get_run(pws.db, claims[0].run_id)
    assert run.trigger_detail == {"cron": "0 3 * * *", "slot": "2026-11-02T03:00:00+00:00"}
    assert run.params == {"day": "2026-11-02", "note": "cron"}


def test_without_catchup_only_the_newest_missed_slot_runs(pws: Workspace) -> None:
    @pipeline(triggers=[on_schedule("*/10 * * * *", catchup=False, params={"note": "x"})])
    def frequent(day: str = "d", note: str = ""):
        stamp(day, note)

    clock = Clock(datetime(2026, 11, 1, 0, 1, tzinfo=UTC))
    sched = Scheduler([frequent], pws, clock=clock)
    sched.tick()
    clock.now += timedelta(hours=1)
    (claim,) = sched.tick()
    assert claim.slot == "2026-11-01T01:00:00+00:00"


@task
def size_of(path: str) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def test_each_new_data_version_starts_one_run(
    pws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(pws.root)  # where on_new_data("data") is looked for at definition
    data = pws.root / "data"
    data.mkdir()
    (data / "a.csv").write_text("x\n1\n")

    @pipeline(triggers=[on_new_data("data")])
    def on_data(path: str = str(data)):
        return size_of(path)

    sched = Scheduler([on_data], pws)
    assert sched.tick() == []  # first sight: the data as it is now is the starting point
    (data / "b.csv").write_text("x\n2\n")
    first = sched.tick()
    assert len(first) == 1 and first[0].trigger == "data:data"
    assert sched.tick() == []  # same version
    (data / "b.csv").unlink()  # back to the version first seen: it never ran, so it runs
    second = sched.tick()
    assert len(second) == 1 and second[0].slot != first[0].slot
    (data / "b.csv").write_text("x\n2\n")  # a version that already ran: at most one run each
    assert sched.tick() == []
    sched.execute(first + second, wait=True)
    runs = rec.list_runs(pws.db, "on_data")
    assert [r.status for r in runs] == ["FINISHED", "FINISHED"]
    assert rec.get_run(pws.db, second[0].run_id).trigger_detail == {
        "path": "data",
        "version": second[0].slot,
        "previous": first[0].slot,
    }


def test_a_pointer_file_is_watched_by_its_recorded_hash(
    pws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(pws.root)
    pointer = pws.root / "raw.loopml"
    pointer.write_text("kind: file\nhash: " + "a" * 64 + "\nsize: 1\nfiles: 1\n")

    @pipeline(triggers=[on_new_data("raw")])
    def on_pointer(path: str = "raw"):
        stamp(path, "p")

    sched = Scheduler([on_pointer], pws)
    assert sched.tick() == []
    pointer.write_text("kind: file\nhash: " + "b" * 64 + "\nsize: 1\nfiles: 1\n")
    assert [c.slot for c in sched.tick()] == ["b" * 64]


def test_events_start_runs_coalesced_or_one_each(pws: Workspace) -> None:
    @pipeline(triggers=[on_event("alert", subject="churn")])
    def retrain(day: str = "latest", note: str = "alert"):
        stamp(day, note)

    @pipeline(triggers=[on_event("alert", coalesce=False)])
    def per_alert(day: str = "latest", note: str = "each"):
        stamp(day, note)

    ids = [
        emit_event("alert", subject="churn", payload={"psi": 0.3}),
        emit_event("alert", subject="fraud"),
        emit_event("alert", subject="churn", payload={"psi": 0.4}),
    ]
    assert [e.id for e in list_events("alert", "churn")] == [ids[0], ids[2]]
    sched = Scheduler([retrain, per_alert], pws)
    claims = sched.tick()
    by_pipeline: dict[str, list[str | None]] = {}
    for claim in claims:
        by_pipeline.setdefault(claim.pipeline.name, []).append(claim.slot)
    assert by_pipeline == {"retrain": [str(ids[2])], "per_alert": [str(i) for i in ids]}
    detail = rec.get_run(pws.db, claims[0].run_id).trigger_detail
    assert detail == {
        "event": "alert",
        "subject": "churn",
        "event_ids": [ids[0], ids[2]],
        "payload": {"psi": 0.4},
    }
    assert sched.tick() == []
    emit_event("alert", subject="churn")
    assert [c.pipeline.name for c in sched.tick()] == ["retrain", "per_alert"]


def test_a_trigger_that_cannot_bind_the_params_fails_at_start(pws: Workspace) -> None:
    @pipeline(triggers=[on_event("alert")])
    def needs_day(day: str):
        stamp(day, "x")

    with pytest.raises(PipelineDefinitionError, match="needs a value for param"):
        Scheduler([needs_day], pws)


def test_two_schedulers_never_claim_the_same_slot(any_ws: Workspace) -> None:
    @pipeline(triggers=[on_schedule("* * * * *"), on_event("go")])
    def busy(day: str = "d", note: str = "n"):
        stamp(day, note)

    clock = Clock(datetime(2026, 11, 1, tzinfo=UTC))
    first = Scheduler([busy], any_ws, clock=clock)
    second = Scheduler([busy], any_ws, clock=clock)
    first.tick()
    claimed: list[str] = []
    lock = threading.Lock()

    def work(sched: Scheduler) -> None:
        for _ in range(10):
            got = sched.tick()
            with lock:
                claimed.extend(f"{c.trigger}@{c.slot}" for c in got)

    for minute in range(1, 4):
        clock.now = datetime(2026, 11, 1, 0, minute, tzinfo=UTC)
        for _ in range(3):
            emit_event("go")
        threads = [threading.Thread(target=work, args=(s,)) for s in (first, second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(claimed) == len(set(claimed))
    assert sorted(c for c in claimed if c.startswith("schedule")) == [
        f"schedule:* * * * *@2026-11-01T00:0{m}:00+00:00" for m in range(1, 4)
    ]
    with any_ws.db.read() as conn:
        count = conn.execute(pipeline_runs.select()).all()
    assert len(count) == len(claimed)
    # All nine events are covered, each by exactly one run.
    covered = [
        event_id
        for run in rec.list_runs(any_ws.db, "busy")
        if run.trigger == "event:go:*"
        for event_id in (run.trigger_detail or {})["event_ids"]
    ]
    assert sorted(covered) == sorted(e.id for e in list_events("go"))


def test_a_claim_left_by_a_dead_scheduler_is_taken_over(pws: Workspace) -> None:
    @pipeline(triggers=[on_event("nudge")])
    def nudged(day: str = "d", note: str = "n"):
        return stamp(day, note)

    pws.db.transact(
        lambda conn: rec.insert_run(
            conn,
            id="f" * 32,
            pipeline="nudged",
            ref=nudged.ref,
            status="QUEUED",
            params='{"day": "d", "note": "n"}',
            trigger="event:nudge:*",
            trigger_slot="1",
            owner="elsewhere:1:1",
            heartbeat_at=0,
        )
    )
    sched = Scheduler([nudged], pws)
    report = sched.run(once=True)
    assert report.recovered == ["f" * 32]
    assert report.finished == {"f" * 32: "FINISHED"}
    assert rec.get_run(pws.db, "f" * 32).attempt == 1


FLOW = """
import time
from pathlib import Path
from loopml.pipelines import on_event, on_new_data, pipeline, task

@task
def first(folder: str, data: Path) -> int:
    Path(folder, f"first-{time.monotonic_ns()}").touch()
    time.sleep(0.1)  # real work: recorded before `second` starts
    return 1

@task
def second(x: int, folder: str) -> int:
    Path(folder, f"second-started-{time.monotonic_ns()}").touch()
    while not Path(folder, "release").exists():
        time.sleep(0.05)
    return x + 1

@pipeline(triggers=[on_new_data("data"), on_event("retrain")])
def watched(folder: str = "FOLDER"):
    # A Path argument is hashed by its content: new data is never a cache hit.
    return second(first(folder, Path("data")), folder)
"""


def _scheduler(root: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "loopml.cli", "scheduler", "run", "flow.py", *args],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


@pytest.mark.slow
def test_scheduler_killed_and_restarted_loses_nothing_and_runs_nothing_twice(
    pws: Workspace,
) -> None:
    root = pws.root
    folder = root / "marks"
    folder.mkdir()
    (root / "flow.py").write_text(textwrap.dedent(FLOW).replace("FOLDER", str(folder)))
    (root / "data").mkdir()
    (root / "data" / "v1.csv").write_text("1\n")
    seen = _scheduler(root, "--once")  # first sight of the data: the starting point
    assert seen.communicate(timeout=120)[0].count("claimed run") == 0
    (root / "data" / "v2.csv").write_text("2\n")  # the change that starts a run
    proc = _scheduler(root, "--for", "120s", "--interval", "1s")
    deadline = time.monotonic() + 60
    while not list(folder.glob("second-started-*")):
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.kill()  # SIGKILL: no cleanup at all
    proc.wait(timeout=30)
    (killed,) = rec.list_runs(pws.db, "watched")
    assert killed.status == "RUNNING"
    # While no scheduler runs, an event arrives: that trigger must not be lost either.
    emit_event("retrain")
    (folder / "release").touch()
    restarted = _scheduler(root, "--once")
    out, _ = restarted.communicate(timeout=120)
    assert restarted.returncode == 0, out
    assert "took over run" in out
    runs = rec.list_runs(pws.db, "watched")
    assert len(runs) == 2 and {r.status for r in runs} == {"FINISHED"}
    resumed = rec.get_run(pws.db, killed.id)
    assert resumed.attempt == 2
    assert len({r.trigger_slot for r in runs}) == 2
    # The resumed run reused its completed first task, and the event's run found both
    # tasks in the cache (same code, same data): `first` ran once in all.
    assert len(list(folder.glob("first-*"))) == 1
    again = _scheduler(root, "--once")
    out, _ = again.communicate(timeout=120)
    assert again.returncode == 0, out
    assert len(rec.list_runs(pws.db, "watched")) == 2


EVENT_FLOW = """
from loopml.pipelines import on_event, pipeline, task

@task
def noop(n: int) -> int:
    return n

@pipeline(triggers=[on_event("tick", coalesce=False)])
def ticking(n: int = 1):
    return noop(n)
"""


@pytest.mark.slow
def test_two_scheduler_processes_start_each_triggered_run_once(pws: Workspace) -> None:
    root = pws.root
    (root / "flow.py").write_text(textwrap.dedent(EVENT_FLOW))
    procs = [_scheduler(root, "--for", "4s", "--interval", "1s") for _ in range(2)]
    for _ in range(20):
        emit_event("tick")
        time.sleep(0.05)
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    runs = rec.list_runs(pws.db, "ticking")
    assert sorted(int(r.trigger_slot or 0) for r in runs) == [e.id for e in list_events("tick")]
    assert {r.status for r in runs} == {"FINISHED"} and len(runs) == 20


@pytest.mark.slow
def test_an_interval_under_a_second_is_refused(pws: Workspace) -> None:
    sched = Scheduler([nightly], pws)
    for interval in (0.0, 0.5, -1.0):
        with pytest.raises(PipelineDefinitionError, match="interval must be at least 1s"):
            sched.run(interval=interval, duration=5)
    assert sched.report.ticks == 0


def test_a_missing_data_path_warns_at_definition_and_fails_under_run(pws: Workspace) -> None:
    with pytest.warns(LoopmlWarning, match=r"on_new_data\('no/such/dir'\): there is no such"):

        @pipeline(triggers=[on_new_data("no/such/dir")])
        def watching(path: str = "x"):
            return size_of(path)

    sched = Scheduler([watching], pws)
    with pytest.raises(PipelineDefinitionError) as info:
        sched.run(once=True)
    assert "on_new_data watches a path that is not there: no/such/dir (pipeline watching" in str(
        info.value
    )
    assert sched.report.ticks == 0
    (pws.root / "no" / "such" / "dir").mkdir(parents=True)
    assert sched.run(once=True).ticks == 1
