"""A continuous-training pipeline: validate → features → train → evaluate → register →
gated promotion; run once, failed and resumed, backfilled over a week, and triggered by new
data through the scheduler.

    python examples/training_pipeline.py [WORKDIR]     # default: a fresh temporary folder

It writes a week of daily customer data (``data/events/day=YYYY-MM-DD.csv``), a holdout set,
a data contract inferred from the first day, and a promotion gate, then drives everything
through the command line, printing each command. Afterwards, in WORKDIR::

    loopml pipelines runs
    loopml pipelines show-run <RUN>
    loopml models history churn

The pipeline itself is the ``train_churn`` function below; the tasks are plain functions.
Run the script directly: it uses the threads executor (for ``--executor processes`` the
``if __name__ == "__main__":`` guard at the bottom is what makes it safe).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tempfile
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import loopml
from loopml.pipelines import on_new_data, pipeline, task

HERE = Path(__file__).resolve()
REF = f"{HERE}:train_churn"
FEATURES = ["tenure_months", "monthly_charges", "support_calls", "plan"]
GATE = """
[gates.churn]
metric = "accuracy"
holdout = "data/holdout.csv"
label = "churned"
min_score = 0.60
margin = 0.0
"""

# -- data -------------------------------------------------------------------------------------


def customers(seed: int, rows: int) -> pd.DataFrame:
    """Synthetic churn data: short tenure, high charges and many support calls churn."""
    rng = np.random.default_rng(seed)
    tenure = rng.integers(1, 72, rows)
    charges = rng.normal(70, 20, rows).clip(15, 150).round(2)
    calls = rng.poisson(1.5, rows)
    plan = rng.choice(["basic", "pro"], rows, p=[0.6, 0.4])
    score = -0.05 * tenure + 0.03 * charges + 0.6 * calls + 0.4 * (plan == "basic") - 2.0
    churned = (rng.random(rows) < 1 / (1 + np.exp(-score))).astype(int)
    return pd.DataFrame(
        {
            "customer_id": [f"c{seed}-{i}" for i in range(rows)],
            "tenure_months": tenure,
            "monthly_charges": charges,
            "support_calls": calls,
            "plan": plan,
            "churned": churned,
        }
    )


def write_day(day: date, rows: int = 600) -> Path:
    path = Path("data/events") / f"day={day.isoformat()}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    customers(day.toordinal(), rows).to_csv(path, index=False)
    return path


# -- the tasks --------------------------------------------------------------------------------


@task
def load(day: str, events: Path) -> pd.DataFrame:
    """One day of customer data; ``day="latest"`` is the newest file. ``events`` is a Path,
    so the task's cache key follows the folder's content: new data is never a cache hit."""
    files = sorted(events.glob("day=*.csv"))
    path = files[-1] if day == "latest" else events / f"day={day}.csv"
    frame = pd.read_csv(path)
    loopml.log_input(path, name="events")
    return frame


@task
def validate(raw: pd.DataFrame, contract: Path) -> pd.DataFrame:
    """The data contract (``loopml.validation``): a batch that breaks it fails the run."""
    from loopml.validation import Schema

    Schema.load(contract).validate(raw).raise_for_errors()
    return raw


@task
def build_features(clean: pd.DataFrame) -> pd.DataFrame:
    """The model's columns, typed; rows without a label are dropped."""
    frame = clean.dropna(subset=["churned"])
    return frame[FEATURES].assign(
        tenure_months=frame["tenure_months"].astype(float),
        support_calls=frame["support_calls"].astype(float),
        churned=frame["churned"].astype(int),
    )


def make_model(seed: int) -> Any:
    """One-hot the plan, scale the numbers, logistic regression: a plain scikit-learn
    pipeline over the raw columns, so the registry's gate can score it on the holdout."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = ["tenure_months", "monthly_charges", "support_calls"]
    columns = ColumnTransformer(
        [("numbers", StandardScaler(), numeric), ("plan", OneHotEncoder(), ["plan"])]
    )
    return Pipeline([("columns", columns), ("model", LogisticRegression(random_state=seed))])


@task(retries=1, retry_delay=0.5)
def train(features: pd.DataFrame, seed: int) -> Any:
    model = make_model(seed)
    model.fit(features[FEATURES], features["churned"])
    loopml.log_params({"model": "logistic", "seed": seed, "rows": len(features)})
    return model


@task
def evaluate(model: Any, holdout: str) -> dict[str, float]:
    """Accuracy and AUC on the holdout set (a missing holdout file fails this task)."""
    from sklearn.metrics import accuracy_score, roc_auc_score

    frame = pd.read_csv(holdout)
    x, y = frame[FEATURES], frame["churned"]
    metrics = {
        "accuracy": float(accuracy_score(y, model.predict(x))),
        "auc": float(roc_auc_score(y, model.predict_proba(x)[:, 1])),
    }
    loopml.log_metrics(metrics)
    return metrics


@task
def register(model: Any, metrics: dict[str, float], features: pd.DataFrame) -> dict[str, Any]:
    """A new version of the ``churn`` model, linked to this run (lineage: data → run →
    model). Cached like any task: rerunning a partition does not register it twice."""
    version = loopml.register_model(
        "churn",
        model,
        input_example=features[FEATURES].head(5),
        description=f"holdout accuracy {metrics['accuracy']:.3f}",
    )
    return {"version": version.version, **metrics}


@task
def promote(registered: dict[str, Any]) -> str:
    """Gated promotion: the registry's gate (``[gates.churn]`` in loopml.toml) scores the
    candidate against Production on the same holdout; only a pass moves the pointer."""
    from loopml.exceptions import PromotionBlocked

    version = registered["version"]
    try:
        loopml.promote("churn", version)
    except PromotionBlocked:
        return f"churn/{version} BLOCKED by the gate"
    return f"churn/{version} PROMOTED to production"


# -- the pipeline -----------------------------------------------------------------------------


@pipeline(partition="day", triggers=[on_new_data("data/events")], experiment="churn-training")
def train_churn(day: str = "latest", holdout: str = "data/holdout.csv", seed: int = 0):
    raw = load(day, Path("data/events"))
    clean = validate(raw, Path("contracts/churn.yaml"))
    features = build_features(clean)
    model = train(features, seed)
    metrics = evaluate(model, holdout)
    return promote(register(model, metrics, features))


# -- the walk-through -------------------------------------------------------------------------


def loopml_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    command = ["loopml", *args]
    print(f"\n$ {shlex.join(command).replace(str(HERE), 'examples/training_pipeline.py')}")
    done = subprocess.run(
        [sys.executable, "-m", "loopml.cli", *args], capture_output=True, text=True
    )
    print(done.stdout.rstrip())
    if done.stderr.strip():
        print(done.stderr.rstrip())
    if check and done.returncode != 0:
        raise SystemExit(f"`{' '.join(command)}` failed with exit code {done.returncode}")
    return done


def runs_json(*args: str) -> list[dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-m", "loopml.cli", "pipelines", "runs", "--json", *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return list(json.loads(done.stdout))


def main(workdir: Path) -> None:
    os.chdir(workdir)
    loopml.init(".").close()
    week = [date(2026, 11, 1) + timedelta(days=i) for i in range(7)]
    for day in week:
        write_day(day)
    customers(seed=99, rows=1500).to_csv("data/holdout.csv", index=False)
    from loopml.validation import Schema

    reference = pd.read_csv(f"data/events/day={week[0]}.csv")
    Schema.infer(reference, margin=0.5).save("contracts/churn.yaml")  # review it, commit it
    with open("loopml.toml", "a") as fh:
        fh.write(GATE)
    print(f"wrote {len(week)} days of data, a holdout set, a data contract and a gate")

    print("\n== the pipeline")
    loopml_cli("pipelines", "show", REF)
    loopml_cli("pipelines", "show", REF, "--mermaid")

    print("\n== 1. run once")
    loopml_cli("pipelines", "run", REF, "--param", f"day={week[-1]}")

    print("\n== 2. a run that fails (its holdout file is not there yet), then resumed")
    failed = loopml_cli(
        "pipelines",
        "run",
        REF,
        "-p",
        f"day={week[2]}",
        "-p",
        "holdout=data/holdout-v2.csv",
        check=False,
    )
    assert failed.returncode == 1, "the run should have failed"
    (run,) = runs_json("--status", "FAILED")
    Path("data/holdout-v2.csv").write_bytes(Path("data/holdout.csv").read_bytes())
    loopml_cli("pipelines", "resume", run["id"][:8])

    print("\n== 3. backfill the week (a partition run again replaces its previous run)")
    loopml_cli(
        "pipelines",
        "backfill",
        REF,
        "--start",
        str(week[0]),
        "--end",
        str(week[-1]),
        "--parallel",
        "2",
    )

    print("\n== 4. triggered by new data: `loopml scheduler run --once`")
    loopml_cli("scheduler", "run", REF, "--once")  # first look: the data as it is now
    new_day = write_day(week[-1] + timedelta(days=1))
    print(f"\n(new data arrived: {new_day})")
    loopml_cli("scheduler", "run", REF, "--once")  # the change starts one run
    loopml_cli("scheduler", "run", REF, "--once")  # nothing new: no run

    print("\n== all runs")
    loopml_cli("pipelines", "runs")
    loopml_cli("models", "history", "churn", check=False)
    current = runs_json("--current")
    triggered = [r for r in current if r["trigger"].startswith("data:")]
    print(
        f"\nsummary: {len(current)} current runs, {len(triggered)} started by new data, "
        f"statuses {sorted({r['status'] for r in current})}"
    )


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="loopml-"))
    target.mkdir(parents=True, exist_ok=True)
    print(f"working in {target}")
    main(target.resolve())
