"""MLflow's tracking REST API, driven by the real MLflow client against a loopml server, and
read back through loopml's own API."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from loopml.workspace import Workspace

API = "/api/2.0/mlflow"

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")


def post(url: str, path: str, body: Any, **kwargs: Any) -> httpx.Response:
    return httpx.post(f"{url}{API}/{path}", json=body, timeout=30, **kwargs)


def get(url: str, path: str, **params: Any) -> httpx.Response:
    return httpx.get(f"{url}{API}/{path}", params=params, timeout=30)


@pytest.fixture(autouse=True)
def _no_active_experiment(monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow's client remembers the experiment of ``set_experiment`` in a module global (and
    MLFLOW_EXPERIMENT_ID): each test starts without one, as a fresh script does."""
    fluent = pytest.importorskip("mlflow.tracking.fluent")
    monkeypatch.setattr(fluent, "_active_experiment_id", None)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)


def error_code(answer: httpx.Response) -> str:
    return str(answer.json()["error_code"])


# -- the real client --------------------------------------------------------------------------


def test_a_normal_mlflow_script_lands_in_loopml(
    mlflow_client: tuple[Any, Workspace, str], tmp_path: Path
) -> None:
    mlflow, ws, _url = mlflow_client
    experiment = mlflow.set_experiment("churn")
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    folder = tmp_path / "plots"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.csv").write_text("x\n1\n")
    (folder / "sub" / "b.txt").write_text("b")
    frame = pd.DataFrame({"a": [1, 2, 3], "b": [0.1, 0.2, 0.3]})

    with mlflow.start_run(run_name="parent") as parent:
        mlflow.log_param("lr", 0.01)
        mlflow.log_params({"depth": 3, "model": "rf"})
        for step in range(5):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
        mlflow.log_metrics({"acc": 0.9, "f1": 0.8}, step=4)
        mlflow.set_tag("team", "growth")
        mlflow.log_artifact(str(notes))
        mlflow.log_artifacts(str(folder), artifact_path="plots")
        mlflow.log_dict({"k": [1, 2]}, "config/params.json")
        mlflow.log_text("some text", "readme.md")
        mlflow.log_input(mlflow.data.from_pandas(frame, name="train"), context="training")
        with mlflow.start_run(run_name="child", nested=True) as child:
            mlflow.log_metric("loss", 0.5)
    parent_id, child_id = parent.info.run_id, child.info.run_id

    # What loopml sees.
    record = ws.runs.get(parent_id)
    assert record.experiment == "churn"
    assert record.experiment_id == int(experiment.experiment_id)
    assert record.name == "parent"
    assert record.status == "FINISHED"
    assert record.end_time is not None
    assert record.params == {"depth": "3", "lr": "0.01", "model": "rf"}
    assert record.metrics == {"acc": 0.9, "f1": 0.8, "loss": pytest.approx(0.2)}
    assert record.tags["team"] == "growth"
    history = ws.runs.metric_history(parent_id, "loss")
    assert history["step"].tolist() == [0, 1, 2, 3, 4]
    assert history["value"].tolist() == pytest.approx([1.0, 0.5, 1 / 3, 0.25, 0.2])
    assert [i["name"] for i in record.inputs] == ["train"]
    dataset = mlflow.get_run(parent_id).inputs.dataset_inputs[0]
    assert record.inputs[0]["digest"] == dataset.dataset.digest
    assert dataset.dataset.schema  # kept beside loopml's record
    assert {t.key: t.value for t in dataset.tags}["mlflow.data.context"] == "training"
    paths = {a.path for a in ws.runs.list_artifacts(parent_id)}
    assert paths == {
        "notes.txt",
        "plots/a.csv",
        "plots/sub/b.txt",
        "config/params.json",
        "readme.md",
    }
    out = ws.runs.download_artifacts(parent_id, "config/params.json", tmp_path / "dl")
    assert json.loads(out.read_text()) == {"k": [1, 2]}
    child_record = ws.runs.get(child_id)
    assert child_record.parent_run_id == parent_id
    assert child_record.metrics == {"loss": 0.5}

    # ... and its CLI.
    from click.testing import CliRunner

    from loopml.cli.main import cli

    shown = CliRunner().invoke(
        cli, ["--workspace", str(ws.root), "runs", "show", parent_id, "--json"]
    )
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["params"] == record.params
    listed_cli = CliRunner().invoke(
        cli, ["--workspace", str(ws.root), "runs", "artifacts", parent_id, "--json"]
    )
    assert listed_cli.exit_code == 0, listed_cli.output
    assert {a["path"] for a in json.loads(listed_cli.output)} == paths

    # What MLflow's client reads back.
    client = mlflow.MlflowClient()
    run = client.get_run(parent_id)
    assert (
        run.info.artifact_uri
        == f"mlflow-artifacts:/{experiment.experiment_id}/{parent_id}/artifacts"
    )
    assert run.data.params == record.params
    assert run.data.metrics == pytest.approx(record.metrics)
    assert [m.value for m in client.get_metric_history(parent_id, "loss")] == pytest.approx(
        [1.0, 0.5, 1 / 3, 0.25, 0.2]
    )
    listed = {f.path: f.is_dir for f in client.list_artifacts(parent_id)}
    assert listed == {
        "config": True,
        "notes.txt": False,
        "plots": True,
        "readme.md": False,
    }
    assert {f.path for f in client.list_artifacts(parent_id, "plots")} == {
        "plots/a.csv",
        "plots/sub",
    }
    local = client.download_artifacts(parent_id, "plots", str(tmp_path / "back"))
    assert (Path(local) / "sub" / "b.txt").read_text() == "b"
    assert mlflow.artifacts.load_text(f"{run.info.artifact_uri}/readme.md") == "some text"


def test_search_runs_agrees_with_loopml(mlflow_client: tuple[Any, Workspace, str]) -> None:
    mlflow, ws, _url = mlflow_client
    experiment = mlflow.set_experiment("search")
    for i in range(6):
        with mlflow.start_run(run_name=f"r{i}"):
            mlflow.log_param("model", "rf" if i % 2 else "lr")
            mlflow.log_metric("acc", i / 10)
            mlflow.set_tag("i", str(i))
    found = mlflow.search_runs(
        experiment_ids=[experiment.experiment_id],
        filter_string="metrics.acc > 0.15 and params.model = 'rf'",
        order_by=["metrics.acc DESC"],
    )
    ours = ws.runs.search(
        "search", filter="metrics.acc > 0.15 and params.model = 'rf'", order_by=["metrics.acc DESC"]
    )
    assert found["run_id"].tolist() == ours["run_id"].tolist()
    assert found["metrics.acc"].tolist() == pytest.approx([0.5, 0.3])
    assert found["tags.mlflow.runName"].tolist() == ["r5", "r3"]
    assert found["params.model"].tolist() == ours["params.model"].tolist()

    # Paging through every run, two at a time, in start order.
    client = mlflow.MlflowClient()
    seen, token = [], None
    while True:
        page = client.search_runs(
            [experiment.experiment_id],
            order_by=["attributes.start_time ASC"],
            max_results=2,
            page_token=token,
        )
        seen.extend(r.info.run_name for r in page)
        token = page.token
        if not token:
            break
    assert seen == [f"r{i}" for i in range(6)]

    # A filter on the user, an MLflow attribute loopml keeps as a tag.
    user = client.get_run(found["run_id"][0]).info.user_id
    assert user
    assert (
        len(mlflow.search_runs([experiment.experiment_id], f"attributes.user_id = '{user}'")) == 6
    )

    # Deleted runs: out of the default view, in DELETED_ONLY.
    client.delete_run(found["run_id"][0])
    assert len(mlflow.search_runs([experiment.experiment_id])) == 5
    deleted = mlflow.search_runs([experiment.experiment_id], run_view_type=2)
    assert deleted["run_id"].tolist() == [found["run_id"][0]]
    client.restore_run(found["run_id"][0])
    assert len(mlflow.search_runs([experiment.experiment_id])) == 6


def test_the_default_experiment_is_zero(mlflow_client: tuple[Any, Workspace, str]) -> None:
    mlflow, ws, _url = mlflow_client
    with mlflow.start_run() as run:  # no experiment set: MLflow's "0"
        mlflow.log_metric("x", 1.0)
    assert ws.runs.get(run.info.run_id).experiment == "Default"
    client = mlflow.MlflowClient()
    assert client.get_experiment("0").name == "Default"
    assert client.get_experiment_by_name("Default").experiment_id == str(
        ws.experiments.get("Default").id
    )
    assert len(mlflow.search_runs(experiment_ids=["0"])) == 1


def test_experiments_lifecycle_and_tags(mlflow_client: tuple[Any, Workspace, str]) -> None:
    mlflow, ws, _url = mlflow_client
    client = mlflow.MlflowClient()
    exp_id = client.create_experiment("exp-a", tags={"team": "a"})
    assert ws.experiments.get("exp-a").id == int(exp_id)
    assert client.get_experiment(exp_id).tags == {"team": "a"}
    client.set_experiment_tag(exp_id, "mlflow.note.content", "about a")
    assert ws.experiments.get(int(exp_id)).description == "about a"
    client.rename_experiment(exp_id, "exp-b")
    assert ws.experiments.get(int(exp_id)).name == "exp-b"
    names = {e.name for e in client.search_experiments()}
    assert {"Default", "exp-b"} <= names
    assert [e.name for e in client.search_experiments(filter_string="name LIKE 'exp-%'")] == [
        "exp-b"
    ]
    assert [e.name for e in client.search_experiments(filter_string="tags.team = 'a'")] == ["exp-b"]
    client.delete_experiment(exp_id)
    assert client.get_experiment(exp_id).lifecycle_stage == "deleted"
    assert "exp-b" not in {e.name for e in client.search_experiments()}
    assert "exp-b" in {e.name for e in client.search_experiments(view_type=2)}
    with pytest.raises(mlflow.exceptions.MlflowException, match="active"):
        client.create_run(exp_id)
    client.restore_experiment(exp_id)
    assert client.get_experiment(exp_id).lifecycle_stage == "active"
    with pytest.raises(mlflow.exceptions.MlflowException) as info:
        client.create_experiment("exp-b")
    assert info.value.error_code == "RESOURCE_ALREADY_EXISTS"


def test_run_updates_tags_and_deletes(mlflow_client: tuple[Any, Workspace, str]) -> None:
    mlflow, ws, _url = mlflow_client
    client = mlflow.MlflowClient()
    exp_id = client.create_experiment("updates")
    run = client.create_run(exp_id, run_name="first", tags={"a": "1"})
    run_id = run.info.run_id
    client.set_tag(run_id, "b", "2")
    client.delete_tag(run_id, "a")
    client.update_run(run_id, name="second")
    assert ws.runs.get(run_id).name == "second"
    assert client.get_run(run_id).data.tags["mlflow.runName"] == "second"
    client.set_terminated(run_id, "FAILED")
    record = ws.runs.get(run_id)
    assert record.status == "FAILED"
    assert "a" not in record.tags
    assert record.tags["b"] == "2"
    events = [e.kind for e in ws.events.read()]
    assert "run.failed" in events
    client.delete_run(run_id)
    assert ws.runs.get(run_id).deleted
    assert client.get_run(run_id).info.lifecycle_stage == "deleted"
    with pytest.raises(mlflow.exceptions.MlflowException, match="active"):
        client.log_metric(run_id, "x", 1.0)
    client.restore_run(run_id)
    client.log_metric(run_id, "x", 1.0)  # an ended run takes points, as in MLflow
    assert ws.runs.get(run_id).metrics == {"x": 1.0}


def test_nan_and_infinite_metrics_round_trip(mlflow_client: tuple[Any, Workspace, str]) -> None:
    mlflow, ws, _url = mlflow_client
    with mlflow.start_run() as run:
        mlflow.log_metric("nan", float("nan"))
        mlflow.log_metric("inf", float("inf"))
        mlflow.log_metric("ninf", float("-inf"))
    metrics = mlflow.MlflowClient().get_run(run.info.run_id).data.metrics
    assert math.isnan(metrics["nan"])
    assert metrics["inf"] == math.inf
    assert metrics["ninf"] == -math.inf
    assert math.isnan(ws.runs.get(run.info.run_id).metrics["nan"])


def test_log_model_history_and_outputs(
    mlflow_client: tuple[Any, Workspace, str], server: Callable[..., str]
) -> None:
    mlflow, ws, url = mlflow_client
    with mlflow.start_run() as run:
        pass
    run_id = run.info.run_id
    model = {"artifact_path": "model", "flavors": {"python_function": {}}, "run_id": run_id}
    assert post(
        url, "runs/log-model", {"run_id": run_id, "model_json": json.dumps(model)}
    ).is_success
    assert json.loads(ws.runs.get(run_id).tags["mlflow.log-model.history"]) == [model]
    answer = post(
        url, "runs/outputs", {"run_id": run_id, "models": [{"model_id": "m-1", "step": 3}]}
    )
    assert answer.is_success
    got = mlflow.MlflowClient().get_run(run_id)
    assert [(o.model_id, o.step) for o in got.outputs.model_outputs] == [("m-1", 3)]


# -- bad input --------------------------------------------------------------------------------


def test_bad_input_gets_mlflows_errors(
    mlflow_client: tuple[Any, Workspace, str], server: Callable[..., str]
) -> None:
    mlflow, ws, url = mlflow_client
    MlflowException = mlflow.exceptions.MlflowException
    client = mlflow.MlflowClient()
    with mlflow.start_run() as run:
        mlflow.log_param("lr", "0.1")
        mlflow.log_param("lr", "0.1")  # the same value again is fine
        with pytest.raises(MlflowException) as info:
            mlflow.log_param("lr", "0.2")
        assert info.value.error_code == "INVALID_PARAMETER_VALUE"
        assert "Changing param values is not allowed" in str(info.value)
    run_id = run.info.run_id
    assert ws.runs.get(run_id).params == {"lr": "0.1"}

    with pytest.raises(MlflowException) as info:
        client.get_run("0" * 32)
    assert info.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    with pytest.raises(MlflowException) as info:
        client.get_experiment("987654")
    assert info.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert client.get_experiment_by_name("no such") is None

    raw = httpx.post(
        f"{url}{API}/runs/log-metric",
        content=b'{"run_id": "' + run_id.encode() + b'", "key": ',
        headers={"Content-Type": "application/json"},
    )
    assert raw.status_code == 400
    assert error_code(raw) == "MALFORMED_REQUEST"
    for body in (
        {"run_id": run_id, "key": "x", "value": "abc", "timestamp": 1, "step": 0},
        {"run_id": run_id, "key": "../x", "value": 1, "timestamp": 1, "step": 0},
        {"run_id": run_id, "key": "x", "value": 1, "step": 0},
        {"run_id": run_id, "key": "x", "value": 1, "timestamp": 1, "step": 2**64},
    ):
        answer = post(url, "runs/log-metric", body)
        assert answer.status_code == 400, body
        assert error_code(answer) == "INVALID_PARAMETER_VALUE"
    answer = post(url, "runs/log-parameter", {"run_id": run_id, "key": "long", "value": "x" * 6001})
    assert error_code(answer) == "INVALID_PARAMETER_VALUE"
    answer = post(url, "runs/set-tag", {"run_id": run_id, "key": "t", "value": "x" * 8001})
    assert error_code(answer) == "INVALID_PARAMETER_VALUE"
    answer = post(url, "runs/search", {"experiment_ids": ["0"], "filter": "metrics.acc >>> 1"})
    assert error_code(answer) == "INVALID_PARAMETER_VALUE"
    answer = get(url, "experiments/get", experiment_id="abc")
    assert error_code(answer) == "INVALID_PARAMETER_VALUE"
    assert "x" not in ws.runs.get(run_id).metrics


def test_log_batch_limits_are_mlflows(mlflow_client: tuple[Any, Workspace, str]) -> None:
    mlflow, ws, url = mlflow_client
    with mlflow.start_run() as run:
        pass
    run_id = run.info.run_id
    metric = {"key": "m", "value": 1.0, "timestamp": 1_700_000_000_000, "step": 0}
    cases = {
        "metrics": {"metrics": [metric] * 1001},
        "params": {"params": [{"key": f"p{i}", "value": "v"} for i in range(101)]},
        "tags": {"tags": [{"key": f"t{i}", "value": "v"} for i in range(101)]},
        "total metrics, params, and tags": {
            "metrics": [metric] * 950,
            "params": [{"key": f"p{i}", "value": "v"} for i in range(51)],
        },
    }
    for what, body in cases.items():
        answer = post(url, "runs/log-batch", {"run_id": run_id, **body})
        assert answer.status_code == 400, what
        assert error_code(answer) == "INVALID_PARAMETER_VALUE"
        assert what in answer.json()["message"]
    # Nothing of a refused batch is stored, not even its valid part.
    answer = post(
        url,
        "runs/log-batch",
        {"run_id": run_id, "metrics": [metric], "params": [{"key": "p", "value": "x" * 7000}]},
    )
    assert error_code(answer) == "INVALID_PARAMETER_VALUE"
    record = ws.runs.get(run_id)
    assert record.metrics == {} and record.params == {}
    # The largest batch MLflow allows goes through.
    points = [{**metric, "step": i, "value": float(i)} for i in range(1000)]
    assert post(url, "runs/log-batch", {"run_id": run_id, "metrics": points}).is_success
    assert len(ws.runs.metric_history(run_id, "m")) == 1000


def test_an_oversized_body_is_413(
    server: Callable[..., str], workspace_factory: Callable[..., Workspace]
) -> None:
    ws = workspace_factory("sqlite-file")
    ws.settings = ws.settings.with_overrides(
        server=replace(ws.settings.server, max_request_bytes=1000)
    )
    url = server(ws)
    answer = post(url, "experiments/create", {"name": "x" * 2000})
    assert answer.status_code == 413
    assert error_code(answer) == "REQUEST_TOO_LARGE"
    assert [e.name for e in ws.experiments.list()] == []


@pytest.mark.parametrize(
    "store", ["sqlite-file", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_eight_clients_logging_batches_into_one_run(
    server: Callable[..., str], workspace_factory: Callable[..., Workspace], store: str
) -> None:
    ws = workspace_factory(store)
    url = server(ws)
    exp = post(url, "experiments/create", {"name": "concurrent"}).json()["experiment_id"]
    run_id = post(url, "runs/create", {"experiment_id": exp}).json()["run"]["info"]["run_id"]
    errors: list[BaseException] = []

    def client(n: int) -> None:
        try:
            with httpx.Client(base_url=url, timeout=120) as http:
                for batch in range(10):
                    step = batch * 100
                    # Its own key, and two every client shares, in an order of its own.
                    shared = ["shared-a", "shared-b"] if n % 2 else ["shared-b", "shared-a"]
                    points = [
                        {
                            "key": key,
                            "value": float(n),
                            "timestamp": 1_700_000_000_000 + n,
                            "step": step + i,
                        }
                        for i in range(100)
                        for key in (f"c{n}", *shared)
                    ]
                    answer = http.post(
                        f"{API}/runs/log-batch",
                        json={
                            "run_id": run_id,
                            "metrics": points,
                            "tags": [{"key": f"client{n}", "value": str(batch)}],
                        },
                    )
                    answer.raise_for_status()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    record = ws.runs.get(run_id)
    for n in range(8):
        history = ws.runs.metric_history(run_id, f"c{n}")
        assert history["step"].tolist() == list(range(1000))
        assert record.tags[f"client{n}"] == "9"
    for key in ("shared-a", "shared-b"):
        history = ws.runs.metric_history(run_id, key)
        assert len(history) == 8 * 1000  # every point of every client
    # The latest value of a shared key is the point with the highest (step, timestamp).
    assert record.metrics["shared-a"] == 7.0


def test_get_history_bulk_interval_spreads_points(
    mlflow_client: tuple[Any, Workspace, str],
) -> None:
    mlflow, _ws, url = mlflow_client
    from mlflow.entities import Metric

    with mlflow.start_run() as run:
        client = mlflow.MlflowClient()
        client.log_batch(
            run.info.run_id,
            metrics=[Metric("loss", float(i), 1_700_000_000_000, i) for i in range(1000)],
        )
    answer = get(
        url,
        "metrics/get-history-bulk-interval",
        run_ids=run.info.run_id,
        metric_key="loss",
        max_results=11,
    ).json()["metrics"]
    steps = [m["step"] for m in answer]
    assert len(steps) == 11
    assert steps[0] == 0 and steps[-1] == 999  # the ends are kept
    assert all(90 <= b - a <= 110 for a, b in zip(steps, steps[1:], strict=False))


# -- access -----------------------------------------------------------------------------------


class _Denied:
    """Every check fails and nothing is readable; records what was asked."""

    def __init__(self) -> None:
        self.checked: list[tuple[str, str, str]] = []
        self.made: list[tuple[str, str]] = []

    def middleware(self, app: Any) -> Any:
        return app

    def principal(self, conn: Any) -> Any:
        from loopml.server.context import ANONYMOUS

        return ANONYMOUS

    def check(self, conn: Any, kind: Any, key: str, level: Any) -> None:
        from loopml.server.errors import ApiError

        self.checked.append((kind, key, level))
        raise ApiError("PERMISSION_DENIED", f"no {level} on {kind} {key}")

    def readable(self, conn: Any, kind: Any) -> set[str] | None:
        return set()

    def created(self, conn: Any, kind: Any, key: str) -> None:
        self.made.append((kind, key))


_M = {"key": "m", "value": 1.0, "timestamp": 1_700_000_000_000, "step": 0}
ROUTES = [
    ("GET", "experiments/get", {"experiment_id": "{exp}"}, "read"),
    ("GET", "experiments/get-by-name", {"experiment_name": "guarded"}, "read"),
    ("POST", "experiments/update", {"experiment_id": "{exp}", "new_name": "x"}, "edit"),
    ("POST", "experiments/delete", {"experiment_id": "{exp}"}, "manage"),
    ("POST", "experiments/restore", {"experiment_id": "{exp}"}, "manage"),
    (
        "POST",
        "experiments/set-experiment-tag",
        {"experiment_id": "{exp}", "key": "k", "value": "v"},
        "edit",
    ),
    ("POST", "experiments/delete-experiment-tag", {"experiment_id": "{exp}", "key": "k"}, "edit"),
    ("POST", "runs/create", {"experiment_id": "{exp}"}, "edit"),
    ("GET", "runs/get", {"run_id": "{run}"}, "read"),
    ("POST", "runs/update", {"run_id": "{run}", "status": "FINISHED"}, "edit"),
    ("POST", "runs/delete", {"run_id": "{run}"}, "manage"),
    ("POST", "runs/restore", {"run_id": "{run}"}, "manage"),
    ("POST", "runs/log-metric", {"run_id": "{run}", **_M}, "edit"),
    ("POST", "runs/log-parameter", {"run_id": "{run}", "key": "p", "value": "v"}, "edit"),
    ("POST", "runs/set-tag", {"run_id": "{run}", "key": "t", "value": "v"}, "edit"),
    ("POST", "runs/delete-tag", {"run_id": "{run}", "key": "t"}, "edit"),
    ("POST", "runs/log-batch", {"run_id": "{run}", "metrics": [_M]}, "edit"),
    ("POST", "runs/log-model", {"run_id": "{run}", "model_json": "{{}}"}, "edit"),
    ("POST", "runs/log-inputs", {"run_id": "{run}", "datasets": []}, "edit"),
    ("POST", "runs/outputs", {"run_id": "{run}", "models": []}, "edit"),
    ("GET", "metrics/get-history", {"run_id": "{run}", "metric_key": "m"}, "read"),
    ("GET", "metrics/get-history-bulk-interval", {"run_ids": "{run}", "metric_key": "m"}, "read"),
    ("GET", "artifacts/list", {"run_id": "{run}"}, "read"),
]


@pytest.fixture
def guarded(
    server: Callable[..., str], sqlite_ws: Workspace
) -> tuple[str, _Denied, str, str, Workspace]:
    with sqlite_ws.runs.start(experiment="guarded", log_environment=False) as run:
        pass
    access = _Denied()
    return server(sqlite_ws, access=access), access, str(run.experiment_id), run.id, sqlite_ws


@pytest.mark.parametrize(("method", "path", "body", "level"), ROUTES, ids=[r[1] for r in ROUTES])
def test_every_route_checks_access_first(
    guarded: tuple[str, _Denied, str, str, Workspace],
    method: str,
    path: str,
    body: dict[str, Any],
    level: str,
) -> None:
    url, access, exp, run_id, ws = guarded
    filled = {
        k: v.format(exp=exp, run=run_id) if isinstance(v, str) else v for k, v in body.items()
    }
    answer = get(url, path, **filled) if method == "GET" else post(url, path, filled)
    assert answer.status_code == 403, answer.text
    assert access.checked[-1] == ("experiment", exp, level)
    record = ws.runs.get(run_id)  # nothing changed
    assert record.status == "FINISHED" and not record.deleted and record.metrics == {}
    assert ws.experiments.get(int(exp)).name == "guarded"


def test_listings_show_only_what_is_readable(
    guarded: tuple[str, _Denied, str, str, Workspace],
) -> None:
    url, access, exp, _run_id, _ws = guarded
    assert post(url, "experiments/search", {}).json() == {"experiments": []}
    assert post(url, "runs/search", {"experiment_ids": [exp]}).json() == {"runs": []}
    answer = post(url, "experiments/create", {"name": "mine"})
    assert answer.is_success
    assert access.made == [("experiment", answer.json()["experiment_id"])]


def test_runs_the_server_created_stay_alive_for_loopmls_readers(
    mlflow_client: tuple[Any, Workspace, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    from sqlalchemy import select, update

    from loopml.store import liveness
    from loopml.tracking.tables import runs

    monkeypatch.setattr(liveness, "HEARTBEAT_S", 0.05)
    mlflow, ws, _url = mlflow_client
    run = mlflow.start_run()
    run_id = run.info.run_id
    # A reader that reaps dead runs leaves it running: the server owns it.
    assert ws.runs.search("Default")["status"].tolist() == ["RUNNING"]
    ws.db.transact(
        lambda conn: conn.execute(update(runs).where(runs.c.id == run_id).values(heartbeat_at=0))
    )

    def beat() -> int:
        with ws.db.read() as conn:
            return int(
                conn.execute(select(runs.c.heartbeat_at).where(runs.c.id == run_id)).scalar()
            )

    deadline = time.monotonic() + 20
    while beat() == 0:
        assert time.monotonic() < deadline, "the server never refreshed the run's heartbeat"
        time.sleep(0.02)
    mlflow.end_run()
    assert ws.runs.get(run_id).status == "FINISHED"


def test_run_names_are_any_text(mlflow_client: tuple[Any, Workspace, str]) -> None:
    mlflow, ws, url = mlflow_client
    with mlflow.start_run(run_name="trial (1) #été!") as run:
        pass
    assert ws.runs.get(run.info.run_id).name == "trial (1) #été!"
    answer = post(url, "runs/update", {"run_id": run.info.run_id, "run_name": "x" * 251})
    assert error_code(answer) == "INVALID_PARAMETER_VALUE"


def test_metrics_logged_for_a_logged_model_reach_it(
    mlflow_client: tuple[Any, Workspace, str],
) -> None:
    mlflow, ws, url = mlflow_client
    mlflow.set_experiment("models")
    with mlflow.start_run() as run:
        model = mlflow.initialize_logged_model(name="clf")
        mlflow.log_metric("acc", 0.75, step=2, model_id=model.model_id)
    assert ws.runs.get(run.info.run_id).metrics == {"acc": 0.75}
    used = mlflow.MlflowClient().get_run(run.info.run_id).inputs.model_inputs
    assert [m.model_id for m in used] == [model.model_id]  # the client links the two
    got = mlflow.MlflowClient().get_logged_model(model.model_id)
    assert [(m.key, m.value, m.step, m.run_id) for m in got.metrics] == [
        ("acc", 0.75, 2, run.info.run_id)
    ]
    answer = post(
        url,
        "runs/log-metric",
        {"run_id": run.info.run_id, "key": "acc", "value": 1.0, "timestamp": 1, "model_id": "m-x"},
    )
    assert error_code(answer) == "RESOURCE_DOES_NOT_EXIST"
    assert ws.runs.get(run.info.run_id).metrics == {"acc": 0.75}  # nothing of it stored


def test_search_paging_and_get_forms(mlflow_client: tuple[Any, Workspace, str]) -> None:
    mlflow, _ws, url = mlflow_client
    client = mlflow.MlflowClient()
    ids = [client.create_experiment(f"page-{i}") for i in range(5)]
    first = post(url, "experiments/search", {"max_results": 2, "order_by": ["name ASC"]}).json()
    assert [e["name"] for e in first["experiments"]] == ["Default", "page-0"]
    second = post(
        url,
        "experiments/search",
        {"max_results": 2, "order_by": ["name ASC"], "page_token": first["next_page_token"]},
    ).json()
    assert [e["name"] for e in second["experiments"]] == ["page-1", "page-2"]
    by_get = httpx.get(
        f"{url}{API}/experiments/search", params={"max_results": 10, "order_by": "name DESC"}
    ).json()
    assert [e["name"] for e in by_get["experiments"]][:2] == ["page-4", "page-3"]
    for exp_id in ids[:2]:
        client.create_run(exp_id)
    runs = httpx.get(
        f"{url}{API}/runs/search", params=[("experiment_ids", ids[0]), ("experiment_ids", ids[1])]
    ).json()["runs"]
    assert {r["info"]["experiment_id"] for r in runs} == set(ids[:2])
    bad_token = post(url, "runs/search", {"experiment_ids": ids[:1], "page_token": "nonsense"})
    assert error_code(bad_token) == "INVALID_PARAMETER_VALUE"
    unknown = post(url, "runs/search", {"experiment_ids": ["424242"]})
    assert error_code(unknown) == "RESOURCE_DOES_NOT_EXIST"
