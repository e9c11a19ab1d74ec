"""loopml's own API (/api/loopml) driven by loopml's own client through a real server: the
Python API end to end, and the same records read back from the server's store directly."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from loopml.client import RemoteRuns, forget_sessions
from loopml.client.errors import NotServed
from loopml.exceptions import (
    ArtifactNotFound,
    InvalidInput,
    ParamConflict,
    PromotionBlocked,
    RunNotFound,
)
from loopml.registry import PythonModel
from loopml.registry.gates import GatePolicy
from loopml.workspace import Workspace


class Doubler(PythonModel):
    def __init__(self, factor: float) -> None:
        self.factor = factor

    def predict(self, model_input: pd.DataFrame) -> np.ndarray:
        return (model_input["x"] * self.factor).to_numpy()


@pytest.fixture
def remote(
    server: Callable[..., str],
    sqlite_ws: Workspace,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[Workspace, Workspace, str]]:
    """→ (a remote workspace through a real server, the server's local workspace, URL)."""
    monkeypatch.setenv("LOOPML_SPOOL_DIR", str(tmp_path / "spool"))
    url = server(sqlite_ws)
    ws = Workspace.open(url)
    yield ws, sqlite_ws, url
    ws.close()
    forget_sessions()


def test_a_run_logged_through_the_server_reads_back_the_same_from_its_store(
    remote: tuple[Workspace, Workspace, str], tmp_path: Path
) -> None:
    ws, local, _url = remote
    assert isinstance(ws.runs, RemoteRuns)
    notes = tmp_path / "notes.txt"
    notes.write_text("hello over http")
    folder = tmp_path / "plots"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.csv").write_text("x\n1\n")
    (folder / "sub" / "b.txt").write_text("b")
    with ws.runs.start(experiment="churn", tags={"team": "growth"}) as run:
        run.log_params({"lr": 0.01, "model": "rf"})
        run.log_param("lr", 0.01)  # the same value again is fine
        with pytest.raises(ParamConflict):
            run.log_param("lr", 0.5)
        for step in range(50):
            run.log_metric("loss", 1.0 / (step + 1), step=step)
        run.log_metrics({"acc": 0.9, "inf": float("inf"), "nan": float("nan")})
        run.set_tag("stage", "dev")
        assert run.log_artifact(notes) == ["notes.txt"]
        assert sorted(run.log_artifact(folder)) == ["plots/a.csv", "plots/sub/b.txt"]
        run.log_dict({"a": 1}, "config.json")
        ws.runs.seed_everything(7)
        assert run.experiment_id == local.experiments.get("churn").id

    remote_record = ws.runs.get(run.id)
    local_record = local.runs.get(run.id)
    assert remote_record == local_record
    assert local_record.status == "FINISHED"
    assert local_record.params == {"lr": "0.01", "model": "rf"}
    assert local_record.metrics["loss"] == pytest.approx(1 / 50)
    assert local_record.metrics["inf"] == float("inf")
    assert np.isnan(local_record.metrics["nan"])
    assert local_record.tags["team"] == "growth" and local_record.tags["stage"] == "dev"
    assert local_record.seed == 7
    history = ws.runs.metric_history(run.id, "loss")
    pd.testing.assert_frame_equal(history, local.runs.metric_history(run.id, "loss"))
    assert list(history["step"]) == list(range(50))

    assert ws.runs.list_artifacts(run.id) == local.runs.list_artifacts(run.id)
    out = ws.runs.download_artifacts(run.id, "plots", tmp_path / "out")
    assert (out / "sub" / "b.txt").read_text() == "b"
    assert (ws.runs.download_artifacts(run.id, "notes.txt", tmp_path / "o2")).read_text() == (
        "hello over http"
    )
    with pytest.raises(ArtifactNotFound):
        ws.runs.download_artifacts(run.id, "nothing-here")
    with pytest.raises(RunNotFound):
        ws.runs.get("0" * 32)


def test_search_through_the_server_matches_the_local_search(
    remote: tuple[Workspace, Workspace, str],
) -> None:
    ws, local, _url = remote
    for i in range(5):
        with ws.runs.start(experiment="grid", log_environment=False) as run:
            run.log_param("depth", i)
            run.log_metric("acc", i / 10)
    flt, order = "metrics.acc >= 0.2", ["metrics.acc DESC"]
    got = ws.runs.search("grid", filter=flt, order_by=order)
    want = local.runs.search("grid", filter=flt, order_by=order)
    assert list(got["run_id"]) == list(want["run_id"]) and len(got) == 3
    assert list(got.columns) == list(want.columns)
    pd.testing.assert_frame_equal(got, want)
    assert ws.runs.records("grid", filter=flt, order_by=order) == local.runs.records(
        "grid", filter=flt, order_by=order
    )
    first = ws.runs.page("grid", page_size=2)
    second = ws.runs.page("grid", page_size=2, page_token=first.next_page_token)
    assert len(first.records) == 2 and len(second.records) == 2
    assert {r["run_id"] for r in first.records}.isdisjoint(r["run_id"] for r in second.records)
    with pytest.raises(InvalidInput):
        ws.runs.search(filter="metrics.acc >>> 1")
    ws.runs.delete(got["run_id"][0])
    assert local.runs.get(got["run_id"][0]).deleted
    ws.runs.restore(got["run_id"][0])
    assert not local.runs.get(got["run_id"][0]).deleted
    names = [e.name for e in ws.experiments.list()]
    assert names == [e.name for e in local.experiments.list()]
    assert ws.experiments.rename("grid", "grid2").name == "grid2"
    assert local.experiments.get("grid2").id == ws.experiments.get("grid2").id


def test_register_load_promote_and_rollback_through_the_server(
    remote: tuple[Workspace, Workspace, str], tmp_path: Path
) -> None:
    ws, local, _url = remote
    example = pd.DataFrame({"x": [1.0, 2.0, 3.0]})
    with ws.runs.start(experiment="models") as run:
        run.log_metric("accuracy", 0.8)
        first = ws.models.register("double", Doubler(2.0), input_example=example)
    second = ws.models.register("double", Doubler(3.0), input_example=example, run_id=run.id)
    assert (first.version, second.version) == (1, 2)
    assert first.run_id == run.id
    assert local.models.get("models:/double/2") == ws.models.get("models:/double/2")
    model = ws.models.load("models:/double/2")
    assert list(model.predict(example)) == [3.0, 6.0, 9.0]

    assert ws.models.promote("double", 1, to="staging") is None
    verdict = ws.models.promote("double", 1)
    assert verdict is not None and verdict.passed
    assert local.models.get("models:/double@production").version == 1
    ws.models.promote("double", 2)
    assert [m.stage for m in ws.models.versions("double")] == ["Archived", "Production"]
    assert ws.models.rollback("double", reason="bad canary") == 1
    assert local.models.get("models:/double@production").version == 1
    ws.models.set_alias("double", "champion", 2)
    assert ws.models.load("models:/double@champion").factor == 3.0
    assert [e.kind for e in ws.models.history("double")] == [
        e.kind for e in local.models.history("double")
    ]
    assert ws.models.lineage("models:/double/1")["run"]["id"] == run.id
    assert ws.models.list()[0]["name"] == "double"

    strict = GatePolicy(metric="accuracy", min_score=0.99, beat_champion=False)
    with pytest.raises(PromotionBlocked) as blocked:
        ws.models.promote("double", 2, policy=strict)
    assert blocked.value.verdict is not None and not blocked.value.verdict.passed
    assert local.models.get("models:/double@production").version == 1


def test_areas_the_server_does_not_serve_say_so(remote: tuple[Workspace, Workspace, str]) -> None:
    ws, _local, _url = remote
    with pytest.raises(NotServed, match="not available over HTTP yet"):
        ws.db  # noqa: B018
    with pytest.raises(NotServed, match="ws.pipelines"):
        ws.pipelines  # noqa: B018
    with pytest.raises(NotServed, match="reference_data"):
        ws.models.register("m", Doubler(1.0), reference_data=pd.DataFrame({"x": [1.0]}))


def test_bad_input_to_the_api_gets_a_clear_error(remote: tuple[Workspace, Workspace, str]) -> None:
    ws, _local, url = remote
    with ws.runs.start(experiment="bad", log_environment=False) as run:
        api = f"{url}/api/loopml"
        answer = httpx.post(f"{api}/runs/{run.id}/batches", content=b"{not json")
        assert answer.status_code == 400 and answer.json()["error_code"] == "MALFORMED_REQUEST"
        answer = httpx.post(
            f"{api}/runs/{run.id}/batches",
            json={"batch_id": "b" * 32, "points": [["ok", 1.0, 0, 1_700_000_000_000], ["x"]]},
        )
        assert answer.json()["stored"] == 1 and answer.json()["refused"][0]["index"] == 1
        answer = httpx.post(f"{api}/runs/{'f' * 32}/params", json={"params": {"a": 1}})
        assert answer.status_code == 404 and answer.json()["error_class"] == "RunNotFound"
        digest = "0" * 64
        answer = httpx.put(f"{api}/blobs/{digest}", content=b"not those bytes")
        assert answer.status_code == 400 and "do not hash" in answer.json()["message"]
        assert httpx.head(f"{api}/blobs/{digest}").status_code == 404
        answer = httpx.post(
            f"{api}/runs/{run.id}/artifacts", json={"artifacts": [["../up", digest, 1]]}
        )
        assert answer.status_code == 400


def test_resume_nested_runs_and_inputs_through_the_server(
    remote: tuple[Workspace, Workspace, str], tmp_path: Path
) -> None:
    ws, local, _url = remote
    data = tmp_path / "train.csv"
    data.write_text("x,y\n1,2\n")
    with (
        ws.runs.start(experiment="nest", log_environment=False) as parent,
        ws.runs.start(nested=True, log_environment=False) as child,
    ):
        ref = child.log_input(data, name="train")
        child.log_metric("loss", 0.5)
        child.log_metric("loss", 0.4)
    assert local.runs.get(child.id).parent_run_id == parent.id
    assert local.runs.get(child.id).inputs[0]["digest"] == ref.digest
    with ws.runs.start(run_id=child.id) as resumed:
        resumed.log_metric("loss", 0.3)  # continues the step numbering
    history = local.runs.metric_history(child.id, "loss")
    assert list(history["step"]) == [0, 1, 2]
    assert local.runs.get(child.id).status == "FINISHED"


@pytest.mark.postgres
@pytest.mark.s3
def test_a_server_over_postgres_and_s3_stores_a_batch_sent_many_times_once(
    server: Callable[..., str],
    db_url_factory: Callable[[str], str],
    blob_url_factory: Callable[[str], tuple[str, dict[str, object]]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setenv("LOOPML_SPOOL_DIR", str(tmp_path / "spool"))
    blob_url, options = blob_url_factory("s3")
    store = Workspace.open(store_url=db_url_factory("postgres"), artifacts_url=blob_url, **options)
    url = server(store)
    ws = Workspace.open(url)
    try:
        with ws.runs.start(experiment="pg", log_environment=False) as run:
            for step in range(100):
                run.log_metric("loss", step / 100, step=step)
            run.log_text("bytes in S3", "notes/a.txt")
        batch = {
            "batch_id": "c" * 32,
            "points": [["replayed", float(i), i, 1_700_000_000_000] for i in range(50)],
        }

        def send(_: int) -> dict[str, object]:
            answer = httpx.post(f"{url}/api/loopml/runs/{run.id}/batches", json=batch, timeout=30)
            assert answer.status_code == 200, answer.text
            result: dict[str, object] = answer.json()
            return result

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(send, range(8)))
        assert sum(1 for a in answers if not a["duplicate"]) == 1
        assert len(store.runs.metric_history(run.id, "replayed")) == 50
        assert len(store.runs.metric_history(run.id, "loss")) == 100
        got = ws.runs.download_artifacts(run.id, "notes/a.txt", tmp_path / "out")
        assert got.read_text() == "bytes in S3"
    finally:
        ws.close()
        store.close()


def test_a_run_marked_killed_while_its_process_was_away_is_ended_by_that_process(
    remote: tuple[Workspace, Workspace, str],
) -> None:
    from sqlalchemy import update

    from loopml.tracking.tables import runs

    ws, local, url = remote
    run = ws.runs.start(experiment="away", log_environment=False)
    # What reap_dead_runs does when the heartbeat of a run on another host goes stale.
    local.db.transact(
        lambda conn: conn.execute(update(runs).where(runs.c.id == run.id).values(status="KILLED"))
    )
    answer = httpx.post(
        f"{url}/api/loopml/runs/{run.id}/end", json={"status": "FINISHED", "owner": "someone:1:2"}
    )
    assert answer.json() == {"ended": False}  # not its process: stays KILLED
    run.end()
    assert local.runs.get(run.id).status == "FINISHED"
