"""``loopml status`` and ``ws.status()``: each maturity level built with the real APIs
(a model registered by hand or by a pipeline, a deployment, monitoring windows computed from
a real prediction log with an alert rule, a pipeline an ``alert`` event starts, a gate), the
lines saying what is missing, and the command's text, JSON and errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from click.testing import CliRunner

import loopml
from demo_runs import DemoRun
from loopml.exceptions import ModelNotFound
from loopml.monitoring.rules import AlertRule
from loopml.monitoring.settings import MonitorSettings
from loopml.pipelines import Scheduler, on_event, pipeline, task
from loopml.registry.gates import GatePolicy
from loopml.registry.models import PythonModel
from loopml.workspace import Workspace
from monitoring.traffic import HOUR, START, classifier, features, log

END = START + 2 * HOUR
RULE = AlertRule("input drift", "max(psi) > 0.25", deployment="churn")


class Doubler(PythonModel):
    def predict(self, model_input: Any) -> Any:
        return model_input["x"] * 2


@task
def fit(rows: int) -> Any:
    model, _ = classifier()
    return model


@task
def register(model: Any) -> int:
    _, train = classifier()
    with open("inputs.csv", "w") as fh:  # the data version the training run read
        fh.write("x\n1\n")
    loopml.log_input("inputs.csv", name="customers")
    loopml.log_metric("accuracy", 0.9)
    return loopml.register_model("churn", model, input_example=train.head(5)).version


@pipeline(triggers=[on_event("alert", subject="churn")], experiment="churn-training")
def train_churn(rows: int = 100):
    return register(fit(rows))


@pytest.fixture
def ws(
    default_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> Workspace:  # the module-level API (used by the tasks) acts on it
    monkeypatch.chdir(default_ws.root)
    return default_ws


def by_pipeline(ws: Workspace) -> int:
    """Run the training pipeline: the version it registered."""
    ws.pipelines.run(train_churn, executor="inline", cache=False)
    return ws.models.versions("churn")[-1].version


def test_an_empty_workspace_is_level_0_and_says_what_to_run_first(ws: Workspace) -> None:
    status = ws.status()
    assert status.empty and status.models == () and status.llm is None
    assert status.maturity.level == 0
    assert "nothing is registered yet" in status.maturity.missing[0]
    assert status.to_dict()["maturity"]["name"] == "manual"


def test_a_model_promoted_by_hand_is_level_0(ws: Workspace) -> None:
    ws.models.register("churn", Doubler())
    (model,) = ws.status().models
    assert model.production is None and model.maturity.level == 0
    assert model.maturity.missing == (
        "no version of churn is in Production: promote one (`loopml models promote churn 1`)",
    )
    with ws.runs.start(experiment="by-hand"):
        ws.models.register("churn", Doubler())
    ws.models.promote("churn", 2)
    status = ws.status()
    (model,) = status.models
    assert model.production == 2 and model.production_since is not None
    assert model.production_how == "promoted; its gate checked only the signature"
    assert model.trained_by is not None and model.trained_by.pipeline is None
    assert model.maturity.level == 0
    (missing,) = model.maturity.missing
    assert "churn/2 in Production was registered outside a pipeline" in missing
    assert status.maturity == model.maturity


def test_a_pipeline_registered_production_version_is_level_1(ws: Workspace) -> None:
    version = by_pipeline(ws)
    ws.models.promote("churn", version)
    (model,) = ws.status().models
    assert model.trained_by is not None and model.trained_by.pipeline == "train_churn"
    assert model.trained_by.pipeline_run is not None
    assert model.maturity.level == 1
    assert model.maturity.evidence == (
        f"churn/{version} in Production was registered by pipeline train_churn",
    )
    assert model.maturity.missing[0].startswith("churn is not deployed")
    assert model.maturity.missing[-1].startswith("promotion of churn is not guarded")

    ws.deployments.create("churn", "churn@production")
    (model,) = ws.status().models
    assert [d.name for d in model.deployments] == ["churn"]
    missing = model.maturity.missing
    assert len(missing) == 4, missing
    assert "no alert rule watches deployment churn" in missing[0]
    assert "deployment churn has no monitoring window yet" in missing[1]
    assert missing[2].startswith("no drift alert is wired to a retraining trigger")
    assert 'on_event("alert", subject="churn")' in missing[2]


def test_the_closed_loop_is_level_2(ws: Workspace) -> None:
    ws.settings = ws.settings.with_overrides(monitor=MonitorSettings(alerts=(RULE,)))
    version = by_pipeline(ws)
    policy = GatePolicy(min_score=0.5)
    ws.models.promote("churn", version, policy=policy)
    model_obj, train = classifier()
    ws.monitors.set_reference(f"churn/{version}", train, predictions=model_obj.predict(train))
    ws.deployments.create("churn", "churn@production")
    scheduler = Scheduler([train_churn], ws)
    assert scheduler.tick() == []  # a scheduler now watches the alert trigger

    log(ws, features(120, seed=2), start=START, prefix="a", model=f"churn/{version}")
    log(
        ws,
        features(120, seed=3, shift=3.0),
        start=START + HOUR,
        prefix="b",
        model=f"churn/{version}",
    )
    ws.monitors.run("churn", window="1h", since=START, until=END, executor="inline")

    status = ws.status()
    (model,) = status.models
    (window,) = model.windows
    assert window.verdict == "drift" and window.windows == 2 and window.rows == 120
    assert window.worst_feature == "x" and window.worst_psi is not None and window.worst_psi > 0.25
    (alert,) = model.open_alerts
    assert alert.rule == "input drift" and alert.status == "firing"
    assert model.alert_rules == {"churn": ("input drift",)}
    assert model.retrain_triggers == ("train_churn (event:alert:churn)",)
    assert model.gate == f"churn/{version} passed the gate (min_score, beat_champion)"
    assert model.production_how == "gate passed"
    assert model.maturity.level == 2 and model.maturity.missing == ()
    assert status.maturity.level == 2
    (pipe,) = status.pipelines
    assert pipe.name == "train_churn" and pipe.triggers == ("event:alert:churn",)
    assert pipe.last_run is not None and pipe.last_run[1] == "FINISHED"

    # The alert's event starts the retraining run: the pipeline is now running (claimed).
    (claim,) = scheduler.tick()
    (pipe,) = ws.status().pipelines
    assert pipe.running == (claim.run_id,)


def test_a_canary_guards_promotion_too(ws: Workspace) -> None:
    ws.settings = ws.settings.with_overrides(monitor=MonitorSettings(alerts=(RULE,)))
    first = by_pipeline(ws)
    ws.models.promote("churn", first)
    ws.deployments.create("churn", "churn@production")
    Scheduler([train_churn], ws).tick()
    model_obj, train = classifier()
    ws.monitors.set_reference(f"churn/{first}", train, predictions=model_obj.predict(train))
    log(ws, features(50, seed=2), start=START, model=f"churn/{first}")
    ws.monitors.run("churn", window="1h", since=START, until=START + HOUR, executor="inline")
    (model,) = ws.status().models
    assert model.windows[0].verdict == "ok" and model.maturity.level == 1
    (missing,) = model.maturity.missing
    assert missing.startswith("promotion of churn is not guarded")

    second = by_pipeline(ws)
    ws.deployments.canary("churn", f"churn/{second}", steps=(10, 50, 100))
    (model,) = ws.status().models
    (deployment,) = model.deployments
    assert (
        deployment.strategy == "canary" and deployment.step_text() == "step 1 of 3 (10, 50, 100%)"
    )
    assert model.canary == "deployment churn rolls versions out as a canary"
    assert model.maturity.level == 2


def test_data_added_since_the_last_training(ws: Workspace) -> None:
    version = by_pipeline(ws)
    ws.models.promote("churn", version)
    (model,) = ws.status().models
    assert model.new_data == () and model.trained_at is not None
    Path("inputs.csv").write_text("x\n1\n2\n")
    with ws.runs.start(experiment="validation"):
        loopml.log_input("inputs.csv", name="customers")
    (model,) = ws.status().models
    (change,) = model.new_data
    assert change.name == "customers" and len(change.newer) == 1
    assert change.newer[0][2].startswith("run ")
    assert change.newer[0][0] != change.trained


def test_llm_spend_against_budgets(ws: Workspace) -> None:
    from loopml.llm.keys import create_key
    from loopml.llm.logs import RequestLog, RequestRecord
    from loopml.store.clock import now_ms

    assert ws.status().llm is None  # nothing logged, no budget: no LLM section
    key = create_key(ws, name="ci-bot", budget="5/month")[0]
    with open(Path(ws.root) / "loopml.toml", "a") as fh:  # for the command, which reads it
        fh.write('\n[gateway.teams.growth]\nbudget = "2/day"\n')
    ws.settings = ws.settings.with_overrides(gateway={"teams": {"growth": {"budget": "2/day"}}})
    log = RequestLog(ws)
    for n, (key_id, team, cost) in enumerate(
        [(key.id, None, 1.25), (key.id, "growth", 0.5), (None, "growth", 2.5), (None, None, 0.1)]
    ):
        log.add(
            RequestRecord(
                id=f"r{n}",
                created_at=now_ms(),
                endpoint="chat",
                model_requested="cheap",
                status=200,
                latency_ms=10.0,
                key_id=key_id,
                team=team,
                cost_usd=cost,
            )
        )
    log.close()
    llm = ws.status().llm
    assert llm is not None and llm.requests == 4 and llm.cost_usd == pytest.approx(4.35)
    # Most used first: the team is over its daily budget.
    assert [(b.subject, b.spent_usd, b.period) for b in llm.budgets] == [
        ("team:growth", 3.0, "day"),
        ("key:ci-bot", 1.75, "month"),
    ]
    assert llm.budgets[0].fraction == 1.5
    done = cli(ws.root, "status")
    assert "LLM spend since " in done.output and "$4.35 over 4 request(s)" in done.output
    assert "team:growth  $3 of $2/day (150%)" in done.output


def test_schedules_running_runs_and_the_last_failure(ws: Workspace) -> None:
    from loopml.pipelines import on_schedule

    @task
    def explode(day: str) -> int:
        raise ValueError(f"no data for {day}")

    @pipeline(triggers=[on_schedule("0 3 * * *")])
    def nightly(day: str = "2026-11-30"):
        return explode(day)

    ws.pipelines.run(nightly, executor="inline", raise_on_failure=False)
    Scheduler([nightly], ws).tick()
    (pipe,) = ws.status().pipelines
    assert pipe.triggers == ("schedule:0 3 * * *",)
    next_run = pipe.next_runs["schedule:0 3 * * *"]
    assert (next_run.hour, next_run.minute) == (3, 0) and next_run > ws.status().at
    assert pipe.last_run is not None and pipe.last_run[1] == "FAILED"
    assert pipe.last_failure is not None and pipe.last_failure[0] == pipe.last_run[0]
    assert pipe.last_failure[2] is not None and "no data for 2026-11-30" in pipe.last_failure[2]
    assert pipe.running == ()
    done = cli(ws.root, "status")
    assert "schedule:0 3 * * * (next " in done.output and "last failure" in done.output


def test_an_unknown_model_names_the_registered_ones(ws: Workspace) -> None:
    ws.models.register("churn", Doubler())
    with pytest.raises(ModelNotFound, match=r"No model 'nosuch' .*registered models: churn"):
        ws.status(model="nosuch")
    assert [m.name for m in ws.status(model="churn").models] == ["churn"]
    assert loopml.workspace_status(ws).models[0].name == "churn"


# -- the command ------------------------------------------------------------------------------


def cli(root: Path, *args: str) -> Any:
    from loopml.cli.main import cli as command

    return CliRunner().invoke(command, ["--workspace", str(root), *args])


def test_the_command_prints_each_model_pipelines_and_the_maturity_line(ws: Workspace) -> None:
    version = by_pipeline(ws)
    ws.models.promote("churn", version)
    ws.deployments.create("churn", "churn@production")
    done = cli(ws.root, "status")
    assert done.exit_code == 0, done.output
    out = done.output
    assert f"churn  Production v{version} since " in out and "level 1" in out
    assert "pipeline train_churn, run " in out
    assert "churn (rev 1, single): primary churn@production 100%" in out
    assert "churn: no window computed; no alert rule" in out
    assert (
        "Pipelines" in out
        and "train_churn" in out
        and "event:alert:churn" not in out.split("Pipelines")[0]
    )
    assert "Maturity: level 1 (automated training pipeline)" in out
    assert "missing for level 2:" in out and "no drift alert is wired" in out
    # piped, no line is padded with spaces to the table width
    assert [line for line in out.splitlines() if line != line.rstrip()] == []
    assert "\n\nPipelines" in out  # the blank line between blocks stays

    done = cli(ws.root, "status", "--json")
    assert done.exit_code == 0, done.output
    data = json.loads(done.output)
    assert data["maturity"]["level"] == 1
    (model,) = data["models"]
    assert model["production"] == version and model["deployments"][0]["name"] == "churn"
    assert model["production_since"].endswith("+00:00")


def test_the_command_on_an_empty_workspace_and_a_bad_model(ws: Workspace) -> None:
    done = cli(ws.root, "status")
    assert done.exit_code == 0, done.output
    assert "No model registered and no pipeline run yet" in done.output
    assert "loopml demo" in done.output
    done = cli(ws.root, "status", "--json")
    assert json.loads(done.output)["models"] == []


def test_a_bad_model_is_one_error_line(ws: Workspace) -> None:
    from loopml.cli.main import cli as command

    ws.models.register("churn", Doubler())
    done = CliRunner().invoke(
        command, ["--workspace", str(ws.root), "status", "--model", "nosuch"], prog_name="loopml"
    )
    assert done.exit_code == 1 and isinstance(done.exception, SystemExit)
    assert done.stderr.strip().splitlines() == [
        "error: No model 'nosuch' in this workspace; registered models: churn."
    ]
    assert done.stdout == ""


def test_help_says_what_it_shows() -> None:
    done = CliRunner().invoke(_command(), ["--help"])
    assert "maturity level" in done.output and "--model NAME" in done.output


def _command() -> Callable[..., Any]:
    from loopml.cli.status import status

    return status


def test_json_of_a_pandas_free_status(ws: Workspace) -> None:
    """The status holds plain values only: its dict is JSON as it is."""
    ws.models.register("churn", Doubler(), input_example=pd.DataFrame({"x": [1]}))
    json.dumps(ws.status().to_dict())


@task
def noop(rows: int) -> int:
    return rows


@pipeline(triggers=[on_event("alert", subject="*")])
def broken(rows: int = 1):
    return noop(rows)


@pytest.mark.parametrize("store", ["sqlite-file", "sqlite-memory", "postgres"])
def test_the_same_status_on_every_metadata_backend(
    store: str, workspace_factory: Callable[..., Workspace]
) -> None:
    """Every query of the status runs on SQLite and PostgreSQL alike."""
    from loopml.llm.keys import create_key

    ws = workspace_factory(store)
    ws.settings = ws.settings.with_overrides(monitor=MonitorSettings(alerts=(RULE,)))
    with ws.runs.start(experiment="by-hand"):
        ws.models.register("churn", Doubler())
    ws.models.promote("churn", 1)
    ws.deployments.create("churn", "churn@production")
    ws.pipelines.run(broken, executor="inline")
    Scheduler([broken], ws).tick()
    create_key(ws, name="bot", budget="1/day")
    status = ws.status()
    (model,) = status.models
    assert model.production == 1 and model.alert_rules == {"churn": ("input drift",)}
    assert model.retrain_triggers == ("broken (event:alert:*)",)
    assert [p.name for p in status.pipelines] == ["broken"]
    assert status.pipelines[0].last_run is not None and status.pipelines[0].runs == 1
    assert status.llm is not None and status.llm.budgets[0].subject == "key:bot"
    assert status.maturity.level == 0


@pytest.mark.slow
def test_the_demo_ends_at_level_2(demo_run: DemoRun) -> None:
    """`loopml demo` closes the loop; the status grades its workspace at the top level."""
    demo_run.check()
    folder = demo_run.root
    with Workspace.open(folder) as ws:
        status = ws.status()
    assert status.maturity.level == 2, status.maturity
    (model,) = status.models
    assert model.trained_by is not None and model.trained_by.trigger == "event:alert:churn"
    assert model.windows and model.retrain_triggers and model.gate is not None
