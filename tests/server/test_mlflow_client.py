"""The acceptance test of the team server: the real MLflow client (mlflow-skinny) runs a normal
training script against a real ``loopml server`` on 127.0.0.1, then loopml's own API and CLI
read the same records, loopml's model server answers with the MLflow-registered version, and
loopml's gate promotes it and blocks a worse one.

Run on SQLite + a local blob folder, and on PostgreSQL + S3 (slow, the team setup).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from loopml.cli.main import cli
from loopml.exceptions import PromotionBlocked
from loopml.registry.gates import GatePolicy
from loopml.serving.app import create_app as serving_app
from loopml.workspace import Workspace
from server.conftest import start_server
from services import drop_postgres_database, fresh_postgres_url, fresh_s3_bucket, s3_endpoint
from serving.conftest import wait_ready

mlflow = pytest.importorskip("mlflow")
pytest.importorskip("mlflow.sklearn")

BACKENDS = ["sqlite-file", pytest.param("postgres", marks=[pytest.mark.postgres, pytest.mark.s3])]


def _data(seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    x = pd.DataFrame({"tenure": rng.normal(size=200), "spend": rng.normal(size=200)})
    y = pd.Series((x["tenure"] + 0.5 * x["spend"] > 0).astype(int), name="churned")
    return x, y


@pytest.fixture
def team_ws(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[str], Workspace]]:
    """``make(backend)``: a workspace folder on SQLite + local blobs (``"sqlite-file"``) or
    PostgreSQL + an S3 bucket (``"postgres"``), configured in its loopml.toml."""
    databases: list[str] = []
    opened: list[Workspace] = []

    def make(backend: str) -> Workspace:
        folder = tmp_path / "project"
        folder.mkdir()
        if backend == "postgres":
            databases.append(fresh_postgres_url())
            monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint())
            monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
            monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
            (folder / "loopml.toml").write_text(
                f'[store]\nurl = "{databases[-1]}"\n\n'
                f'[artifacts]\nurl = "s3://{fresh_s3_bucket()}/blobs"\n'
            )
        ws = Workspace.init(folder)
        opened.append(ws)
        return ws

    yield make
    for ws in opened:
        ws.close()
    for url in databases:
        drop_postgres_database(url)


@pytest.fixture
def client_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """``point(url)`` aims the MLflow client at the server; undone after the test."""

    def point(url: str) -> None:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        monkeypatch.setenv("DO_NOT_TRACK", "true")
        mlflow.set_tracking_uri(url)
        mlflow.set_registry_uri(url)

    yield point
    while mlflow.active_run() is not None:
        mlflow.end_run()
    mlflow.sklearn.autolog(disable=True)
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)


def training_script(workdir: Path) -> dict[str, Any]:
    """A normal MLflow training script; returns what it logged, for the checks."""
    from mlflow import MlflowClient
    from sklearn.dummy import DummyClassifier
    from sklearn.linear_model import LogisticRegression

    x, y = _data()
    notes = workdir / "notes.txt"
    notes.write_text("first try\n")
    plots = workdir / "plots"
    plots.mkdir()
    (plots / "loss.csv").write_text("step,loss\n0,1.0\n1,0.5\n")
    (plots / "roc.csv").write_text("fpr,tpr\n0,0\n1,1\n")

    experiment = mlflow.set_experiment("churn")
    with mlflow.start_run(run_name="parent") as parent:
        mlflow.log_param("seed", 7)
        mlflow.log_params({"solver": "lbfgs", "C": 1.0})
        for step in range(5):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
        mlflow.log_metrics({"auc": 0.81, "f1": 0.74}, step=5)
        mlflow.set_tag("team", "growth")
        mlflow.log_artifact(str(notes))
        mlflow.log_artifacts(str(plots), artifact_path="plots")
        mlflow.log_dict({"features": ["tenure", "spend"]}, "config.json")
        with mlflow.start_run(run_name="fold-1", nested=True) as child:
            mlflow.log_metric("fold_accuracy", 0.9)

        mlflow.sklearn.autolog()
        with mlflow.start_run(run_name="autolog", nested=True) as auto_run:
            LogisticRegression(C=0.5, max_iter=200).fit(x, y)
        mlflow.sklearn.autolog(disable=True)

        with mlflow.start_run(run_name="register", nested=True) as reg_run:
            clf = LogisticRegression(max_iter=200).fit(x, y)
            mlflow.log_metric("accuracy", float((clf.predict(x) == y).mean()))
            logged = mlflow.sklearn.log_model(
                clf,
                name="model",
                registered_model_name="churn",
                serialization_format="cloudpickle",  # skops isn't installed here
                input_example=x.head(3),
            )
        with mlflow.start_run(run_name="worse", nested=True) as worse_run:
            worse = mlflow.sklearn.log_model(
                DummyClassifier(strategy="constant", constant=0).fit(x, y),
                name="model",
                registered_model_name="churn",
                serialization_format="cloudpickle",
            )

    client = MlflowClient()
    version = logged.registered_model_version
    client.set_registered_model_alias("churn", "champion", version)
    loaded = mlflow.pyfunc.load_model("models:/churn@champion")
    predictions = loaded.predict(x)
    found = mlflow.search_runs(
        experiment_names=["churn"],
        filter_string="params.solver = 'lbfgs' and metrics.auc > 0.5",
    )
    return {
        "experiment_id": experiment.experiment_id,
        "parent": parent.info.run_id,
        "child": child.info.run_id,
        "auto": auto_run.info.run_id,
        "register": reg_run.info.run_id,
        "worse_run": worse_run.info.run_id,
        "version": int(version),
        "worse_version": int(worse.registered_model_version),
        "model_id": logged.model_id,
        "predictions": np.asarray(predictions),
        "expected": clf.predict(x),
        "found": list(found["run_id"]),
        "client_version": client.get_model_version("churn", version),
    }


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_mlflow_script_against_loopml_server(
    backend: str,
    team_ws: Callable[[str], Workspace],
    server: Callable[..., str],
    client_env: Callable[[str], None],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ws = team_ws(backend)
    if backend == "postgres":
        assert ws.db.url.startswith("postgresql")
        assert ws.blobs.url.startswith("s3://")
    url = server(ws)
    client_env(url)
    workdir = tmp_path / "script"
    workdir.mkdir()
    out = training_script(workdir)

    # What the MLflow client itself saw
    assert out["found"] == [out["parent"]]
    assert list(out["predictions"]) == list(out["expected"])
    assert out["client_version"].aliases == ["champion"]
    assert out["client_version"].run_id == out["register"]

    # The same records through loopml's Python API
    parent = ws.runs.get(out["parent"])
    assert parent.experiment == "churn"
    assert parent.params == {"seed": "7", "solver": "lbfgs", "C": "1.0"}
    assert parent.metrics["loss"] == pytest.approx(0.2)
    assert parent.metrics["auc"] == pytest.approx(0.81)
    assert parent.tags["team"] == "growth"
    history = ws.runs.metric_history(out["parent"], "loss")
    assert list(history["step"]) == [0, 1, 2, 3, 4]
    artifacts = {a.path for a in ws.runs.list_artifacts(out["parent"])}
    assert {"notes.txt", "config.json"} <= artifacts
    assert {a.path for a in ws.runs.list_artifacts(out["parent"], "plots")} >= {
        "plots/loss.csv",
        "plots/roc.csv",
    }
    child = ws.runs.get(out["child"])
    assert child.metrics["fold_accuracy"] == pytest.approx(0.9)
    auto = ws.runs.get(out["auto"])
    assert auto.params.get("C") == "0.5"  # autolog logged the estimator's params
    assert any(key.startswith("training_") for key in auto.metrics)

    versions = ws.models.versions("churn")
    assert [v.version for v in versions] == [out["version"], out["worse_version"]]
    champion = ws.models.get("models:/churn@champion")
    assert champion.version == out["version"]
    assert champion.run_id == out["register"]
    assert champion.flavor == "mlflow"
    assert ws.models.lineage("models:/churn@champion")["run"]["id"] == out["register"]
    x, y = _data()
    assert list(ws.models.load("models:/churn@champion").predict(x)) == list(out["expected"])

    # ... and through loopml's CLI
    runner = CliRunner()
    monkeypatch.chdir(ws.settings.root)
    shown = runner.invoke(cli, ["runs", "show", out["parent"], "--json"])
    assert shown.exit_code == 0, shown.output
    record = json.loads(shown.output)
    assert record["params"]["solver"] == "lbfgs"
    assert record["tags"]["team"] == "growth"
    listed = runner.invoke(cli, ["models", "versions", "churn", "--json"])
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.output)
    by_version = {int(r["version"]): r for r in rows}
    assert by_version[out["version"]]["run_id"] == out["register"]
    assert "champion" in by_version[out["version"]]["aliases"]

    # loopml's model server answers with it
    ws.deployments.create("churn", "churn@champion")
    serving_url, stop = start_server(serving_app(ws, "churn", poll_interval=0.1))
    try:
        wait_ready(serving_url)
        rows = x.head(5).to_dict("records")
        answer = httpx.post(f"{serving_url}/predict", json={"records": rows}, timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"] == [int(p) for p in out["expected"][:5]]
    finally:
        stop()

    # loopml's gate promotes the MLflow-registered version, and blocks the worse candidate
    holdout = tmp_path / "holdout.csv"
    hx, hy = _data(seed=1)
    hx.assign(churned=hy).to_csv(holdout, index=False)
    policy = GatePolicy(metric="accuracy", holdout=str(holdout), label="churned", min_score=0.8)
    verdict = ws.models.promote("churn", out["version"], policy=policy)
    assert verdict is not None and verdict.passed
    with pytest.raises(PromotionBlocked):
        ws.models.promote("churn", out["worse_version"], policy=policy)
    assert ws.models.get("models:/churn@production").version == out["version"]
    client = mlflow.MlflowClient()
    assert client.get_model_version("churn", str(out["version"])).current_stage == "Production"
    assert client.get_model_version("churn", str(out["worse_version"])).current_stage == "None"


def test_runs_loopml_started_show_their_name_as_mlflow_run_name(
    tmp_path: Path, server: Callable[..., str], client_env: Callable[[str], None]
) -> None:
    """MLflow's server shows every run's name as the ``mlflow.runName`` tag, and scripts
    read ``tags.mlflow.runName`` off search_runs' DataFrame: runs loopml itself started (no
    such tag stored) must show it too, filter and sort by it, and a rename must show."""
    ws = Workspace.init(tmp_path / "ws")
    try:
        for name in ("beta", "alpha", "gamma"):
            with ws.runs.start(experiment="names", name=name, log_environment=False) as run:
                run.log_param("p", name)
        url = server(ws)
        client_env(url)
        exp = mlflow.get_experiment_by_name("names")
        frame = mlflow.search_runs(
            experiment_ids=[exp.experiment_id], order_by=["tags.mlflow.runName ASC"]
        )
        assert list(frame["tags.mlflow.runName"]) == ["alpha", "beta", "gamma"]
        found = mlflow.search_runs(
            experiment_ids=[exp.experiment_id], filter_string="tags.mlflow.runName = 'beta'"
        )
        assert list(found["params.p"]) == ["beta"]
        found = mlflow.search_runs(
            experiment_ids=[exp.experiment_id],
            filter_string="tags.`mlflow.runName` LIKE 'g%'",
        )
        assert list(found["tags.mlflow.runName"]) == ["gamma"]
        run_id = found["run_id"][0]
        mlflow.MlflowClient().set_tag(run_id, "mlflow.runName", "delta")
        run = mlflow.get_run(run_id)
        assert run.info.run_name == "delta"
        assert run.data.tags["mlflow.runName"] == "delta"
        assert ws.runs.get(run_id).name == "delta"
    finally:
        ws.close()
