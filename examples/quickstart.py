"""Quickstart: train scikit-learn models with experiment tracking.

    pip install -e ".[sklearn]"
    python examples/quickstart.py        # creates a workspace here if there is none
    loopml runs list                     # then: loopml runs show RUN, loopml runs compare A B

Each run records its params, a per-epoch training curve and final metrics, the model file,
the exact data it read (by content hash), the seed, and its environment (Python, packages,
git commit).
"""

from __future__ import annotations

import pickle
import sys
import tempfile
from pathlib import Path

from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import SGDClassifier
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

import loopml
from loopml.exceptions import WorkspaceNotFound


def workspace() -> loopml.Workspace:
    try:
        return loopml.default_workspace()
    except WorkspaceNotFound:
        print(f"No workspace found: creating one in {Path.cwd()} (loopml init).")
        return loopml.init(".")


def main() -> list[str]:
    ws = workspace()
    data = load_breast_cancer(as_frame=True).frame
    data_dir = Path(tempfile.mkdtemp(prefix="loopml-quickstart-"))
    data_file = data_dir / "breast_cancer.csv"
    data.to_csv(data_file, index=False)
    train, test = train_test_split(data, test_size=0.25, random_state=0, stratify=data["target"])
    scaler = StandardScaler().fit(train.drop(columns="target"))
    x_train, y_train = scaler.transform(train.drop(columns="target")), train["target"]
    x_test, y_test = scaler.transform(test.drop(columns="target")), test["target"]

    run_ids = []
    for alpha in (0.1, 0.0001):
        with ws.start_run(experiment="quickstart", name=f"sgd-alpha{alpha}") as run:
            ws.seed_everything(42)
            run.log_input(data_file, name="breast_cancer")
            run.log_params({"model": "sgd_logistic", "alpha": alpha, "epochs": 20})
            model = SGDClassifier(loss="log_loss", alpha=alpha, random_state=42)
            for epoch in range(20):  # a training curve: one point per epoch
                model.partial_fit(x_train, y_train, classes=[0, 1])
                train_accuracy = accuracy_score(y_train, model.predict(x_train))
                run.log_metric("train_accuracy", train_accuracy, step=epoch)
            predictions = model.predict(x_test)
            accuracy = accuracy_score(y_test, predictions)
            run.log_metrics(
                {
                    "accuracy": accuracy,
                    "f1": f1_score(y_test, predictions),
                    "roc_auc": roc_auc_score(y_test, model.predict_proba(x_test)[:, 1]),
                }
            )
            model_file = data_dir / "model.pkl"
            model_file.write_bytes(pickle.dumps(model))
            run.log_artifact(model_file, artifact_path="model")
            run_ids.append(run.id)
            print(f"run {run.id[:8]} alpha={alpha}: accuracy={accuracy:.3f}")

    best = ws.search_runs(
        experiments="quickstart", order_by=["metrics.accuracy DESC"], max_results=1
    )
    print(f"best run: {best['name'][0]} (accuracy {best['metrics.accuracy'][0]:.3f})")
    a, b = run_ids[0][:8], run_ids[1][:8]
    print("next, look at them:")
    for command in ("loopml runs list", f"loopml runs show {a}", f"loopml runs compare {a} {b}"):
        print(f"  {command}")
    return run_ids


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
