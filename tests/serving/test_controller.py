"""The canary controller over synthetic prediction logs: a healthy canary advances and
completes through the gate, bad ones (errors, drift, the gate) roll back, too little
traffic or time waits. Time is simulated with ``now=``."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import pytest
from click.testing import CliRunner

from loopml.cli.main import cli
from loopml.events import read
from loopml.exceptions import Conflict, InvalidInput
from loopml.registry.gates import GatePolicy
from loopml.serving.controller import (
    StepStats,
    VariantStats,
    decide,
    psi,
    step_stats,
    watch_once,
)
from loopml.serving.deployments import Deployment
from loopml.serving.log import PredictionLogger, to_json
from loopml.workspace import Workspace

STEP_S = 60.0


def start_canary(ws: Workspace, **overrides: Any) -> Deployment:
    options: dict[str, Any] = {
        "steps": [10, 50, 100],
        "step_duration": STEP_S,
        "min_requests": 50,
        "aborts": ["error_rate > 0.02", "prediction_psi > 0.25", "p99_ms > 250"],
    }
    options.update(overrides)
    return ws.deployments.canary("churn", "double/2", **options)


def log_step(
    ws: Workspace,
    deployment: Deployment,
    *,
    primary: int = 500,
    canary: int = 250,
    canary_errors: int = 0,
    canary_shift: float = 0.0,
    labels: dict[str, int] | None = None,
    seed: int = 0,
) -> None:
    """Log ``primary`` + ``canary`` answered requests in ``deployment``'s current revision
    (predictions ~ N(10, 1), the canary's moved by ``canary_shift``)."""
    rng = random.Random(seed)
    assert deployment.created_at is not None
    logger = PredictionLogger(ws.blobs)
    counts = {"primary": primary, "canary": canary}
    for variant, count in counts.items():
        for i in range(count):
            request_id = f"r{deployment.revision}-{variant}-{i}"
            failed = variant == "canary" and i < canary_errors
            value = rng.gauss(10.0, 1.0) + (canary_shift if variant == "canary" else 0.0)
            logger.log(
                {
                    "request_id": request_id,
                    "time": deployment.created_at + timedelta(milliseconds=i + 1),
                    "deployment": deployment.name,
                    "revision": deployment.revision,
                    "model": "double/2" if variant == "canary" else "double/1",
                    "variant": variant,
                    "shadow": False,
                    "inputs": to_json([{"x": 1.0, "n": 1}]),
                    "outputs": None if failed else to_json([value]),
                    "latency_ms": rng.uniform(1.0, 5.0),
                    "error": "ValueError: boom" if failed else None,
                }
            )
    for request_id, label in (labels or {}).items():
        logger.feedback(
            {
                "request_id": request_id,
                "time": deployment.created_at + timedelta(seconds=1),
                "deployment": deployment.name,
                "label": to_json(label),
                "reward": None,
            }
        )
    logger.close()


def after_step(deployment: Deployment) -> Any:
    assert deployment.created_at is not None
    return deployment.created_at + timedelta(seconds=STEP_S + 1)


def canary_events(ws: Workspace) -> list[tuple[str, str]]:
    return [
        (e.kind, (e.payload or {}).get("reason", ""))
        for e in read(ws.db)
        if e.kind.startswith("deployment.canary_")
    ]


def test_psi_is_zero_for_one_distribution_and_large_for_a_shift() -> None:
    rng = random.Random(1)
    base = [rng.gauss(0, 1) for _ in range(2000)]
    same = [rng.gauss(0, 1) for _ in range(2000)]
    shifted = [rng.gauss(1, 1) for _ in range(2000)]
    assert psi(base, base) == pytest.approx(0.0, abs=1e-12)
    assert psi(base, same) < 0.05
    assert psi(base, shifted) > 0.25
    # Empty bins get an epsilon share instead of a division by zero.
    assert psi(base, [100.0] * 50) > 5
    # A constant primary still bins (two bins around the one value).
    assert psi([1.0] * 20, [1.0] * 20) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(InvalidInput, match="both sides"):
        psi([], [1.0])


def test_a_healthy_canary_advances_step_by_step_and_completes(serving_ws: Workspace) -> None:
    ws = serving_ws
    current = start_canary(ws)
    shares = []
    for step in range(3):
        log_step(ws, current, seed=step)
        decision = watch_once(ws, "churn", now=after_step(current))
        shares.append(current.variant("canary").weight)
        assert decision.deployment is not None
        if step < 2:
            assert decision.action == "advance", decision.reason
            assert "healthy over 250 canary requests" in decision.reason
            current = decision.deployment
            assert current.settings["step"] == step + 1
        else:
            assert decision.action == "complete", decision.reason
    assert shares == [10.0, 50.0, 100.0]
    final = ws.deployments.get("churn")
    assert final.strategy == "single"
    assert [(v.name, v.model, v.weight) for v in final.variants] == [
        ("primary", "models:/double/2", 100.0)
    ]
    assert ws.models.get("models:/double@production").version == 2
    kinds = [k for k, _ in canary_events(ws)]
    assert kinds == [
        "deployment.canary_advanced",
        "deployment.canary_advanced",
        "deployment.canary_completed",
    ]


def test_a_canary_that_follows_an_alias_keeps_following_it(serving_ws: Workspace) -> None:
    ws = serving_ws
    ws.models.promote("double", 1, to="production")
    ws.deployments.single("churn", "double@production")
    current = start_canary(ws, steps=[100])
    log_step(ws, current)
    decision = watch_once(ws, "churn", now=after_step(current))
    assert decision.action == "complete", decision.reason
    final = ws.deployments.get("churn")
    assert final.primary.model == "models:/double@production" and final.strategy == "single"
    assert ws.models.get("models:/double@production").version == 2


def test_an_erroring_canary_aborts_back_to_the_primary(serving_ws: Workspace) -> None:
    ws = serving_ws
    current = start_canary(ws)
    log_step(ws, current, canary=60, canary_errors=6)  # 10% > 2%; too few for PSI
    # Before the step's time is up: errors that clear abort at once.
    decision = watch_once(ws, "churn", now=current.created_at)
    assert decision.action == "abort"
    assert "error_rate = 0.1 (error_rate > 0.02)" in decision.reason
    final = ws.deployments.get("churn")
    assert final.strategy == "single"
    assert [(v.name, v.model, v.weight) for v in final.variants] == [
        ("primary", "models:/double/1", 100.0)
    ]
    assert "error_rate" in (final.reason or "")
    [(kind, reason)] = canary_events(ws)
    assert kind == "deployment.canary_aborted" and "error_rate = 0.1" in reason
    assert ws.models.get("models:/double/2").stage != "Production"


def test_a_drifted_canary_aborts(serving_ws: Workspace) -> None:
    ws = serving_ws
    current = start_canary(ws)
    log_step(ws, current, canary_shift=3.0)
    stats = step_stats(ws, current, current.created_at)  # type: ignore[arg-type]
    assert stats.prediction_psi is not None and stats.prediction_psi > 0.25
    assert stats.canary.error_rate == 0 and stats.canary.requests == 250
    assert stats.primary.requests == 500
    decision = watch_once(ws, "churn", now=after_step(current))
    assert decision.action == "abort" and "prediction_psi" in decision.reason
    assert ws.deployments.get("churn").strategy == "single"


def test_too_few_requests_or_too_little_time_waits(serving_ws: Workspace) -> None:
    ws = serving_ws
    current = start_canary(ws)
    log_step(ws, current, canary=30)  # min_requests is 50
    decision = watch_once(ws, "churn", now=after_step(current))
    assert decision.action == "wait" and "30 of 50 canary requests" in decision.reason
    # 30 predictions are too few for PSI: by chance alone it would be about 0.3.
    assert step_stats(ws, current, current.created_at).prediction_psi is None  # type: ignore[arg-type]
    assert decision.deployment is None
    log_step(ws, current, canary=60, primary=0, seed=3)
    early = current.created_at + timedelta(seconds=10)  # type: ignore[operator]
    decision = watch_once(ws, "churn", now=early)
    assert decision.action == "wait" and "10s of 60s" in decision.reason
    assert ws.deployments.get("churn").revision == current.revision
    assert canary_events(ws) == []


def test_a_candidate_the_gate_blocks_aborts_with_the_gate_reason(serving_ws: Workspace) -> None:
    ws = serving_ws
    current = start_canary(ws, steps=[100])
    log_step(ws, current)
    blocking = GatePolicy(min_score=0.99, beat_champion=False)
    decision = watch_once(ws, "churn", now=after_step(current), policy=blocking)
    assert decision.action == "abort"
    assert "registry gate blocked" in decision.reason and "blocked by the gate" in decision.reason
    final = ws.deployments.get("churn")
    assert final.strategy == "single" and final.primary.model == "models:/double/1"
    [(kind, _)] = canary_events(ws)
    assert kind == "deployment.canary_aborted"


def test_accuracy_from_feedback_labels_aborts(serving_ws: Workspace) -> None:
    ws = serving_ws
    current = start_canary(ws, aborts=["accuracy < 0.5"])
    labels = {f"r{current.revision}-canary-{i}": -1 for i in range(20)}
    log_step(ws, current, labels=labels)
    stats = step_stats(ws, current, current.created_at)  # type: ignore[arg-type]
    assert stats.canary.accuracy == 0.0 and stats.primary.accuracy is None
    decision = watch_once(ws, "churn", now=after_step(current))
    assert decision.action == "abort" and "accuracy = 0" in decision.reason


def test_decide_is_pure_and_judges_aborts_only_after_enough_requests(
    serving_ws: Workspace,
) -> None:
    current = start_canary(serving_ws)
    bad = VariantStats(requests=5, error_rate=0.6, p50_ms=1, p99_ms=2)
    stats = StepStats(primary=VariantStats(requests=100, error_rate=0.0), canary=bad)
    now = after_step(current)
    assert decide(current, stats, now).action == "wait"  # 5 requests decide nothing
    enough = StepStats(primary=stats.primary, canary=VariantStats(requests=20, error_rate=0.5))
    assert decide(current, enough, now).action == "abort"
    # A metric that can't be computed (no PSI) doesn't hold.
    fine = StepStats(
        primary=stats.primary, canary=VariantStats(requests=80, error_rate=0.0, p99_ms=3)
    )
    assert decide(current, fine, now).action == "advance"
    assert serving_ws.deployments.get("churn").revision == current.revision  # nothing stored
    with pytest.raises(InvalidInput, match="not a canary"):
        decide(serving_ws.deployments.single("churn", "double/1"), fine, now)


def test_cli_watch_once_and_until_done(serving_ws: Workspace, monkeypatch: Any) -> None:
    ws = serving_ws
    monkeypatch.chdir(ws.settings.root)
    runner = CliRunner()
    start_canary(ws)
    result = runner.invoke(cli, ["deploy", "watch", "churn", "--once"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("churn: wait: step 1 of 3 (10%)")
    current = ws.deployments.get("churn")
    log_step(ws, current, canary_errors=10)
    result = runner.invoke(cli, ["deploy", "watch", "churn", "--interval", "0.01"])
    assert result.exit_code == 0, result.output
    assert "churn: abort: error_rate" in result.output
    result = runner.invoke(cli, ["deploy", "watch", "churn", "--once"])
    assert result.exit_code != 0 and "not a canary" in result.output
    result = runner.invoke(cli, ["deploy", "watch", "churn", "--interval", "soon"])
    assert result.exit_code != 0 and "--interval" in result.output


def test_the_scheduler_tick_drives_canaries(serving_ws: Workspace) -> None:
    """`loopml scheduler run` turns the loop without a person: each tick decides on every
    running canary (advancing this one) and leaves other deployments alone."""
    from loopml.pipelines import on_schedule, pipeline, task
    from loopml.pipelines.scheduler import Scheduler
    from loopml.serving.controller import watch_all

    @task
    def noop() -> int:
        return 0

    @pipeline(triggers=[on_schedule("0 3 * * *")])
    def nightly() -> int:
        return noop()

    ws = serving_ws
    current = start_canary(ws)
    log_step(ws, current, seed=0)
    lines: list[str] = []
    scheduler = Scheduler([nightly], ws, clock=lambda: after_step(current), log=lines.append)
    scheduler.tick()
    advanced = ws.deployments.get("churn")
    assert advanced.strategy == "canary" and advanced.settings["step"] == 1
    assert any(line.startswith("canary churn: advance:") for line in lines), lines
    # The new step has no traffic yet: the next tick waits, and changes nothing.
    waiting = watch_all(ws, now=after_step(advanced))
    assert list(waiting) == ["churn"] and waiting["churn"].action == "wait"
    assert ws.deployments.get("churn").revision == advanced.revision


def test_a_change_made_while_completing_refuses_the_completion_and_promotes_nothing(
    serving_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A person stops the canary while the controller reads its traffic: the completion
    loses the race (Conflict) and the candidate stays unpromoted; the person's change
    stands."""
    import loopml.serving.controller as controller

    ws = serving_ws
    current = start_canary(ws, steps=[100])
    log_step(ws, current)
    real_step_stats = controller.step_stats

    def stats_then_someone_stops_the_canary(*args: Any, **kwargs: Any) -> StepStats:
        stats = real_step_stats(*args, **kwargs)
        ws.deployments.single("churn", "double/1", reason="operator stops the canary")
        return stats

    monkeypatch.setattr(controller, "step_stats", stats_then_someone_stops_the_canary)
    with pytest.raises(Conflict, match="changed meanwhile"):
        watch_once(ws, "churn", now=after_step(current))
    assert ws.models.get("models:/double/2").stage != "Production"
    with pytest.raises(LookupError):
        ws.models.get("models:/double@production")
    final = ws.deployments.get("churn")
    assert final.reason == "operator stops the canary" and final.primary.model.endswith("/1")
    assert canary_events(ws) == []


def test_a_blocked_gate_after_the_completion_is_stored_puts_the_primary_back(
    serving_ws: Workspace,
) -> None:
    """The completion is stored before the promotion; the gate then blocks, so the next
    revision restores the primary and the history says both."""
    ws = serving_ws
    current = start_canary(ws, steps=[100])
    log_step(ws, current)
    blocking = GatePolicy(min_score=0.99, beat_champion=False)
    decision = watch_once(ws, "churn", now=after_step(current), policy=blocking)
    assert decision.action == "abort" and decision.deployment is not None
    history = ws.deployments.history("churn")
    completed, aborted = history[-2], history[-1]
    assert completed.primary.model == "models:/double/2"
    assert (completed.reason or "").startswith("canary completed:")
    assert aborted.primary.model == "models:/double/1" and aborted.strategy == "single"
    assert "registry gate blocked" in (aborted.reason or "")
    assert decision.deployment.revision == aborted.revision
    assert [k for k, _ in canary_events(ws)] == ["deployment.canary_aborted"]


def test_a_promotion_that_crashes_puts_the_primary_back_and_raises(
    serving_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = serving_ws
    current = start_canary(ws, steps=[100])
    log_step(ws, current)

    def crash(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("registry bug")

    monkeypatch.setattr(ws.models, "promote", crash)
    with pytest.raises(RuntimeError, match="registry bug"):
        watch_once(ws, "churn", now=after_step(current))
    final = ws.deployments.get("churn")
    assert final.strategy == "single" and final.primary.model == "models:/double/1"
    assert "the promotion of double/2 failed: RuntimeError: registry bug" in (final.reason or "")
    assert [k for k, _ in canary_events(ws)] == ["deployment.canary_aborted"]
