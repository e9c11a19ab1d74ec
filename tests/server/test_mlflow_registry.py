"""MLflow's model registry REST API and MLflow 3's logged models over loopml's registry, on a
real server: requests by hand (httpx) for every endpoint and error, then the real MLflow
client on the registry endpoints (the whole training script is test_mlflow_client.py)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from sqlalchemy import insert

from loopml.exceptions import MissingDependency, ModelFilesMissing
from loopml.registry.flavors.mlflow import MlflowFlavor, read_mlmodel, signature_of
from loopml.registry.lifecycle import create_model
from loopml.server.app import create_app
from loopml.server.context import OpenAccess, Principal
from loopml.server.errors import ApiError
from loopml.server.mlflow_api.registry_search import matches, page, parse_filter
from loopml.server.mlflow_api.tables import proxied_artifacts
from loopml.store.clock import now_ms
from loopml.workspace import Workspace
from server.conftest import start_server, wait_healthy

mlflow_sklearn = pytest.importorskip("mlflow.sklearn")

API = "/api/2.0/mlflow"
X = pd.DataFrame({"a": [0.0, 1, 2, 3, 4, 5, 6, 7], "b": [1.0, 0, 1, 0, 1, 0, 1, 0]})
Y = [0, 0, 0, 0, 1, 1, 1, 1]


@contextmanager
def serving(ws: Workspace, **kwargs: Any) -> Iterator[httpx.Client]:
    """An HTTP client of a real server over ``ws`` (``create_app(ws, **kwargs)``)."""
    url, stop = start_server(create_app(ws, **kwargs))
    try:
        wait_healthy(url)
        with httpx.Client(base_url=url, timeout=60) as c:
            yield c
    finally:
        stop()


@pytest.fixture
def client(sqlite_ws: Workspace) -> Iterator[httpx.Client]:
    with serving(sqlite_ws) as c:
        yield c


@pytest.fixture(scope="module")
def mlflow_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow model folder of a fitted logistic regression (cloudpickle: no skops here)."""
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression().fit(X, Y)
    folder = tmp_path_factory.mktemp("mlflow") / "model"
    mlflow_sklearn.save_model(
        model,
        str(folder),
        signature=infer_signature(X, model.predict(X)),
        serialization_format="cloudpickle",
    )
    return folder


def ok(answer: Any) -> dict[str, Any]:
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def error(answer: Any, status: int, code: str) -> str:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["error_code"] == code, body
    return str(body["message"])


def upload(ws: Workspace, folder: Path, prefix: str) -> None:
    """Put the folder's files where the artifacts API puts uploads under ``prefix``."""
    rows = [
        {
            "path": f"{prefix}/{p.relative_to(folder).as_posix()}",
            "digest": ws.blobs.put_file(p),
            "size": p.stat().st_size,
            "created_at": now_ms(),
        }
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    ]
    ws.db.transact(lambda conn: conn.execute(insert(proxied_artifacts), rows))


def logged_model(client: httpx.Client, ws: Workspace, folder: Path, run_id: str) -> str:
    """A finalized logged model of ``folder`` in run ``run_id``'s experiment → its id."""
    exp = ws.runs.get(run_id).experiment_id
    model = ok(
        client.post(
            f"{API}/logged-models",
            json={
                "experiment_id": str(exp),
                "name": "model",
                "source_run_id": run_id,
                "params": [{"key": "C", "value": "1.0"}],
                "tags": [{"key": "flavor", "value": "sklearn"}],
            },
        )
    )["model"]
    info = model["info"]
    assert info["status"] == "LOGGED_MODEL_PENDING"
    assert info["artifact_uri"] == f"mlflow-artifacts:/{exp}/models/{info['model_id']}/artifacts"
    upload(ws, folder, info["artifact_uri"].removeprefix("mlflow-artifacts:/"))
    done = ok(
        client.patch(
            f"{API}/logged-models/{info['model_id']}", json={"status": "LOGGED_MODEL_READY"}
        )
    )
    assert done["model"]["info"]["status"] == "LOGGED_MODEL_READY"
    return str(info["model_id"])


def a_run(ws: Workspace) -> str:
    with ws.runs.start(experiment="train") as run:
        run.log_metric("accuracy", 0.9)
        return run.id


# -- filters ---------------------------------------------------------------------------------


def test_filters_parse_mlflow_syntax_and_refuse_what_they_cant_read() -> None:
    clauses = parse_filter("name LIKE '%churn%' AND tags.`team name` = 'growth'", ["name"])
    assert matches({"name": "my-churn-1", "tags": {"team name": "growth"}}, clauses)
    assert not matches({"name": "my-churn-1", "tags": {"team name": "ops"}}, clauses)
    assert not matches({"name": "Churn", "tags": {"team name": "growth"}}, clauses)
    assert matches({"name": "Churn"}, parse_filter("name ILIKE 'chu_n'", ["name"]))
    versions = parse_filter(
        "run_id NOT IN ('a', 'b') and version_number >= 2", ["run_id", "version_number"]
    )
    assert matches({"run_id": "c", "version_number": 2}, versions)
    assert not matches({"run_id": "a", "version_number": 3}, versions)
    for bad in ["name", "name = ", "colour = 'x'", "name = 'a' OR name = 'b'", "name IN 'a'"]:
        with pytest.raises(ValueError):
            parse_filter(bad, ["name"])


def test_page_tokens_walk_a_listing_and_a_forged_one_is_refused() -> None:
    records = [{"n": i} for i in range(5)]
    first, token = page(records, 2, None)
    second, token2 = page(records, 2, token)
    third, token3 = page(records, 2, token2)
    assert [r["n"] for r in first + second + third] == [0, 1, 2, 3, 4]
    assert token3 is None
    with pytest.raises(ValueError):
        page(records, 2, "not-a-token")


# -- registered models -----------------------------------------------------------------------


def test_registered_models_create_get_update_tag_rename_search_delete(
    client: httpx.Client, sqlite_ws: Workspace
) -> None:
    created = ok(
        client.post(
            f"{API}/registered-models/create",
            json={
                "name": "churn",
                "description": "who leaves",
                "tags": [{"key": "team", "value": "growth"}],
            },
        )
    )["registered_model"]
    assert created["name"] == "churn"
    assert created["description"] == "who leaves"
    assert created["tags"] == [{"key": "team", "value": "growth"}]
    message = error(
        client.post(f"{API}/registered-models/create", json={"name": "churn"}),
        400,
        "RESOURCE_ALREADY_EXISTS",
    )
    assert "churn" in message
    for name in ["fraud", "churn-eu", "ranker"]:
        ok(client.post(f"{API}/registered-models/create", json={"name": name}))
    ok(client.patch(f"{API}/registered-models/update", json={"name": "churn", "description": "v2"}))
    ok(
        client.post(
            f"{API}/registered-models/set-tag", json={"name": "churn", "key": "tier", "value": "1"}
        )
    )
    ok(
        client.request(
            "DELETE", f"{API}/registered-models/delete-tag", json={"name": "churn", "key": "team"}
        )
    )
    error(
        client.request(
            "DELETE", f"{API}/registered-models/delete-tag", json={"name": "churn", "key": "team"}
        ),
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
    got = ok(client.get(f"{API}/registered-models/get", params={"name": "churn"}))[
        "registered_model"
    ]
    assert got["description"] == "v2"
    assert got["tags"] == [{"key": "tier", "value": "1"}]

    found = ok(
        client.get(
            f"{API}/registered-models/search",
            params={"filter": "name LIKE 'churn%'", "order_by": "name DESC"},
        )
    )["registered_models"]
    assert [m["name"] for m in found] == ["churn-eu", "churn"]
    by_tag = ok(client.get(f"{API}/registered-models/search", params={"filter": "tags.tier = '1'"}))
    assert [m["name"] for m in by_tag["registered_models"]] == ["churn"]
    names = []
    token = None
    while True:
        params = {"max_results": "3", **({"page_token": token} if token else {})}
        answer = ok(client.get(f"{API}/registered-models/search", params=params))
        names += [m["name"] for m in answer["registered_models"]]
        token = answer.get("next_page_token")
        if not token:
            break
    assert names == ["churn", "churn-eu", "fraud", "ranker"]
    error(
        client.get(f"{API}/registered-models/search", params={"filter": "colour = 'red'"}),
        400,
        "INVALID_PARAMETER_VALUE",
    )

    renamed = ok(
        client.post(
            f"{API}/registered-models/rename", json={"name": "churn", "new_name": "attrition"}
        )
    )
    assert renamed["registered_model"]["name"] == "attrition"
    assert [m["name"] for m in sqlite_ws.models.list()] == [
        "attrition",
        "churn-eu",
        "fraud",
        "ranker",
    ]
    error(
        client.get(f"{API}/registered-models/get", params={"name": "churn"}),
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
    ok(client.request("DELETE", f"{API}/registered-models/delete", json={"name": "attrition"}))
    error(
        client.get(f"{API}/registered-models/get", params={"name": "attrition"}),
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
    assert "attrition" not in [m["name"] for m in sqlite_ws.models.list()]


def test_bad_requests_get_mlflows_error_codes(client: httpx.Client) -> None:
    error(client.post(f"{API}/registered-models/create", json={}), 400, "INVALID_PARAMETER_VALUE")
    error(
        client.post(
            f"{API}/registered-models/create",
            content=b"{not json",
            headers={"content-type": "application/json"},
        ),
        400,
        "MALFORMED_REQUEST",
    )
    error(
        client.get(f"{API}/model-versions/get", params={"name": "nope", "version": "1"}),
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
    ok(client.post(f"{API}/registered-models/create", json={"name": "m"}))
    error(
        client.get(f"{API}/model-versions/get", params={"name": "m", "version": "one"}),
        400,
        "INVALID_PARAMETER_VALUE",
    )
    error(
        client.post(f"{API}/model-versions/create", json={"name": "m", "source": "s3://bucket/x"}),
        400,
        "INVALID_PARAMETER_VALUE",
    )
    error(
        client.post(
            f"{API}/model-versions/create", json={"name": "m", "source": "models:/m-" + "0" * 32}
        ),
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )


# -- model versions --------------------------------------------------------------------------


def test_a_version_created_from_a_logged_model_is_a_loopml_version(
    client: httpx.Client, sqlite_ws: Workspace, mlflow_model: Path
) -> None:
    run_id = a_run(sqlite_ws)
    model_id = logged_model(client, sqlite_ws, mlflow_model, run_id)
    ok(client.post(f"{API}/registered-models/create", json={"name": "churn"}))
    created = ok(
        client.post(
            f"{API}/model-versions/create",
            json={
                "name": "churn",
                "source": f"models:/{model_id}",
                "model_id": model_id,
                "tags": [{"key": "origin", "value": "mlflow"}],
                "description": "first",
            },
        )
    )["model_version"]
    assert created["version"] == "1"
    assert created["status"] == "READY"
    assert created["run_id"] == run_id  # the logged model's run
    assert created["model_id"] == model_id
    assert created["source"] == f"models:/{model_id}"
    assert created["tags"] == [{"key": "origin", "value": "mlflow"}]

    # loopml sees the same version: files, flavor, lineage, signature, and it loads
    version = sqlite_ws.models.get("models:/churn/1")
    assert version.flavor == "mlflow"
    assert version.run_id == run_id
    assert version.description == "first"
    assert version.signature is not None and version.signature.columns == ["a", "b"]
    assert sqlite_ws.models.lineage("models:/churn/1")["run"]["id"] == run_id
    model = sqlite_ws.models.load("models:/churn/1")
    assert list(model.predict(X)) == Y

    # aliases and stages: set on one side, seen on the other
    ok(
        client.post(
            f"{API}/registered-models/alias",
            json={"name": "churn", "alias": "champion", "version": "1"},
        )
    )
    assert sqlite_ws.models.get("models:/churn@champion").version == 1
    by_alias = ok(
        client.get(f"{API}/registered-models/alias", params={"name": "churn", "alias": "champion"})
    )
    assert by_alias["model_version"]["aliases"] == ["champion"]
    sqlite_ws.models.set_alias("churn", "shadow", 1)
    got = ok(client.get(f"{API}/model-versions/get", params={"name": "churn", "version": "1"}))
    assert got["model_version"]["aliases"] == ["champion", "shadow"]
    ok(
        client.request(
            "DELETE", f"{API}/registered-models/alias", json={"name": "churn", "alias": "shadow"}
        )
    )
    assert sqlite_ws.models.get("models:/churn/1").aliases == ("champion",)
    error(
        client.get(f"{API}/registered-models/alias", params={"name": "churn", "alias": "shadow"}),
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )

    uri = ok(
        client.get(
            f"{API}/model-versions/get-download-uri", params={"name": "churn", "version": "1"}
        )
    )
    exp = sqlite_ws.runs.get(run_id).experiment_id
    assert uri["artifact_uri"] == f"mlflow-artifacts:/{exp}/models/{model_id}/artifacts"

    # a second version from the run's own artifacts (runs:/), then stages
    with sqlite_ws.runs.start(run_id=run_id) as run:
        run.log_artifact(mlflow_model, "model")
    second = ok(
        client.post(
            f"{API}/model-versions/create",
            json={"name": "churn", "source": f"runs:/{run_id}/model", "run_id": run_id},
        )
    )["model_version"]
    assert second["version"] == "2"
    assert second["source"] == f"runs:/{run_id}/model"
    assert sqlite_ws.models.get("models:/churn/2").flavor == "mlflow"
    ok(
        client.post(
            f"{API}/model-versions/transition-stage",
            json={"name": "churn", "version": "1", "stage": "Staging"},
        )
    )
    moved = ok(
        client.post(
            f"{API}/model-versions/transition-stage",
            json={
                "name": "churn",
                "version": "2",
                "stage": "staging",
                "archive_existing_versions": True,
            },
        )
    )["model_version"]
    assert moved["current_stage"] == "Staging"
    assert sqlite_ws.models.get("models:/churn/1").stage == "Archived"
    promoted = ok(
        client.post(
            f"{API}/model-versions/transition-stage",
            json={"name": "churn", "version": "2", "stage": "Production"},
        )
    )["model_version"]
    assert promoted["current_stage"] == "Production"
    assert sqlite_ws.models.verdict("models:/churn/2") is not None  # it went through the gate
    latest = ok(
        client.post(
            f"{API}/registered-models/get-latest-versions",
            json={"name": "churn", "stages": ["Production"]},
        )
    )
    assert [m["version"] for m in latest["model_versions"]] == ["2"]
    model_json = ok(client.get(f"{API}/registered-models/get", params={"name": "churn"}))[
        "registered_model"
    ]
    assert {m["current_stage"]: m["version"] for m in model_json["latest_versions"]} == {
        "Production": "2",
        "Archived": "1",
    }
    assert model_json["aliases"] == [{"alias": "champion", "version": "1"}]

    # version tags, descriptions, search
    ok(
        client.post(
            f"{API}/model-versions/set-tag",
            json={"name": "churn", "version": "2", "key": "k", "value": "v"},
        )
    )
    ok(
        client.patch(
            f"{API}/model-versions/update",
            json={"name": "churn", "version": "2", "description": "better"},
        )
    )
    assert sqlite_ws.models.get("models:/churn/2").description == "better"
    found = ok(
        client.get(
            f"{API}/model-versions/search", params={"filter": "name = 'churn' AND tags.k = 'v'"}
        )
    )
    assert [m["version"] for m in found["model_versions"]] == ["2"]
    by_run = ok(
        client.get(
            f"{API}/model-versions/search",
            params={"filter": f"run_id = '{run_id}'", "order_by": ["version_number ASC"]},
        )
    )
    assert [m["version"] for m in by_run["model_versions"]] == ["1", "2"]
    ok(
        client.request(
            "DELETE",
            f"{API}/model-versions/delete-tag",
            json={"name": "churn", "version": "2", "key": "k"},
        )
    )

    # deleting a version takes its aliases; the history keeps it
    ok(
        client.request(
            "DELETE", f"{API}/model-versions/delete", json={"name": "churn", "version": "1"}
        )
    )
    assert [mv.version for mv in sqlite_ws.models.versions("churn")] == [2]
    error(
        client.get(f"{API}/registered-models/alias", params={"name": "churn", "alias": "champion"}),
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
    assert any(e.kind == "deleted" and e.version == 1 for e in sqlite_ws.models.history("churn"))


def test_a_source_without_an_mlmodel_file_is_refused_and_nothing_is_registered(
    client: httpx.Client, sqlite_ws: Workspace, tmp_path: Path
) -> None:
    run_id = a_run(sqlite_ws)
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "readme.txt").write_text("not a model")
    with sqlite_ws.runs.start(run_id=run_id) as run:
        run.log_artifact(folder, "notes")
    ok(client.post(f"{API}/registered-models/create", json={"name": "m"}))
    message = error(
        client.post(
            f"{API}/model-versions/create", json={"name": "m", "source": f"runs:/{run_id}/notes"}
        ),
        400,
        "INVALID_PARAMETER_VALUE",
    )
    assert "MLmodel" in message
    error(
        client.post(
            f"{API}/model-versions/create", json={"name": "m", "source": f"runs:/{run_id}/empty"}
        ),
        400,
        "INVALID_PARAMETER_VALUE",
    )
    assert sqlite_ws.models.versions("m") == []


def test_production_through_mlflow_is_blocked_by_loopmls_gate(
    client: httpx.Client, sqlite_ws: Workspace, mlflow_model: Path, tmp_path: Path
) -> None:
    holdout = tmp_path / "holdout.csv"
    pd.DataFrame({"a": X["a"], "b": X["b"], "y": [1, 1, 1, 1, 0, 0, 0, 0]}).to_csv(
        holdout, index=False
    )
    sqlite_ws.settings = sqlite_ws.settings.with_overrides(
        gates={"churn": {"holdout": str(holdout), "label": "y", "min_score": 0.9}}
    )
    run_id = a_run(sqlite_ws)
    model_id = logged_model(client, sqlite_ws, mlflow_model, run_id)
    ok(client.post(f"{API}/registered-models/create", json={"name": "churn"}))
    ok(
        client.post(
            f"{API}/model-versions/create", json={"name": "churn", "source": f"models:/{model_id}"}
        )
    )
    message = error(
        client.post(
            f"{API}/model-versions/transition-stage",
            json={"name": "churn", "version": "1", "stage": "Production"},
        ),
        400,
        "INVALID_STATE",
    )
    assert "blocked by the gate" in message
    assert sqlite_ws.models.get("models:/churn/1").stage == "None"


# -- logged models ---------------------------------------------------------------------------


def test_logged_models_search_tags_params_and_delete(
    client: httpx.Client, sqlite_ws: Workspace, mlflow_model: Path
) -> None:
    run_id = a_run(sqlite_ws)
    first = logged_model(client, sqlite_ws, mlflow_model, run_id)
    second = logged_model(client, sqlite_ws, mlflow_model, run_id)
    exp = ok(client.get(f"{API}/logged-models/{first}"))["model"]["info"]["experiment_id"]
    ok(
        client.patch(
            f"{API}/logged-models/{second}/tags", json={"tags": [{"key": "best", "value": "yes"}]}
        )
    )
    ok(
        client.post(
            f"{API}/logged-models/{second}/params",
            json={"params": [{"key": "depth", "value": "3"}]},
        )
    )
    got = ok(client.get(f"{API}/logged-models/{second}"))["model"]
    assert {t["key"]: t["value"] for t in got["info"]["tags"]} == {
        "flavor": "sklearn",
        "best": "yes",
    }
    assert {p["key"]: p["value"] for p in got["data"]["params"]} == {"C": "1.0", "depth": "3"}
    found = ok(
        client.post(
            f"{API}/logged-models/search",
            json={"experiment_ids": [exp], "filter": "tags.best = 'yes' AND params.depth = '3'"},
        )
    )
    assert [m["info"]["model_id"] for m in found["models"]] == [second]
    both = ok(
        client.post(
            f"{API}/logged-models/search",
            json={
                "experiment_ids": [exp],
                "filter": "name = 'model'",
                "order_by": [{"field_name": "creation_timestamp", "ascending": True}],
            },
        )
    )
    assert {m["info"]["model_id"] for m in both["models"]} == {first, second}
    files = ok(client.get(f"{API}/logged-models/{first}/artifacts/directories"))
    assert {f["path"] for f in files["files"]} >= {"MLmodel", "model.pkl"}
    ok(client.request("DELETE", f"{API}/logged-models/{second}/tags/best"))
    error(
        client.request("DELETE", f"{API}/logged-models/{second}/tags/best"),
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
    ok(client.request("DELETE", f"{API}/logged-models/{first}"))
    error(client.get(f"{API}/logged-models/{first}"), 404, "RESOURCE_DOES_NOT_EXIST")
    error(
        client.post(f"{API}/logged-models", json={"experiment_id": "999", "name": "m"}),
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
    error(
        client.patch(f"{API}/logged-models/{second}", json={"status": "DONE"}),
        400,
        "INVALID_PARAMETER_VALUE",
    )


# -- access ----------------------------------------------------------------------------------


class OnlyModel(OpenAccess):
    """May read model ``allowed`` and nothing else; records what was asked."""

    def __init__(self, allowed: str) -> None:
        self.allowed = allowed
        self.asked: list[tuple[str, str, str]] = []

    def check(self, conn: Any, kind: str, key: str, level: str) -> None:
        self.asked.append((kind, key, level))
        if kind == "model" and (key != self.allowed or level != "read"):
            raise ApiError("RESOURCE_DOES_NOT_EXIST", f"No registered model {key!r}")

    def readable(self, conn: Any, kind: str) -> set[str] | None:
        return {self.allowed} if kind == "model" else None


def test_every_route_asks_the_access_seam(sqlite_ws: Workspace) -> None:
    for name in ["mine", "theirs"]:
        create_model(sqlite_ws.db, name)
    access = OnlyModel("mine")
    with serving(sqlite_ws, access=access) as c:
        listed = ok(c.get(f"{API}/registered-models/search"))["registered_models"]
        assert [m["name"] for m in listed] == ["mine"]
        ok(c.get(f"{API}/registered-models/get", params={"name": "mine"}))
        error(
            c.get(f"{API}/registered-models/get", params={"name": "theirs"}),
            404,
            "RESOURCE_DOES_NOT_EXIST",
        )
        error(
            c.post(
                f"{API}/registered-models/set-tag", json={"name": "mine", "key": "k", "value": "v"}
            ),
            404,
            "RESOURCE_DOES_NOT_EXIST",
        )
        error(
            c.request("DELETE", f"{API}/registered-models/delete", json={"name": "mine"}),
            404,
            "RESOURCE_DOES_NOT_EXIST",
        )
    assert ("model", "mine", "edit") in access.asked
    assert ("model", "mine", "manage") in access.asked
    assert [m["name"] for m in sqlite_ws.models.list()] == ["mine", "theirs"]


# -- the flavor ------------------------------------------------------------------------------


def test_the_mlflow_flavor_loads_the_sklearn_pickle_without_mlflow(
    mlflow_model: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    mlmodel = read_mlmodel(mlflow_model)
    assert signature_of(mlmodel) == {
        "inputs": [{"name": "a", "dtype": "float64"}, {"name": "b", "dtype": "float64"}],
        "outputs": [{"name": "prediction", "dtype": "int64"}],
    }
    monkeypatch.setitem(sys.modules, "mlflow.pyfunc", None)  # import mlflow.pyfunc fails
    model = MlflowFlavor().load(mlflow_model, {})
    assert list(model.predict(X)) == Y
    other = tmp_path / "other"
    other.mkdir()
    (other / "MLmodel").write_text("flavors:\n  pytorch: {}\n  python_function: {}\n")
    with pytest.raises(MissingDependency, match="pip install mlflow-skinny"):
        MlflowFlavor().load(other, {})
    with pytest.raises(ValueError, match="no MLmodel file"):
        MlflowFlavor().load(tmp_path, {})


class Alice(OpenAccess):
    """Everything allowed, and the caller is the user alice."""

    def principal(self, conn: Any) -> Principal:
        return Principal("alice", is_admin=True, user_id=1)


def test_the_history_names_the_authenticated_caller(
    sqlite_ws: Workspace, mlflow_model: Path
) -> None:
    with serving(sqlite_ws, access=Alice()) as c:
        ok(c.post(f"{API}/registered-models/create", json={"name": "churn"}))
        run_id = a_run(sqlite_ws)
        model_id = logged_model(c, sqlite_ws, mlflow_model, run_id)
        created = ok(
            c.post(f"{API}/model-versions/create", json={"name": "churn", "model_id": model_id})
        )["model_version"]
        assert created["user_id"] == "alice"
        assert created["source"] == f"models:/{model_id}"
        ok(
            c.post(
                f"{API}/registered-models/alias",
                json={"name": "churn", "alias": "champion", "version": "1"},
            )
        )
    history = sqlite_ws.models.history("churn")
    assert {e.kind for e in history} >= {"created", "registered", "alias"}
    assert {e.actor for e in history if e.kind in {"registered", "alias"}} == {"alice"}


# -- the real client on the registry endpoints -----------------------------------------------


@pytest.mark.filterwarnings("ignore:.*Model registry stages will be removed:FutureWarning")
def test_the_mlflow_client_registers_run_artifacts_and_manages_versions(
    mlflow_client: tuple[Any, Workspace, str], mlflow_model: Path
) -> None:
    mlflow, ws, _url = mlflow_client
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    mlflow.set_experiment("registry")
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(mlflow_model), artifact_path="model")  # MLflow 2's layout
    first = mlflow.register_model(f"runs:/{run.info.run_id}/model", "ranker")
    second = mlflow.register_model(f"runs:/{run.info.run_id}/model", "ranker")
    assert (first.version, second.version) == ("1", "2")
    assert first.run_id == run.info.run_id
    assert ws.models.get("models:/ranker/1").run_id == run.info.run_id
    assert list(mlflow.pyfunc.load_model("models:/ranker/2").predict(X)) == Y

    client = MlflowClient()
    client.update_registered_model("ranker", description="ranks")
    client.set_registered_model_tag("ranker", "team", "search")
    client.transition_model_version_stage("ranker", "1", "Staging")
    client.update_model_version("ranker", "2", description="second")
    client.set_model_version_tag("ranker", "2", "checked", "yes")
    client.set_registered_model_alias("ranker", "candidate", "2")

    model = client.get_registered_model("ranker")
    assert model.description == "ranks"
    assert model.tags == {"team": "search"}
    assert model.aliases == {"candidate": "2"}
    assert {v.current_stage: v.version for v in model.latest_versions} == {
        "Staging": "1",
        "None": "2",
    }
    assert [v.version for v in client.get_latest_versions("ranker", stages=["Staging"])] == ["1"]
    found = client.search_model_versions("name = 'ranker' and tags.checked = 'yes'")
    assert [(v.version, v.description, v.aliases) for v in found] == [
        ("2", "second", ["candidate"])
    ]
    assert [m.name for m in client.search_registered_models(filter_string="name LIKE 'rank%'")] == [
        "ranker"
    ]
    assert client.get_model_version_by_alias("ranker", "candidate").version == "2"
    assert ws.models.get("models:/ranker@candidate").version == 2
    assert ws.models.get("models:/ranker/1").stage == "Staging"

    with pytest.raises(MlflowException) as missing:
        client.get_model_version("ranker", "9")
    assert missing.value.error_code == "RESOURCE_DOES_NOT_EXIST"

    client.rename_registered_model("ranker", "ranker-v2")
    client.delete_model_version("ranker-v2", "1")
    assert [v.version for v in ws.models.versions("ranker-v2")] == [2]
    client.delete_registered_model("ranker-v2")
    assert ws.models.list() == []


def test_a_registration_whose_extra_rows_fail_leaves_no_version(
    sqlite_ws: Workspace, mlflow_model: Path
) -> None:
    from loopml.registry.trees import register_files, register_folder

    register_folder(sqlite_ws, "churn", mlflow_model)
    entries = [
        (p.relative_to(mlflow_model).as_posix(), sqlite_ws.blobs.put_file(p), p.stat().st_size)
        for p in sorted(mlflow_model.rglob("*"))
        if p.is_file()
    ]

    def broken(conn: Any, mid: int, version: int) -> None:
        raise RuntimeError("the disk is full")

    with pytest.raises(RuntimeError, match="disk is full"):
        register_files(sqlite_ws, "churn", entries, flavor="mlflow", with_version=broken)
    assert [v.version for v in sqlite_ws.models.versions("churn")] == [1]
    assert [e.kind for e in sqlite_ws.models.history("churn")] == ["registered"]
    with pytest.raises(ValueError, match="not a relative path"):
        register_files(sqlite_ws, "churn", [("../x", entries[0][1], 1)], flavor="mlflow")
    with pytest.raises(ModelFilesMissing, match="MLmodel"):
        register_files(sqlite_ws, "churn", [("MLmodel", "0" * 64, 1)], flavor="mlflow")
