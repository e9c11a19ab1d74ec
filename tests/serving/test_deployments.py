"""``ws.deployments``: create, every strategy, history, rollback, events and the revision
guard, on every metadata backend (the ``ws`` fixture: SQLite file and memory, PostgreSQL)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from loopml.events import read
from loopml.exceptions import Conflict, InvalidInput, ModelNotFound, ModelVersionNotFound
from loopml.serving import strategies as d
from loopml.serving.deployments import Deployment, DeploymentNotFound, save
from loopml.serving.strategies import Abort
from loopml.workspace import Workspace


class Constant:
    """A tiny model: predicts ``value`` for every row."""

    def __init__(self, value: int) -> None:
        self.value = value

    def predict(self, rows: Any) -> list[int]:
        return [self.value] * len(rows)


def _with_churn(ws: Workspace) -> Workspace:
    for value in range(4):
        ws.models.register("churn", Constant(value))
    ws.models.promote("churn", 1, to="production")
    ws.deployments.create("churn", "churn@production", key="user_id", reason="launch")
    return ws


@pytest.fixture
def churn(ws: Workspace) -> Workspace:
    """``ws`` with churn versions 1–4, version 1 in Production, and deployment ``churn``
    following ``churn@production``."""
    return _with_churn(ws)


@pytest.fixture(params=["sqlite-file", "postgres"])
def shared_churn(
    request: pytest.FixtureRequest, workspace_factory: Callable[..., Workspace]
) -> Workspace:
    """``churn`` on the stores two connections can share (not in-memory SQLite)."""
    return _with_churn(workspace_factory(request.param))


def roles(deployment: Deployment) -> list[tuple[str, str, float, str]]:
    return [(v.name, v.model, v.weight, v.role) for v in deployment.variants]


def deployment_events(ws: Workspace) -> list[tuple[str, dict[str, Any] | None]]:
    return [(e.kind, e.payload) for e in read(ws.db) if e.kind.startswith("deployment.")]


def test_create_get_list(churn: Workspace) -> None:
    got = churn.deployments.get("churn")
    assert got.revision == 1 and got.strategy == "single" and got.key == "user_id"
    assert roles(got) == [("primary", "models:/churn@production", 100.0, "primary")]
    assert got.reason == "launch" and got.actor
    churn.deployments.create("pricing", "churn/2")
    assert [x.name for x in churn.deployments.list()] == ["churn", "pricing"]
    with pytest.raises(Conflict, match="exists"):
        churn.deployments.create("churn", "churn/2")
    with pytest.raises(ModelNotFound, match="nosuch"):
        churn.deployments.create("other", "nosuch/1")
    with pytest.raises(DeploymentNotFound, match="Did you mean 'churn'"):
        churn.deployments.get("chrun")


def test_every_strategy_writes_a_revision_and_an_event(churn: Workspace) -> None:
    deps = churn.deployments
    shadowed = deps.shadow("churn", "churn/2")
    assert shadowed.strategy == "shadow" and shadowed.revision == 2
    assert roles(shadowed) == [
        ("primary", "models:/churn@production", 100.0, "primary"),
        ("shadow", "models:/churn/2", 0.0, "shadow"),
    ]
    assert shadowed.key == "user_id", "a strategy keeps the sticky key"

    canary = deps.canary(
        "churn",
        "churn/3",
        [10, 50, 100],
        step_duration=300,
        min_requests=50,
        aborts=["error_rate > 0.02", "p99_ms>=250"],
        reason="try v3",
    )
    assert roles(canary) == [
        ("primary", "models:/churn@production", 90.0, "primary"),
        ("canary", "models:/churn/3", 10.0, "candidate"),
    ]
    assert canary.settings == {
        "steps": [10.0, 50.0, 100.0],
        "step": 0,
        "step_duration_s": 300.0,
        "min_requests": 50,
        "aborts": ["error_rate > 0.02", "p99_ms >= 250"],
    }
    assert deps.get("churn").settings == canary.settings, "settings survive the store"
    assert canary.reason == "try v3"

    green = deps.blue_green("churn", "churn/4")
    assert [(v.name, v.role, v.weight) for v in green.variants] == [
        ("blue", "primary", 100.0),
        ("green", "standby", 0.0),
    ]
    switched = deps.switch("churn")
    assert switched.primary.model == "models:/churn/4"
    assert switched.reason == "switch to green (models:/churn/4)"
    back = deps.switch("churn", reason="green is slow")
    assert back.primary.name == "blue" and back.reason == "green is slow"

    split = deps.ab(
        "churn", {"a": ("churn/3", 40), "b": ("churn/4", 60)}, key="account", metric="value"
    )
    assert roles(split) == [
        ("a", "models:/churn/3", 40.0, "variant"),
        ("b", "models:/churn/4", 60.0, "variant"),
    ]
    assert split.key == "account" and split.settings == {"metric": "value"}

    challenged = deps.champion_challenger("churn", "churn/2")
    assert challenged.strategy == "champion-challenger"
    # The A/B's heavier arm was the one answering; it becomes the champion.
    assert roles(challenged) == [
        ("champion", "models:/churn/4", 100.0, "primary"),
        ("challenger", "models:/churn/2", 0.0, "shadow"),
    ]
    alone = deps.single("churn", "churn@production")
    assert alone.strategy == "single" and alone.settings == {} and alone.revision == 9

    found = deployment_events(churn)
    assert [kind for kind, _ in found] == ["deployment.created"] + ["deployment.changed"] * 8
    assert [p["revision"] for _, p in found if p] == list(range(1, 10))
    assert found[2][1] == {"revision": 3, "strategy": "canary", "reason": "try v3"}
    history = deps.history("churn")
    assert [h.strategy for h in history] == [
        "single",
        "shadow",
        "canary",
        "blue-green",
        "blue-green",
        "blue-green",
        "ab",
        "champion-challenger",
        "single",
    ]


def test_rollback_restores_the_previous_configuration(churn: Workspace) -> None:
    before = churn.deployments.shadow("churn", "churn/2")
    churn.deployments.canary("churn", "churn/3")
    back = churn.deployments.rollback("churn", reason="p99 too high")
    assert back.revision == 4 and back.reason == "p99 too high"
    assert back.config() == before.config()
    assert deployment_events(churn)[-1] == (
        "deployment.rolled_back",
        {"revision": 4, "strategy": "shadow", "reason": "p99 too high"},
    )


def test_rolling_back_a_canary_goes_back_to_what_served_before_it(churn: Workspace) -> None:
    """Not to the canary's previous step; and rollbacks walk back, never back and forth."""
    deps = churn.deployments
    created = deps.get("churn")  # churn@production alone
    pinned = deps.single("churn", "churn/1")
    deps.canary("churn", "churn/2", steps=[10, 50, 100])
    for step in (1, 2):  # the controller advances it
        current = deps.get("churn")
        deps.update(replace(current, settings={**current.settings, "step": step}))
    assert deps.rollback("churn").config() == pinned.config()  # not the canary at 50%
    # a completed canary (its candidate now served alone) goes back to what served before
    deps.canary("churn", "churn/3", steps=[50, 100])
    deps.single("churn", "churn/3", reason="canary complete")
    assert deps.rollback("churn").config() == pinned.config()
    assert deps.rollback("churn").config() == created.config()
    with pytest.raises(Conflict, match="If a promotion was the change, roll the model back"):
        deps.rollback("churn")


def test_a_feature_service_must_exist(churn: Workspace) -> None:
    from loopml.features.errors import FeatureNotFound

    with pytest.raises(FeatureNotFound, match="No feature definitions: features.py is not in"):
        churn.deployments.create("other", "churn/1", feature_service="nosvc")
    assert [d.name for d in churn.deployments.list()] == ["churn"]  # nothing stored


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"steps": [25, 5]}, "larger than the one before (5 follows 25)"),
        ({"steps": [5, 5, 100]}, "5 follows 5"),
        ({"steps": [0.5, 50]}, "0.5 not within 1–100"),
        ({"steps": [50, 150]}, "150 not within 1–100"),
        ({"steps": []}, "at least one step"),
        ({"aborts": ["latency > 3"]}, "unknown metric 'latency'"),
        ({"aborts": ["p99 > 3"]}, "Did you mean 'p99_ms'?"),
        ({"aborts": ["error_rate = 0.1"]}, "operator '=' is not one of"),
        ({"aborts": ["error_rate 0.1"]}, "operator none"),
        ({"aborts": ["error_rate > lots"]}, "'lots' after '>' is not a finite number"),
        ({"aborts": ["error_rate > nan"]}, "not a finite number"),
        ({"aborts": [""]}, "write METRIC OP NUMBER"),
        ({"step_duration": 0}, "positive number of seconds"),
        ({"min_requests": -1}, "0 or more"),
    ],
)
@pytest.mark.slow
def test_canary_refuses_bad_input_and_changes_nothing(
    churn: Workspace, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidInput, match=message.replace("(", r"\(").replace(")", r"\)")):
        churn.deployments.canary("churn", "churn/2", **kwargs)
    assert churn.deployments.revision("churn") == 1


def test_candidates_must_exist_and_differ_from_the_primary(churn: Workspace) -> None:
    deps = churn.deployments
    with pytest.raises(ModelVersionNotFound, match="no version 9"):
        deps.canary("churn", "churn/9")
    with pytest.raises(ModelNotFound, match="nosuch"):
        deps.shadow("churn", "nosuch/1")
    with pytest.raises(InvalidInput, match="already serves models:/churn@production"):
        deps.blue_green("churn", "churn@production")
    with pytest.raises(InvalidInput, match="not blue-green"):
        deps.switch("churn")
    with pytest.raises(DeploymentNotFound, match="nosuch"):
        deps.champion_challenger("nosuch", "churn/2")
    assert deps.revision("churn") == 1


@pytest.mark.parametrize(
    ("variants", "metric", "message"),
    [
        ({"a": ("churn/2", 50), "b": ("churn/3", 40)}, "conversion", "add up to 90, not 100"),
        ({"a": ("churn/2", 100)}, "conversion", "at least two variants"),
        ({"a": ("churn/2", 50), "b": ("churn/3", 50)}, "revenue", "metric 'revenue'"),
        ({"a": ("churn/2", 50), "b": ("churn/2", 50)}, "conversion", "same model twice"),
        ({"a": ("churn/2", 50), "b b": ("churn/3", 50)}, "conversion", "Variant name 'b b'"),
    ],
)
@pytest.mark.slow
def test_ab_refuses_bad_input(
    churn: Workspace, variants: dict[str, tuple[str, float]], metric: str, message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        churn.deployments.ab("churn", variants, metric=metric)
    assert churn.deployments.revision("churn") == 1


def test_canary_steps_move_the_share() -> None:
    started = d.canary(Deployment("x", (d.Variant("primary", "m/1"),)), "m/2", [5, 25, 100])
    assert [v.weight for v in d.canary_step(started, 2).variants] == [0.0, 100.0]
    with pytest.raises(InvalidInput, match="steps 0–2, not 3"):
        d.canary_step(started, 3)
    with pytest.raises(InvalidInput, match="not a canary"):
        d.canary_step(Deployment("x", (d.Variant("primary", "m/1"),)), 0)


def test_abort_conditions_hold_when_the_metric_crosses() -> None:
    assert Abort.parse("error_rate > 0.02").holds(0.03)
    assert not Abort.parse("error_rate > 0.02").holds(0.02)
    assert Abort.parse("accuracy < 0.8").holds(0.7)
    assert Abort.parse(" prediction_psi>=0.25 ") == Abort("prediction_psi", ">=", 0.25)
    assert str(Abort.parse("p50_ms <= 1e2")) == "p50_ms <= 100"


def test_a_stale_revision_is_a_conflict(churn: Workspace) -> None:
    seen = churn.deployments.get("churn")
    churn.deployments.shadow("churn", "churn/2")  # someone else, meanwhile
    with pytest.raises(Conflict, match="changed meanwhile"):
        churn.deployments.update(d.canary(seen, "churn/3"))
    assert churn.deployments.get("churn").strategy == "shadow"


@pytest.mark.slow
def test_a_concurrent_uncommitted_change_wins_the_revision(shared_churn: Workspace) -> None:
    """Another writer stores revision 2 while our update is under way: ours is a Conflict
    (SQLite: our write waits for its lock; PostgreSQL: our insert waits on the unique index
    and loses), and revision 2 is theirs."""
    churn = shared_churn
    seen = churn.deployments.get("churn")
    outcome: list[BaseException | Deployment] = []

    def ours() -> None:
        try:
            outcome.append(churn.deployments.update(d.shadow(seen, "churn/3")))
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            outcome.append(exc)

    with churn.db.engine.connect() as conn:
        conn.execution_options(loopml_write=True)
        with conn.begin():
            save(conn, d.shadow(seen, "churn/2"), reason="theirs", expect_revision=1)
            worker = threading.Thread(target=ours)
            worker.start()
            time.sleep(0.5)  # ours is now waiting for the lock or the index
            assert not outcome, outcome
    worker.join(timeout=30)
    assert len(outcome) == 1 and isinstance(outcome[0], Conflict), outcome
    now = churn.deployments.get("churn")
    assert now.revision == 2 and now.reason == "theirs"
