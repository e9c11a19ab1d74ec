"""The model registry contract, on every metadata backend where it matters."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression

from loopml.exceptions import (
    Conflict,
    InvalidInput,
    LoopmlWarning,
    ModelFilesMissing,
    ModelNotFound,
    ModelVersionNotFound,
    PromotionBlocked,
    RunNotFound,
)
from loopml.registry import GatePolicy, PythonModel
from loopml.workspace import Workspace
from services import s3_filesystem


@pytest.fixture(scope="module")
def data() -> tuple[pd.DataFrame, pd.Series, pd.DataFrame]:
    x, y = make_classification(n_samples=600, n_features=5, random_state=0)
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(5)])
    frame["region"] = np.where(np.arange(600) % 2 == 0, "north", "south")
    target = pd.Series(y, name="label")
    holdout = frame.iloc[400:].assign(label=target.iloc[400:].to_numpy())
    return frame.iloc[:400], target.iloc[:400], holdout


FEATURES = [f"f{i}" for i in range(5)]


def good_model(data):  # type: ignore[no-untyped-def]
    x, y, _ = data
    return LogisticRegression().fit(x[FEATURES], y)


def bad_model(data):  # type: ignore[no-untyped-def]
    x, y, _ = data
    return DummyClassifier(strategy="most_frequent").fit(x[FEATURES], y)


@pytest.fixture
def holdout_path(tmp_path: Path, data) -> Path:  # type: ignore[no-untyped-def]
    path = tmp_path / "holdout.csv"
    data[2].to_csv(path, index=False)
    return path


def policy(holdout: Path, **extra: object) -> GatePolicy:
    return GatePolicy(metric="accuracy", holdout=str(holdout), label="label", **extra)  # type: ignore[arg-type]


def test_register_and_load(registry_store_ws: Workspace, data) -> None:  # type: ignore[no-untyped-def]
    x = data[0][FEATURES]
    with registry_store_ws.start_run(experiment="churn") as run:
        run.log_metric("accuracy", 0.9)
        mv = registry_store_ws.register_model("churn", good_model(data), input_example=x.head(5))
    assert (mv.version, mv.stage, mv.flavor, mv.run_id) == (1, "None", "sklearn", run.id)
    assert mv.signature is not None and mv.signature.columns == FEATURES
    assert mv.environment["libraries"]["scikit-learn"]
    loaded = registry_store_ws.load_model("models:/churn/1")
    assert (loaded.predict(x) == good_model(data).predict(x)).all()
    mv2 = registry_store_ws.register_model("churn", bad_model(data))
    assert mv2.version == 2 and mv2.run_id is None
    assert registry_store_ws.get_model_version("models:/churn").version == 2  # latest
    assert [m["name"] for m in registry_store_ws.models.list()] == ["churn"]
    assert [m.version for m in registry_store_ws.models.versions("churn")] == [1, 2]


def test_a_run_started_through_another_workspace_object_is_the_versions_run(
    tmp_path: Path, data, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """`loopml.start_run` uses the default workspace; a script's `Workspace.open()` is another
    object on the same store: what it registers inside the run is that run's."""
    import loopml

    Workspace.init(tmp_path / "proj").close()
    monkeypatch.chdir(tmp_path / "proj")
    ws = Workspace.open()
    try:
        with loopml.start_run(experiment="churn") as run:
            assert ws.runs.active() is run
            mv = ws.models.register("churn", good_model(data))
        assert mv.run_id == run.id
        assert ws.runs.active() is None
        other = Workspace.init(tmp_path / "other")  # another store: not its run
        with loopml.start_run(experiment="churn"):
            assert other.runs.active() is None
        other.close()
    finally:
        ws.close()
        loopml.workspace.default_workspace().close()
        loopml.set_default_workspace(None)


def test_python_function_model_with_artifacts(registry_ws: Workspace, tmp_path: Path) -> None:
    weights = tmp_path / "w.txt"
    weights.write_text("3")

    class Times(PythonModel):
        def load_context(self, context):  # type: ignore[no-untyped-def]
            self.k = int(Path(context.artifacts["weights"]).read_text())

        def predict(self, model_input):  # type: ignore[no-untyped-def]
            return model_input["x"] * self.k

    mv = registry_ws.register_model(
        "times",
        Times(),
        artifacts={"weights": str(weights)},
        input_example=pd.DataFrame({"x": [1]}),
    )
    assert mv.flavor == "python_function"
    model = registry_ws.load_model("models:/times/1")
    assert model.predict(pd.DataFrame({"x": [2, 5]})).tolist() == [6, 15]


def test_register_from_a_run_artifact(registry_ws: Workspace, data, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import pickle

    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(good_model(data)))
    with registry_ws.start_run() as run:
        run.log_artifact(path, "model")
    mv = registry_ws.register_model("m", run_id=run.id, artifact_path="model/model.pkl")
    assert mv.run_id == run.id
    with pytest.raises(RunNotFound):
        registry_ws.register_model("m", run_id="0" * 32, artifact_path="model")


def test_aliases_and_stage_refs(ws: Workspace, data) -> None:  # type: ignore[no-untyped-def]
    ws.register_model("m", good_model(data))
    ws.register_model("m", bad_model(data))
    ws.set_alias("m", "champion", 1)
    ws.set_alias("m", "challenger", 2)
    assert ws.get_model_version("models:/m@champion").version == 1
    assert ws.get_model_version("models:/m@challenger").aliases == ("challenger",)
    ws.set_alias("m", "champion", 2)
    assert ws.get_model_version("models:/m@champion").version == 2
    ws.models.delete_alias("m", "challenger")
    with pytest.raises(ModelVersionNotFound):
        ws.get_model_version("models:/m@challenger")
    ws.promote("m", 1, to="staging")
    assert ws.get_model_version("models:/m@staging").version == 1
    with pytest.raises(InvalidInput, match="names a stage"):
        ws.set_alias("m", "production", 1)


@pytest.mark.slow
def test_gate_blocks_the_worse_model_and_promotes_the_better(
    registry_store_ws: Workspace,
    data,
    holdout_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    gate = policy(holdout_path, min_score=0.6, margin=0.01)
    registry_store_ws.register_model("m", good_model(data), input_example=data[0][FEATURES].head())
    registry_store_ws.register_model("m", bad_model(data), input_example=data[0][FEATURES].head())
    verdict = registry_store_ws.promote("m", 1, policy=gate)
    assert verdict is not None and verdict.passed
    assert registry_store_ws.get_model_version("models:/m@production").version == 1
    with pytest.raises(PromotionBlocked) as info:
        registry_store_ws.promote("m", 2, policy=gate)
    blocked = info.value.verdict
    checks = {c.name: c for c in blocked.checks}
    assert not checks["beats_champion"].passed
    assert checks["beats_champion"].details["champion_version"] == 1
    assert (
        checks["beats_champion"].details["champion_score"]
        > checks["beats_champion"].details["score"]
    )
    assert not checks["threshold"].passed
    assert registry_store_ws.get_model_version("models:/m/2").stage == "None"  # left where it was
    assert registry_store_ws.get_model_version("models:/m@production").version == 1
    stored = registry_store_ws.models.verdict("models:/m/2")
    assert stored is not None and not stored.passed and stored.holdout_digest


def test_check_gate_is_a_dry_run_that_moves_and_records_nothing(
    registry_store_ws: Workspace, data, holdout_path: Path
) -> None:  # type: ignore[no-untyped-def]
    ws = registry_store_ws
    gate = policy(holdout_path, min_score=0.6, margin=0.01)
    ws.register_model("m", good_model(data), input_example=data[0][FEATURES].head())
    ws.register_model("m", bad_model(data), input_example=data[0][FEATURES].head())
    ws.promote("m", 1, policy=gate)
    before = ws.models.history("m")
    worse = ws.models.check_gate("m", 2, policy=gate)
    assert not worse.passed
    assert {c.name for c in worse.checks if not c.passed} >= {"beats_champion"}
    assert ws.models.check_gate("m", 1, policy=gate).passed  # the champion itself
    assert ws.models.history("m") == before  # nothing recorded
    assert ws.models.verdict("models:/m/2") is None
    assert ws.get_model_version("models:/m@production").version == 1


def test_force_needs_a_reason_and_is_recorded(
    registry_store_ws: Workspace, data, holdout_path: Path
) -> None:  # type: ignore[no-untyped-def]
    gate = policy(holdout_path)
    registry_store_ws.register_model("m", good_model(data))
    registry_store_ws.register_model("m", bad_model(data))
    registry_store_ws.promote("m", 1, policy=gate)
    with pytest.raises(InvalidInput, match="needs a reason"):
        registry_store_ws.promote("m", 2, policy=gate, force=True)
    verdict = registry_store_ws.promote(
        "m", 2, policy=gate, force=True, reason="hotfix for incident 42"
    )
    assert verdict is not None and verdict.forced and not verdict.passed
    assert registry_store_ws.get_model_version("models:/m@production").version == 2
    overrides = [e for e in registry_store_ws.models.history("m") if e.kind == "override"]
    assert overrides[0].reason == "hotfix for incident 42"


def test_rollback_history_and_time_travel(registry_store_ws: Workspace, data) -> None:  # type: ignore[no-untyped-def]
    for _ in range(3):
        registry_store_ws.register_model("m", good_model(data))
    registry_store_ws.promote("m", 1)
    time.sleep(0.02)
    between = datetime.now(UTC)
    time.sleep(0.02)
    registry_store_ws.promote("m", 2)
    registry_store_ws.promote("m", 3)
    assert registry_store_ws.rollback("m", reason="bad latency") == 2
    assert registry_store_ws.get_model_version("models:/m@production").version == 2
    assert registry_store_ws.get_model_version("models:/m/3").stage == "Archived"
    assert (
        registry_store_ws.load_model("models:/m/1") is not None
    )  # archived versions stay loadable
    kinds = [e.kind for e in registry_store_ws.models.history("m")]
    assert kinds.count("registered") == 3 and "rollback" in kinds
    assert registry_store_ws.models.state_at("m", between)["production"] == 1
    assert registry_store_ws.models.state_at("m", datetime.now(UTC))["production"] == 2
    assert (
        registry_store_ws.models.state_at("m", datetime(2000, 1, 1, tzinfo=UTC))["versions"] == []
    )
    # rollbacks walk back like undo: never to the version just rolled back from
    assert registry_store_ws.rollback("m") == 1
    with pytest.raises(Conflict, match="each one before m/1 was rolled back from already"):
        registry_store_ws.rollback("m")
    registry_store_ws.promote("m", 3)
    assert registry_store_ws.rollback("m") == 1


def test_approval(registry_ws: Workspace, data, holdout_path: Path) -> None:  # type: ignore[no-untyped-def]
    gate = policy(holdout_path, require_approval=True)
    registry_ws.register_model("m", good_model(data))
    with pytest.raises(PromotionBlocked, match="awaits approval"):
        registry_ws.promote("m", 1, policy=gate)
    assert registry_ws.get_model_version("models:/m/1").stage == "None"
    registry_ws.approve("m", 1, reason="looks good")
    assert registry_ws.get_model_version("models:/m@production").version == 1
    with pytest.raises(Conflict):
        registry_ws.approve("m", 1)


def test_latency_fairness_signature_and_behavioural_checks(
    registry_ws: Workspace,
    data,
    holdout_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    module = tmp_path / "mychecks.py"
    module.write_text(
        textwrap.dedent(
            """
            def predicts_both_classes(model, holdout):
                values = set(model.predict(holdout[[f"f{i}" for i in range(5)]]))
                return values == {0, 1}, {"classes": sorted(int(v) for v in values)}

            def explodes(model, holdout):
                raise RuntimeError("check crashed")
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    x = data[0][FEATURES]
    registry_ws.register_model("m", good_model(data), input_example=x.head())
    gate = policy(
        holdout_path,
        latency_p95_ms=1000.0,
        latency_sample=20,
        fairness_column="region",
        fairness_max_gap=0.5,
        checks=("mychecks:predicts_both_classes", "mychecks:explodes"),
    )
    with pytest.raises(PromotionBlocked) as info:
        registry_ws.promote("m", 1, policy=gate)
    checks = {c.name: c for c in info.value.verdict.checks}
    assert checks["latency"].passed and checks["latency"].details["sample"] == 20
    assert checks["fairness"].passed and set(checks["fairness"].details["slices"]) == {
        "north",
        "south",
    }
    assert checks["check:mychecks:predicts_both_classes"].passed
    explode = checks["check:mychecks:explodes"]
    assert not explode.passed and "check crashed" in explode.details["error"]
    # a signature change against Production is caught
    registry_ws.promote("m", 1, policy=GatePolicy(beat_champion=False))
    narrow = LogisticRegression().fit(x[FEATURES[:3]], data[1])
    registry_ws.register_model("m", narrow, input_example=x[FEATURES[:3]].head())
    with pytest.raises(PromotionBlocked) as info:
        registry_ws.promote("m", 2, policy=GatePolicy(beat_champion=False))
    sig = {c.name: c for c in info.value.verdict.checks}["signature"]
    assert not sig.passed and "drops input columns" in sig.details["problems"][0]


def test_holdout_missing_columns_fails_the_gate(sqlite_ws: Workspace, data, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "thin.csv"
    data[2][["f0", "label"]].to_csv(path, index=False)
    sqlite_ws.register_model("m", good_model(data), input_example=data[0][FEATURES].head())
    with pytest.raises(PromotionBlocked) as info:
        sqlite_ws.promote("m", 1, policy=policy(path))
    details = info.value.verdict.checks[0].details
    assert "lacks columns" in details["error"] and "f1" in details["error"]


def test_bad_references(sqlite_ws: Workspace, data) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ModelNotFound):
        sqlite_ws.promote("nope", 1)
    sqlite_ws.register_model("m", good_model(data))
    with pytest.raises(ModelVersionNotFound):
        sqlite_ws.promote("m", 7)
    with pytest.raises(InvalidInput, match="Not a model reference"):
        sqlite_ws.load_model("models:/a/b/c")
    with pytest.warns(LoopmlWarning, match="No gate is configured for 'm'"):
        sqlite_ws.promote("m", 1)
    with pytest.raises(Conflict, match="no earlier Production"):
        sqlite_ws.rollback("m")
    with pytest.raises(Conflict, match="m/1 is already in Production: nothing to promote"):
        sqlite_ws.promote("m", 1)
    assert [e.kind for e in sqlite_ws.models.history("m")].count("gate") == 1  # nothing recorded
    with pytest.raises(InvalidInput, match="looks like a version number"):
        sqlite_ws.models.set_alias("m", "2", 1)
    with pytest.raises(ModelVersionNotFound, match="has no version in Staging"):
        sqlite_ws.get_model_version("models:/m@staging")


def test_missing_blob_and_library_drift(registry_ws: Workspace, data) -> None:  # type: ignore[no-untyped-def]
    import json

    from sqlalchemy import update

    from loopml.registry.tables import model_versions

    mv = registry_ws.register_model("m", good_model(data))
    env = dict(mv.environment)
    env["libraries"] = {**env["libraries"], "scikit-learn": "0.0.1"}
    registry_ws.db.transact(
        lambda c: c.execute(update(model_versions).values(environment=json.dumps(env)))
    )
    with pytest.warns(LoopmlWarning, match="scikit-learn 0.0.1"):
        registry_ws.load_model("models:/m/1")
    registry_ws.blobs.delete(mv.digest)
    with pytest.raises(ModelFilesMissing, match="missing or corrupted"):
        registry_ws.load_model("models:/m/1")


def test_lineage(registry_ws: Workspace, data, holdout_path: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    train = tmp_path / "train.csv"
    data[0].to_csv(train)
    with registry_ws.start_run(experiment="e") as run:
        run.log_params({"C": 1.0})
        run.log_metric("accuracy", 0.9)
        ref = run.log_input(train)
        registry_ws.register_model("m", good_model(data))
    registry_ws.promote("m", 1, policy=policy(holdout_path))
    chain = registry_ws.lineage("models:/m@production")
    assert chain["version"] == 1 and chain["stage"] == "Production"
    assert chain["run"]["params"] == {"C": "1.0"}
    assert chain["run"]["inputs"][0]["digest"] == ref.digest
    assert chain["gate"]["passed"] is True
    assert chain["promotions"][0]["actor"]


@pytest.mark.slow
def test_concurrent_promotions_leave_one_production(tmp_path: Path, data) -> None:  # type: ignore[no-untyped-def]
    ws = Workspace.init(tmp_path)
    for _ in range(2):
        ws.register_model("m", good_model(data))
    ws.close()
    code = textwrap.dedent(
        """
        import sys, loopml
        from loopml.registry import GatePolicy
        ws = loopml.Workspace.open(sys.argv[1])
        ws.db.connect()
        print("ready", flush=True)
        sys.stdin.readline()  # the barrier: both start once both are ready
        ws.promote("m", int(sys.argv[2]), policy=GatePolicy(beat_champion=False))
        print("ok")
        """
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path), str(version)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for version in (1, 2)
    ]
    for proc in procs:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready", proc.communicate(timeout=120)
    for proc in procs:  # release both before waiting for either
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    ws = Workspace.open(tmp_path)
    stages = [m.stage for m in ws.models.versions("m")]
    assert stages.count("Production") == 1
    moves = [e for e in ws.models.history("m") if e.kind == "stage" and e.target == "Production"]
    assert sorted(e.version for e in moves) == [1, 2]
    ws.close()


def test_names_and_aliases_a_model_reference_cant_hold_are_refused(
    sqlite_ws: Workspace,
    data,  # type: ignore[no-untyped-def]
) -> None:
    with pytest.raises(InvalidInput, match=r"model name 'team/churn' has '/'"):
        sqlite_ws.register_model("team/churn", good_model(data))
    sqlite_ws.register_model("m", good_model(data))
    with pytest.raises(InvalidInput, match="'@'"):
        sqlite_ws.set_alias("m", "a@b", 1)
    with pytest.raises(InvalidInput, match="models:/NAME@ALIAS reference can't hold"):
        sqlite_ws.set_alias("m", "blue/green", 1)
    sqlite_ws.set_alias("m", "blue green", 1)
    assert sqlite_ws.get_model_version("models:/m@blue green").version == 1
    with pytest.raises(InvalidInput, match=r"^Cannot register an object: .*predict method$"):
        sqlite_ws.register_model("m", object())


def test_the_package_lands_in_the_workspace_blob_store(
    registry_ws: Workspace,
    blob_backend: str,
    data,  # type: ignore[no-untyped-def]
) -> None:
    digest = registry_ws.register_model("m", good_model(data)).digest
    url = registry_ws.settings.artifacts_url
    key = f"{digest[:2]}/{digest[2:]}"
    local = registry_ws.root / ".loopml" / "blobs"
    if blob_backend == "s3":
        assert url.startswith("s3://")
        # read back with a client of our own, not the workspace's
        assert s3_filesystem().exists(f"{url.removeprefix('s3://')}/{key}")
        assert not (local / key).exists()  # nothing written to the folder's default store
    else:
        assert Path(url) == local and (local / key).is_file()
