"""Closed loop: a drifted stream raises an alert, and the alert retrains the model.

    python examples/drift_retrain/run.py [WORKDIR]     # default: a fresh temporary folder

In an embedded workspace (SQLite and a local folder in WORKDIR) it

1. trains a churn classifier and registers it with its training data as the monitoring
   reference (``reference_data=``: frozen bins, category shares, a sample), aliases it
   ``production`` and deploys it as ``churn``;
2. logs six hours of the deployment's traffic into its prediction log (the rows a
   ``loopml serve`` of the deployment writes: inputs, outputs, latency): three hours like the
   training data, then three where charges rise and customers move to the basic plan;
3. ``loopml monitor run churn`` computes the hourly windows: PSI crosses 0.25, the rule in
   loopml.toml fires once and writes an ``alert`` event; ``loopml monitor report`` draws it;
4. ``loopml scheduler run --once`` sees the event: the ``retrain_churn`` pipeline below
   (``on_event("alert", subject="churn")``) trains on the recent labelled data and registers
   a new version, with that data as its reference.

Traffic is written straight to the prediction log with the server's own logger, so the
example needs no port and no waiting for windows to close: the six hours end an hour ago.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import loopml
from loopml.pipelines import on_event, pipeline, task

HERE = Path(__file__).resolve()
REF = f"{HERE}:retrain_churn"
FEATURES = ["tenure_months", "monthly_charges", "support_calls", "plan"]
RULE = """
[[monitor.alerts]]
name = "input drift"
deployment = "churn"
when = "max(psi) > 0.25"
for = 1
severity = "critical"
channels = ["log"]
"""

# -- data and model ---------------------------------------------------------------------------


def customers(seed: int, rows: int, *, drifted: bool = False) -> pd.DataFrame:
    """Synthetic churn data; ``drifted``: charges up by 35 and 85% on the basic plan."""
    rng = np.random.default_rng(seed)
    tenure = rng.integers(1, 72, rows).astype(float)
    charges = (rng.normal(70, 20, rows) + (35 if drifted else 0)).clip(15, 200).round(2)
    calls = rng.poisson(1.5, rows).astype(float)
    plan = rng.choice(["basic", "pro"], rows, p=[0.85, 0.15] if drifted else [0.6, 0.4])
    score = -0.05 * tenure + 0.03 * charges + 0.6 * calls + 0.4 * (plan == "basic") - 2.0
    churned = (rng.random(rows) < 1 / (1 + np.exp(-score))).astype(int)
    return pd.DataFrame(
        {
            "tenure_months": tenure,
            "monthly_charges": charges,
            "support_calls": calls,
            "plan": plan,
            "churned": churned,
        }
    )


def make_model() -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = ["tenure_months", "monthly_charges", "support_calls"]
    columns = ColumnTransformer(
        [("numbers", StandardScaler(), numeric), ("plan", OneHotEncoder(), ["plan"])]
    )
    return Pipeline([("columns", columns), ("model", LogisticRegression())])


# -- the retraining pipeline ------------------------------------------------------------------


@task
def load(path: Path) -> pd.DataFrame:
    """The recent labelled data (``path`` is a Path: new data is never a cache hit)."""
    return pd.read_csv(path)


@task
def train(frame: pd.DataFrame) -> Any:
    model = make_model().fit(frame[FEATURES], frame["churned"])
    accuracy = float(model.score(frame[FEATURES], frame["churned"]))
    loopml.log_metrics({"accuracy": accuracy})
    return model


@task
def register(model: Any, frame: pd.DataFrame, path: Path) -> int:
    """A new ``churn`` version whose reference is the data it was trained on."""
    version = loopml.register_model(
        "churn",
        model,
        input_example=frame[FEATURES].head(5),
        reference_data=frame[FEATURES],
        description=f"retrained on {path} after a drift alert",
    )
    return version.version


@pipeline(triggers=[on_event("alert", subject="churn")], experiment="churn-retraining")
def retrain_churn(data: str = "data/recent.csv"):
    frame = load(Path(data))
    return register(train(frame), frame, Path(data))


# -- the walk-through -------------------------------------------------------------------------


def loopml_cli(*args: str) -> str:
    """Run ``loopml ARGS`` here, print the command and what it printed; its stdout."""
    print(
        f"\n$ {shlex.join(['loopml', *args]).replace(str(HERE), 'examples/drift_retrain/run.py')}"
    )
    done = subprocess.run(
        [sys.executable, "-m", "loopml.cli", *args], capture_output=True, text=True
    )
    print(done.stdout.rstrip())
    if done.stderr.strip():
        print(done.stderr.rstrip())
    if done.returncode != 0:
        raise SystemExit(f"`loopml {' '.join(args)}` failed with exit code {done.returncode}")
    return done.stdout


def cli_json(*args: str) -> Any:
    """``loopml ARGS --json``, parsed (not printed)."""
    done = subprocess.run(
        [sys.executable, "-m", "loopml.cli", *args, "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout)


def log_traffic(ws: Any, start: datetime, hours: int, *, drifted: bool, seed: int) -> pd.DataFrame:
    """``hours`` of requests (120 an hour, one customer each) answered by churn@production,
    written to the deployment's prediction log as the server writes them; the rows sent,
    with their eventual labels."""
    from loopml.serving.log import PredictionLogger, to_json

    model = ws.models.load("models:/churn@production")
    deployment = ws.deployments.get("churn")
    rng = np.random.default_rng(seed)
    frames = []
    with PredictionLogger(ws.blobs) as logger:
        for hour in range(hours):
            frame = customers(seed + hour, 120, drifted=drifted)
            predicted = model.predict(frame[FEATURES])
            for i, row in enumerate(frame[FEATURES].to_dict(orient="records")):
                logger.log(
                    {
                        "request_id": f"{'d' if drifted else 'n'}{seed + hour}-{i}",
                        "time": start + timedelta(hours=hour, seconds=29 * i),
                        "deployment": "churn",
                        "revision": deployment.revision,
                        "model": "churn/1",
                        "variant": "primary",
                        "shadow": False,
                        "inputs": to_json([row]),
                        "outputs": to_json([int(predicted[i])]),
                        "latency_ms": float(rng.gamma(2.0, 4.0)),
                        "error": None,
                    }
                )
            frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def main(workdir: Path) -> dict[str, Any]:
    os.chdir(workdir)
    ws = loopml.init(".")
    with open("loopml.toml", "a") as fh:
        fh.write(RULE)
    ws.close()
    ws = loopml.Workspace.open(".")
    loopml.set_default_workspace(ws)

    print("== 1. train, register with its reference data, deploy")
    train_frame = customers(1, 3000)
    with ws.runs.start(experiment="churn-training"):
        model = make_model().fit(train_frame[FEATURES], train_frame["churned"])
        loopml.log_metrics(
            {"accuracy": float(model.score(train_frame[FEATURES], train_frame["churned"]))}
        )
        first = ws.models.register(
            "churn",
            model,
            input_example=train_frame[FEATURES].head(5),
            reference_data=train_frame[FEATURES],
        )
    ws.models.promote("churn", first.version)  # no gate configured: it moves
    print(f"registered churn/{first.version} (reference: {len(train_frame):,} training rows)")
    loopml_cli("deploy", "create", "churn", "--model", "churn@production")

    print("\n== 2. six hours of traffic: three like the training data, three drifted")
    now = datetime.now(UTC)
    start = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=7)
    log_traffic(ws, start, 3, drifted=False, seed=100)
    recent = log_traffic(ws, start + timedelta(hours=3), 3, drifted=True, seed=200)
    Path("data").mkdir(exist_ok=True)
    recent.to_csv("data/recent.csv", index=False)  # the drifted stream, its labels landed
    print(f"logged 720 requests from {start.isoformat()}; {len(recent)} drifted rows labelled")
    ws.close()

    print("\n== 3. monitor: hourly windows, the alert rule, the report")
    loopml_cli("monitor", "run", "churn", "--window", "1h", "--since", start.isoformat())
    loopml_cli("alerts", "list")
    alerts = cli_json("alerts", "list")
    loopml_cli("monitor", "report", "churn", "-o", "report.html")

    print("\n== 4. the alert event starts the retraining pipeline")
    loopml_cli("scheduler", "run", REF, "--once")
    loopml_cli("pipelines", "runs")
    runs = cli_json("pipelines", "runs")
    loopml_cli("models", "history", "churn")

    ws = loopml.Workspace.open(".")
    versions = [v.version for v in ws.models.versions("churn")]
    retrained = ws.monitors.reference(f"churn/{max(versions)}")
    ws.close()
    alert = alerts[0] if alerts else None
    run = next((r for r in runs if r["trigger"].startswith("event:alert")), None)
    summary = {
        "alert_id": alert["id"] if alert else None,
        "alert": alert["message"] if alert else None,
        "pipeline_run_id": run["id"] if run else None,
        "pipeline_status": run["status"] if run else None,
        "versions": sorted(versions),
        "new_version_has_reference": retrained is not None,
        "report": str(Path("report.html").resolve()),
    }
    print("\n== what happened")
    print(
        f"alert {summary['alert_id']} fired ({summary['alert']});\n"
        f"pipeline run {summary['pipeline_run_id']} ({summary['pipeline_status']}) retrained;\n"
        f"churn versions now {summary['versions']} (the new one monitored against its own "
        f"data: {summary['new_version_has_reference']}); report: {summary['report']}"
    )
    print("summary: " + json.dumps(summary))
    return summary


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="loopml-"))
    target.mkdir(parents=True, exist_ok=True)
    print(f"working in {target}")
    main(target.resolve())
