"""The event seam: every area's notable facts become events in the same transaction, a
rolled-back transaction leaves none, and the scheduler starts pipelines on loopml's own kinds."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Connection, insert, select

import loopml
from loopml.events import KINDS, NAMESPACES, Event, check_kind, emit, last_id, read
from loopml.exceptions import InvalidValue
from loopml.pipelines import (
    PipelineDefinitionError,
    Scheduler,
    emit_event,
    on_event,
    pipeline,
    task,
)
from loopml.pipelines import records as rec
from loopml.pipelines.tables import pipeline_runs
from loopml.registry import PythonModel
from loopml.tracking.runs import reap_dead_runs
from loopml.tracking.tables import experiments, runs
from loopml.workspace import Workspace


class Constant(PythonModel):
    def predict(self, model_input):  # type: ignore[no-untyped-def]
        return [1] * len(model_input)


@pytest.fixture
def any_ws(ws: Workspace) -> Workspace:
    """``ws`` (every metadata backend) made the default workspace (tasks log to it)."""
    loopml.set_default_workspace(ws)
    return ws


def _loopml_events(ws: Workspace, prefix: str) -> list[Event]:
    return [e for e in read(ws.db) if e.kind.startswith(prefix)]


def test_every_kind_is_documented_once_in_its_namespace() -> None:
    assert {
        "run",
        "data",
        "model",
        "pipeline",
        "feature",
        "deployment",
        "alert",
        "llm",
        "rag",
    } == set(NAMESPACES)
    for name, kind in KINDS.items():
        assert kind.name == name and kind.meaning and kind.subject
        assert check_kind(name) == name
    for required in (
        "run.finished",
        "run.failed",
        "run.killed",
        "data.version_added",
        "model.registered",
        "model.promoted",
        "model.rolled_back",
        "model.alias_set",
        "pipeline.failed",
        "pipeline.succeeded",
        "feature.applied",
        "feature.materialized",
    ):
        assert required in KINDS


def test_the_architecture_page_lists_exactly_these_kinds() -> None:
    page = Path(__file__).parent.parent / "docs" / "architecture.md"
    section = page.read_text().split("## Events: how the loop closes", 1)[1].split("\n## ")[0]
    listed = re.findall(r"^\| `([a-z_.]+)` \|", section, flags=re.MULTILINE)
    assert listed == list(KINDS)


def test_a_typo_in_a_loopml_kind_is_refused_with_the_likely_kind(ws: Workspace) -> None:
    with pytest.raises(InvalidValue, match="Did you mean 'model.promoted'") as info:
        emit(ws.db, "model.promotd", "churn")
    assert "'team.model.promotd'" in str(info.value)
    with pytest.raises(PipelineDefinitionError, match="Did you mean 'run.failed'"):
        on_event("run.fail")
    # your own kinds are free-form, dotted or not
    assert [check_kind(k) for k in ("alert", "team.nightly", "drift")] == [
        "alert",
        "team.nightly",
        "drift",
    ]
    assert read(ws.db) == []


def test_a_bad_event_is_refused_before_a_workspace_is_looked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no loopml.toml above: no default workspace
    with pytest.raises(InvalidValue, match="at most 250 characters"):
        emit_event("alert", subject="s" * 300)
    with pytest.raises(InvalidValue, match="not JSON-serialisable"):
        emit_event("alert", payload={"when": float("nan")})
    with pytest.raises(InvalidValue, match="Did you mean 'model.registered'"):
        emit_event("model.registerd")


def test_tracking_runs_write_finished_failed_and_killed(ws: Workspace) -> None:
    with ws.start_run(experiment="churn", name="good") as good:
        pass
    with pytest.raises(ZeroDivisionError), ws.start_run(experiment="churn", name="bad") as bad:
        1 / 0  # noqa: B018
    with pytest.raises(KeyboardInterrupt), ws.start_run(experiment="churn") as stopped:
        raise KeyboardInterrupt
    found = _loopml_events(ws, "run.")
    assert [(e.kind, e.subject, e.payload["run_id"]) for e in found] == [  # type: ignore[index]
        ("run.finished", "churn", good.id),
        ("run.failed", "churn", bad.id),
        ("run.killed", "churn", stopped.id),
    ]
    assert found[0].payload == {"run_id": good.id, "name": "good"}
    assert found[1].payload["error"] == "ZeroDivisionError: division by zero"  # type: ignore[index]


def test_a_run_whose_process_died_is_reaped_with_its_event(ws: Workspace) -> None:
    def orphan(conn: Connection) -> None:
        exp = conn.execute(select(experiments.c.id).where(experiments.c.name == "x")).scalar()
        conn.execute(
            insert(runs).values(
                id="d" * 32,
                experiment_id=exp,
                name="orphan",
                status="RUNNING",
                start_time=1,
                owner="elsewhere:1:0",
                heartbeat_at=1,
            )
        )

    with ws.start_run(experiment="x"):
        pass
    ws.db.transact(orphan)
    assert reap_dead_runs(ws.db) == ["d" * 32]
    killed = read(ws.db, kinds="run.killed")
    assert [(e.subject, e.payload) for e in killed] == [
        ("x", {"run_id": "d" * 32, "name": "orphan"})
    ]


def test_the_registry_writes_register_promote_rollback_and_aliases(ws: Workspace) -> None:
    for _ in range(3):
        ws.register_model("churn", Constant())
    ws.promote("churn", 1)
    ws.promote("churn", 2)
    ws.promote("churn", 3, to="staging")
    assert ws.rollback("churn") == 1
    ws.set_alias("churn", "champion", 2)
    ws.set_alias("churn", "champion", 1)
    ws.models.delete_alias("churn", "champion")
    found = _loopml_events(ws, "model.")
    assert {e.subject for e in found} == {"churn"}
    assert [(e.kind, e.payload) for e in found] == [
        ("model.registered", {"version": 1, "run_id": None}),
        ("model.registered", {"version": 2, "run_id": None}),
        ("model.registered", {"version": 3, "run_id": None}),
        ("model.promoted", {"version": 1, "previous": None, "forced": False}),
        ("model.promoted", {"version": 2, "previous": 1, "forced": False}),
        ("model.stage_changed", {"version": 3, "stage": "Staging"}),
        ("model.rolled_back", {"version": 1, "previous": 2}),
        ("model.alias_set", {"alias": "champion", "version": 2, "previous": None}),
        ("model.alias_set", {"alias": "champion", "version": 1, "previous": 2}),
        ("model.alias_removed", {"alias": "champion", "previous": 1}),
    ]
    # the registry's own history is kept beside them
    assert [e.kind for e in ws.models.history("churn")].count("registered") == 3


@pytest.mark.slow
def test_an_event_emitted_in_a_transaction_that_rolls_back_is_gone(ws: Workspace) -> None:
    kept = emit(ws.db, "alert", "churn", {"psi": 0.2})

    def fails(conn: Connection) -> None:
        emit(conn, "model.promoted", "churn", {"version": 9})
        raise RuntimeError("the fact could not be written")

    with pytest.raises(RuntimeError):
        ws.db.transact(fails)
    assert [e.id for e in read(ws.db)] == [kept]
    assert last_id(ws.db) == kept

    def commits(conn: Connection) -> int:
        return emit(conn, "model.promoted", "churn", {"version": 9})

    together = ws.db.transact(commits)
    assert together > kept
    assert [(e.kind, e.payload) for e in read(ws.db, kept)] == [("model.promoted", {"version": 9})]
    assert read(ws.db, kinds=["alert", "run.failed"], subject="churn")[0].id == kept


@pytest.mark.parametrize("store", ["sqlite-file", "postgres"])
@pytest.mark.slow
def test_ids_become_visible_in_order_so_a_cursor_never_skips_one(
    workspace_factory: Callable[..., Workspace], store: str
) -> None:
    ws = workspace_factory(store)
    ws.db.connect()
    emitted, release = threading.Event(), threading.Event()

    def slow(conn: Connection) -> None:
        emit(conn, "alert", "slow")
        emitted.set()
        release.wait(10)  # a long transaction: its event is not committed yet

    first = threading.Thread(target=ws.db.transact, args=(slow,))
    first.start()
    assert emitted.wait(10)
    second = threading.Thread(target=lambda: emit(ws.db, "alert", "fast"))
    second.start()
    time.sleep(0.5)
    # the later event waits for the earlier one: a consumer can't see it first, move its
    # cursor past it, and then miss the earlier one when it commits
    assert read(ws.db) == []
    release.set()
    first.join(10)
    second.join(10)
    found = read(ws.db)
    assert [e.subject for e in found] == ["slow", "fast"]
    assert found[0].id < found[1].id


@task
def step(note: str) -> str:
    return note


@task
def explode(note: str) -> str:
    raise ValueError(f"no {note}")


@pipeline
def fine(note: str = "ok"):
    return step(note)


@pipeline
def broken(note: str = "data"):
    return explode(note)


def test_pipeline_runs_write_succeeded_and_failed(any_ws: Workspace) -> None:
    good = loopml.run_pipeline(fine)
    bad = loopml.run_pipeline(broken, raise_on_failure=False)
    found = _loopml_events(any_ws, "pipeline.")
    assert [(e.kind, e.subject, e.payload["run_id"]) for e in found] == [  # type: ignore[index]
        ("pipeline.succeeded", "fine", good.id),
        ("pipeline.failed", "broken", bad.id),
    ]
    assert found[0].payload == {"run_id": good.id, "partition": None, "trigger": "manual"}
    assert found[1].payload["error"]  # type: ignore[index]


def test_a_pipeline_run_whose_process_died_is_reaped_with_its_event(any_ws: Workspace) -> None:
    any_ws.db.transact(
        lambda conn: conn.execute(
            insert(pipeline_runs).values(
                id="e" * 32,
                pipeline="nightly",
                status="RUNNING",
                params="{}",
                partition="2026-11-30",
                trigger="schedule:0 3 * * *",
                attempt=1,
                owner="elsewhere:1:0",
                created_at=1,
                heartbeat_at=1,
            )
        )
    )
    assert rec.reap_stale(any_ws.db) == ["e" * 32]
    assert [(e.kind, e.subject, e.payload) for e in read(any_ws.db)] == [
        (
            "pipeline.killed",
            "nightly",
            {"run_id": "e" * 32, "partition": "2026-11-30", "trigger": "schedule:0 3 * * *"},
        )
    ]


def test_a_promotion_starts_the_pipeline_that_listens_for_it(any_ws: Workspace) -> None:
    @pipeline(triggers=[on_event("model.promoted", subject="churn")])
    def redeploy(note: str = "promoted"):
        step(note)

    sched = Scheduler([redeploy], any_ws)
    any_ws.register_model("churn", Constant())
    any_ws.register_model("other", Constant())
    assert sched.tick() == []  # registered, not promoted
    any_ws.promote("other", 1)
    assert sched.tick() == []  # another model
    any_ws.promote("churn", 1)
    claims = sched.tick()
    assert [c.pipeline.name for c in claims] == ["redeploy"]
    detail = rec.get_run(any_ws.db, claims[0].run_id).trigger_detail
    assert detail["event"] == "model.promoted" and detail["subject"] == "churn"
    assert detail["payload"] == {"version": 1, "previous": None, "forced": False}
    sched.execute(claims, wait=True)
    assert rec.get_run(any_ws.db, claims[0].run_id).status == "FINISHED"
    assert sched.tick() == []
