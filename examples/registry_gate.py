"""Versioned data → two (three) models → the gate blocks the worse one, promotes the better
one → rollback → lineage.

    python examples/registry_gate.py [WORKDIR]     # default: a fresh temporary folder

The gate runs a behavioural check from ``my_checks.py`` beside ``loopml.toml``: checks are
imported with the workspace root on ``sys.path``, so the last step, ``loopml models promote``
run from the ``notebooks/`` subfolder, finds it too.

Afterwards, in WORKDIR: ``loopml models history churn``, ``loopml models lineage
churn@production``, ``loopml data status``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
from sklearn.datasets import make_classification
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score

import loopml
import loopml.data
from loopml.exceptions import PromotionBlocked

GATE = """
[gates.churn]
metric = "accuracy"
holdout = "data/holdout.csv"
label = "churned"
min_score = 0.70
margin = 0.01
latency_p95_ms = 200
checks = ["my_checks:predicts_both_classes"]
"""

CHECKS = '''"""Behavioural checks of the churn gate: fn(model, holdout) -> bool | (bool, details)."""


def predicts_both_classes(model, holdout):
    features = holdout.drop(columns=["churned"])
    classes = sorted(int(c) for c in set(model.predict(features)))
    return classes == [0, 1], {"classes": classes}
'''


def make_data(folder: Path) -> list[str]:
    x, y = make_classification(
        n_samples=3000, n_features=8, n_informative=5, flip_y=0.05, random_state=7
    )
    columns = [f"f{i}" for i in range(8)]
    frame = pd.DataFrame(x, columns=columns).assign(churned=y)
    folder.mkdir(parents=True, exist_ok=True)
    frame.iloc[:2000].to_csv(folder / "train.csv", index=False)
    frame.iloc[2000:].to_csv(folder / "holdout.csv", index=False)
    return columns


def train_and_register(ws: loopml.Workspace, name: str, model: object, columns: list[str]) -> int:
    train = pd.read_csv("data/train.csv")
    holdout = pd.read_csv("data/holdout.csv")
    with ws.start_run(experiment="churn", name=name) as run:
        ws.seed_everything(0)
        run.log_input("data/train.csv", name="train")
        run.log_params({"model": name, **getattr(model, "get_params", dict)()})
        model.fit(train[columns], train["churned"])  # type: ignore[attr-defined]
        accuracy = accuracy_score(holdout["churned"], model.predict(holdout[columns]))  # type: ignore[attr-defined]
        run.log_metric("accuracy", accuracy)
        version = ws.register_model("churn", model, input_example=train[columns].head())
    print(f"registered churn/{version.version} ({name}): holdout accuracy {accuracy:.3f}")
    return version.version


def promote(ws: loopml.Workspace, version: int) -> None:
    try:
        verdict = ws.promote("churn", version)
        assert verdict is not None
        print(f"PROMOTED churn/{version}\n{verdict.summary()}")
    except PromotionBlocked as blocked:
        print(f"BLOCKED churn/{version}\n{blocked.verdict.summary()}")  # type: ignore[union-attr]


def main(workdir: Path) -> None:
    os.chdir(workdir)
    loopml.init(".")
    columns = make_data(Path("data"))
    for path in ("data/train.csv", "data/holdout.csv"):
        version = loopml.data.add(path)
        print(f"data version of {path}: {version.hash[:16]} ({version.size} bytes)")
    with open("loopml.toml", "a") as fh:
        fh.write(GATE)
    Path("my_checks.py").write_text(CHECKS)
    ws = loopml.Workspace.open(".")  # re-read loopml.toml with the gate
    loopml.set_default_workspace(ws)

    first = train_and_register(ws, "logistic", LogisticRegression(C=0.01, max_iter=500), columns)
    promote(ws, first)  # no champion yet: passes on the threshold
    worse = train_and_register(ws, "majority", DummyClassifier(), columns)
    promote(ws, worse)  # blocked: scores below Production on the same holdout
    better = train_and_register(
        ws, "forest", RandomForestClassifier(n_estimators=100, random_state=0), columns
    )
    promote(ws, better)  # beats Production by more than the margin
    print(f"Production is churn/{ws.get_model_version('models:/churn@production').version}")
    back = ws.rollback("churn", reason="demo: roll back to the previous Production")
    print(f"rolled back: Production is churn/{back}")
    chain = ws.lineage("models:/churn@production")
    train_digest = chain["run"]["inputs"][0]["digest"]
    pointer_hash = loopml.data.add("data/train.csv").hash
    print(
        f"the run's training data is data version {train_digest[:16]}: "
        f"{'the same as' if train_digest == pointer_hash else 'NOT'} data/train.csv.loopml"
    )
    ws.close()
    print("loopml models lineage churn@production:")
    subprocess.run(["loopml", "models", "lineage", "churn@production"], check=True)
    notebooks = Path("notebooks")
    notebooks.mkdir(exist_ok=True)
    print("cd notebooks && loopml models promote churn 3:", flush=True)
    subprocess.run(["loopml", "models", "promote", "churn", str(better)], check=True, cwd=notebooks)
    print("gate PASS — promoted from the notebooks/ folder")


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="loopml-"))
    target.mkdir(parents=True, exist_ok=True)
    print(f"working in {target}")
    main(target.resolve())
