"""The model server, run by a real uvicorn on 127.0.0.1 and called with httpx."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

import httpx
import pandas as pd
import pytest

from loopml.registry.signature import Signature
from loopml.serving import DeploymentNotFound, Variant, read_feedback, read_predictions
from loopml.serving.app import create_app
from loopml.serving.requests import (
    BadRequest,
    SchemaMismatch,
    check_rows,
    parse_invocations,
    parse_predict,
)
from loopml.serving.settings import ServingSettings
from loopml.workspace import Workspace

# Each test starts real uvicorn servers: the whole suite runs them, the fast lane does not.
pytestmark = pytest.mark.slow

ROWS = [{"x": 1.0, "n": 1}, {"x": 2.5, "n": 0}]


def test_predict_answers_with_request_id_model_and_variant(
    serving_ws: Workspace, serve: Callable[..., str]
) -> None:
    url = serve(serving_ws, "churn")
    with httpx.Client(base_url=url) as client:
        reply = client.post("/predict", json={"records": ROWS}, headers={"X-Request-Id": "r-1"})
        assert reply.status_code == 200, reply.text
        assert reply.json() == {
            "predictions": [3.0, 5.0],
            "request_id": "r-1",
            "model": "double/1",
            "variant": "primary",
        }
        assert reply.headers["x-request-id"] == "r-1"
        columns = client.post("/predict", json={"columns": ["n", "x"], "data": [[1, 1.0]]})
        assert columns.json()["predictions"] == [3.0]
        generated = columns.json()["request_id"]
        assert len(generated) == 32 and columns.headers["x-request-id"] == generated


def test_the_sticky_key_field_routes_but_is_not_an_input(
    serving_ws: Workspace, serve: Callable[..., str]
) -> None:
    # `loopml deploy create --key customer_id`: the model's signature has no customer_id, so
    # the field picks the variant and is left out of the model's inputs (it was a 422).
    serving_ws.deployments.create("keyed", "double/1", key="customer_id")
    url = serve(serving_ws, "keyed")
    rows = [{**row, "customer_id": f"c-{i}"} for i, row in enumerate(ROWS)]
    with httpx.Client(base_url=url) as client:
        reply = client.post("/predict", json={"records": rows})
        assert reply.status_code == 200, reply.text
        assert reply.json()["predictions"] == [3.0, 5.0]
        wrong = client.post("/predict", json={"records": [{"customer_id": "c-9", "x": 1.0}]})
        assert wrong.status_code == 422 and "customer_id" not in wrong.text


@pytest.mark.parametrize(
    "body",
    [
        {"dataframe_split": {"columns": ["x", "n"], "data": [[1.0, 1], [2.5, 0]]}},
        {"dataframe_split": {"index": [0, 1], "columns": ["x", "n"], "data": [[1, 1], [2.5, 0]]}},
        {"dataframe_records": ROWS},
        {"inputs": {"x": [1.0, 2.5], "n": [1, 0]}},
        {"instances": ROWS},
    ],
)
def test_invocations_take_mlflow_bodies_and_answer_like_mlflow(
    serving_ws: Workspace, serve: Callable[..., str], body: dict[str, Any]
) -> None:
    reply = httpx.post(f"{serve(serving_ws, 'churn')}/invocations", json=body)
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"predictions": [3.0, 5.0]}


def test_bad_inputs_get_400_422_and_413_naming_the_problem(
    serving_ws: Workspace, serve: Callable[..., str]
) -> None:
    serving_ws.settings = serving_ws.settings.with_overrides(
        serving=ServingSettings(max_body_bytes=300)
    )
    url = serve(serving_ws, "churn")
    with httpx.Client(base_url=url) as client:
        not_json = client.post("/predict", content=b'{"records": [', headers={"X-Request-Id": "b"})
        assert not_json.status_code == 400 and "not JSON" in not_json.json()["detail"]
        assert not_json.json()["request_id"] == "b"
        shape = client.post("/predict", json={"rows": ROWS})
        assert shape.status_code == 400 and '"records"' in shape.json()["detail"]
        missing = client.post("/predict", json={"records": [{"x": 1.0}]})
        assert missing.status_code == 422
        assert "missing column(s) ['n']" in missing.json()["detail"]
        extra = client.post("/predict", json={"records": [{"x": 1.0, "n": 1, "plan": "gold"}]})
        assert extra.status_code == 422 and "['plan']" in extra.json()["detail"]
        wrong = client.post("/predict", json={"records": [{"x": "one", "n": 1.5}]})
        assert wrong.status_code == 422
        detail = wrong.json()["detail"]
        assert "'x' must be float64, got str" in detail and "'n' must be int64" in detail
        big = {"records": [{"x": 1.0, "n": 1}] * 40}
        too_large = client.post("/predict", json=big)
        assert too_large.status_code == 413 and "max_body_bytes" in too_large.json()["detail"]
        assert too_large.json()["error"] == "BodyTooLarge"
        empty = client.post("/predict", json={"records": []})
        assert empty.status_code == 400 and empty.json()["error"] == "BadRequest"
        assert "no rows" in empty.json()["detail"] and "missing" not in empty.json()["detail"]
        # Without a Content-Length (chunked), the limit holds while the body is read.
        chunked = client.post("/predict", content=iter([b'{"records": [', b" " * 400, b"]}"]))
        assert chunked.status_code == 413
        assert client.post("/predict", json={"records": ROWS}).status_code == 200


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            b'{"records": [{"x": 1.0, "n": 99999999999999999999999}]}',
            "'n' must be int64, got 1e+23, beyond",
        ),
        (b'{"records": [{"x": 1.0, "n": 1e300}]}', "'n' must be int64, got 1e+300, beyond"),
        (b'{"records": [{"x": 1e400, "n": 1}]}', "'x' must be float64, got Infinity"),
        (b'{"records": [{"x": 1.0, "n": 1}, {"x": NaN, "n": 1}]}', "got NaN (not a finite"),
        (b'{"records": [{"x": -Infinity, "n": 1}]}', "'x' must be float64, got -Infinity"),
        (b'{"columns": ["x", "n"], "data": [[1.0, 2], [Infinity, 3]]}', "got Infinity"),
    ],
)
def test_numbers_a_column_cannot_hold_are_422s_and_leave_the_log_writable(
    serving_ws: Workspace, serve: Callable[..., str], body: bytes, message: str
) -> None:
    url = serve(serving_ws, "churn")
    with httpx.Client(base_url=url) as client:
        bad = client.post("/predict", content=body, headers={"X-Request-Id": "bad"})
        assert bad.status_code == 422, bad.text
        assert bad.json()["error"] == "SchemaMismatch"
        assert message in bad.json()["detail"] and " in row " in bad.json()["detail"]
        good = client.post("/predict", json={"records": ROWS}, headers={"X-Request-Id": "good"})
        assert good.status_code == 200
    serve.stop(url)  # type: ignore[attr-defined]
    assert list(read_predictions(serving_ws, "churn")["request_id"]) == ["good"]


def test_a_model_failing_on_missing_values_is_a_422_naming_them(
    serving_ws: Workspace, serve: Callable[..., str]
) -> None:
    from loopml.registry import PythonModel

    class NoMissing(PythonModel):
        def predict(self, model_input: Any) -> Any:
            if model_input.isna().any().any():
                raise ValueError("Input X contains NaN.\nThis model does not take NaN.")
            return model_input["x"].to_numpy()

    serving_ws.models.register("strict", NoMissing(), input_example=pd.DataFrame(ROWS))
    serving_ws.deployments.create("strict", "strict/1")
    url = serve(serving_ws, "strict")
    rows = [{"x": 1.0, "n": 1}, {"x": None, "n": 2}]
    reply = httpx.post(f"{url}/predict", json={"records": rows})
    assert reply.status_code == 422, reply.text
    detail = reply.json()["detail"]
    assert reply.json()["error"] == "MissingValues" and "\n" not in detail
    assert "('x' in row 1)" in detail and "Input X contains NaN. This model" in detail


def test_invocations_take_csv_typed_by_the_signature(
    serving_ws: Workspace, serve: Callable[..., str]
) -> None:
    serving_ws.settings = serving_ws.settings.with_overrides(
        serving=ServingSettings(max_body_bytes=300)
    )
    url = serve(serving_ws, "churn")
    csv = {"content-type": "text/csv; charset=utf-8"}
    with httpx.Client(base_url=url, headers=csv) as client:
        reply = client.post("/invocations", content=b"n,x\r\n1,1.0\r\n0,2.5\r\n")
        assert reply.status_code == 200, reply.text
        assert reply.json() == {"predictions": [3.0, 5.0]}
        wrong = client.post("/invocations", content=b"x,n\n1.0,one\n")
        assert wrong.status_code == 422
        assert "'n' must be int64, got str ('one') in row 0" in wrong.json()["detail"]
        missing = client.post("/invocations", content=b"x\n1.0\n")
        assert missing.status_code == 422 and "missing column(s) ['n']" in missing.text
        ragged = client.post("/invocations", content=b"x,n\n1.0\n")
        assert ragged.status_code == 400 and "row 0 (line 2) has 1 value(s)" in ragged.text
        header_only = client.post("/invocations", content=b"x,n\n")
        assert header_only.status_code == 400 and "no rows" in header_only.text
        big = client.post("/invocations", content=b"x,n\n" + b"1.0,1\n" * 60)
        assert big.status_code == 413 and big.json()["error"] == "BodyTooLarge"
    serve.stop(url)  # type: ignore[attr-defined]
    logged = read_predictions(serving_ws, "churn")
    assert list(logged["inputs"]) == ['[{"n":1,"x":1.0},{"n":0,"x":2.5}]']  # typed, not text


def test_a_model_that_raises_is_a_500_with_the_request_id_and_counted(
    serving_ws: Workspace, serve: Callable[..., str]
) -> None:
    serving_ws.deployments.create("frail", "fragile/1")
    url = serve(serving_ws, "frail")
    with httpx.Client(base_url=url) as client:
        bad = client.post(
            "/predict", json={"records": [{"x": -1.0, "n": 1}]}, headers={"X-Request-Id": "e-1"}
        )
        assert bad.status_code == 500
        assert bad.json()["request_id"] == "e-1" and "x must not be negative" in bad.text
        good = client.post("/predict", json={"records": [{"x": 4.0, "n": 1}]})
        assert good.status_code == 200 and good.json()["predictions"] == [4.0]
        metrics = client.get("/metrics").text
    labels = 'deployment="frail",model="fragile/1",variant="primary"'
    assert f"loopml_requests_total{{{labels}}} 2.0" in metrics
    assert f"loopml_errors_total{{{labels}}} 1.0" in metrics
    assert f"loopml_request_latency_seconds_count{{{labels}}} 2.0" in metrics
    serve.stop(url)  # type: ignore[attr-defined]
    log = read_predictions(serving_ws, "frail")
    assert list(log["request_id"])[0] == "e-1"
    assert "ValueError: x must not be negative" in log["error"].iloc[0]
    assert pd.isna(log["error"].iloc[1]) and log["outputs"].iloc[1] == "[4.0]"


async def _cold(ws: Workspace) -> list[httpx.Response]:
    transport = httpx.ASGITransport(app=create_app(ws, "churn"))  # no lifespan: nothing loads
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as cold:
        return [
            await cold.get("/health"),
            await cold.get("/ready"),
            await cold.post("/predict", json={"records": ROWS}),
        ]


def test_ready_health_and_deployment(serving_ws: Workspace, serve: Callable[..., str]) -> None:
    import asyncio

    health, ready, predict = asyncio.run(_cold(serving_ws))
    assert health.json() == {"status": "ok"}
    assert ready.status_code == 503 and ready.json()["status"] == "loading"
    assert predict.status_code == 503 and "loading" in predict.json()["detail"]
    url = serve(serving_ws, "churn")
    with httpx.Client(base_url=url) as client:
        ready = client.get("/ready").json()
        assert ready == {"status": "ready", "revision": 1, "loaded": ["primary"], "failed": {}}
        served = client.get("/deployment").json()
        assert served["name"] == "churn" and served["revision"] == 1
        assert served["variants"][0]["model"] == "models:/double/1"
        assert served["models"] == {"primary": "double/1"}
        assert client.post("/deployment", json={}).status_code == 405  # no endpoint changes it


def test_a_request_during_the_first_load_waits_for_it(
    serving_ws: Workspace, serve: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # With --workers N the kernel may hand a request to a worker still loading while another
    # already answers /ready: that request waits for the load instead of getting a 503.
    real = serving_ws.models.load

    def slow(uri: str) -> Any:
        time.sleep(1.0)
        return real(uri)

    monkeypatch.setattr(serving_ws.models, "load", slow)
    url = serve(serving_ws, "churn", ready=False)
    with httpx.Client(base_url=url, timeout=30) as client:
        assert client.get("/ready").status_code == 503  # still loading
        reply = client.post("/predict", json={"records": ROWS})
        assert reply.status_code == 200, reply.text
        assert reply.json()["model"] == "double/1"


def test_an_unknown_deployment_is_refused_with_a_hint(serving_ws: Workspace) -> None:
    with pytest.raises(DeploymentNotFound, match="Did you mean 'churn'"):
        create_app(serving_ws, "chrun")


def test_every_request_is_logged_and_read_back(
    serving_ws: Workspace, serve: Callable[..., str]
) -> None:
    url = serve(serving_ws, "churn")
    with httpx.Client(base_url=url) as client:
        ids = [
            client.post("/predict", json={"records": [{"x": float(i), "n": i}]}).json()[
                "request_id"
            ]
            for i in range(5)
        ]
        client.post("/predict", json={"records": [{"x": 1.0}]})  # a 422: not scored, not logged
    serve.stop(url)  # type: ignore[attr-defined]
    log = read_predictions(serving_ws, "churn")
    assert list(log["request_id"]) == ids
    row = log.iloc[2]
    assert (row["deployment"], row["revision"], row["model"], row["variant"]) == (
        "churn",
        1,
        "double/1",
        "primary",
    )
    assert row["inputs"] == '[{"x":2.0,"n":2}]' and row["outputs"] == "[6.0]"
    assert not row["shadow"] and row["latency_ms"] > 0 and str(row["time"].tz) == "UTC"
    later = read_predictions(serving_ws, "churn", start=row["time"])
    assert list(later["request_id"]) == ids[2:]
    assert read_predictions(serving_ws, "other").empty


def test_feedback_is_stored_beside_the_log(
    serving_ws: Workspace, serve: Callable[..., str]
) -> None:
    url = serve(serving_ws, "churn")
    with httpx.Client(base_url=url) as client:
        rid = client.post("/predict", json={"records": ROWS}).json()["request_id"]
        assert client.post("/feedback", json={"request_id": rid, "label": 1}).status_code == 202
        reward = client.post("/feedback", json={"request_id": rid, "reward": 0.5})
        assert reward.json() == {"status": "accepted", "request_id": rid}
        unknown = client.post("/feedback", json={"request_id": "nope", "label": 0})
        assert unknown.status_code == 404, unknown.text
        assert "'nope'" in unknown.json()["detail"] and "log_flush_interval" in unknown.text
        for body, message in [
            ({"label": 1}, "request_id"),
            ({"request_id": rid}, "label"),
            ({"request_id": rid, "reward": "high"}, "number"),
            ({"request_id": rid, "label": 1, "score": 2}, "'score'"),
        ]:
            bad = client.post("/feedback", json=body)
            assert bad.status_code == 422 and message in bad.json()["detail"], body
        assert client.post("/feedback", content=b"{").status_code == 400
    serve.stop(url)  # type: ignore[attr-defined]
    feedback = read_feedback(serving_ws, "churn")
    assert list(feedback["request_id"]) == [rid, rid]
    assert [None if pd.isna(v) else v for v in feedback["label"]] == ["1", None]
    assert feedback["reward"].iloc[1] == 0.5


def test_feedback_finds_requests_in_the_log_once_another_replica_flushed_them(
    serving_ws: Workspace, serve: Callable[..., str]
) -> None:
    serving_ws.settings = serving_ws.settings.with_overrides(
        serving=ServingSettings(log_flush_interval=60.0)
    )
    first, second = serve(serving_ws, "churn"), serve(serving_ws, "churn")
    rid = httpx.post(f"{first}/predict", json={"records": ROWS}).json()["request_id"]
    # The first replica holds the row until its next flush: the second can't know it yet.
    early = httpx.post(f"{second}/feedback", json={"request_id": rid, "label": 1})
    assert early.status_code == 404
    assert "retry after [serving] log_flush_interval (60s)" in early.json()["detail"]
    serve.stop(first)  # type: ignore[attr-defined]  # shutdown flushes the log
    retried = httpx.post(f"{second}/feedback", json={"request_id": rid, "label": 1})
    assert retried.status_code == 202, retried.text
    serve.stop(second)  # type: ignore[attr-defined]
    assert list(read_feedback(serving_ws, "churn")["request_id"]) == [rid]


def test_api_keys_guard_predict_invocations_and_feedback(
    serving_ws: Workspace, serve: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    serving_ws.settings = serving_ws.settings.with_overrides(
        serving=ServingSettings(api_keys=("s3cret",))
    )
    url = serve(serving_ws, "churn")
    with httpx.Client(base_url=url) as client:
        body = {"records": ROWS}
        assert client.post("/predict", json=body).status_code == 401
        assert client.post("/invocations", json={"instances": ROWS}).status_code == 401
        assert client.post("/feedback", json={"request_id": "x", "label": 1}).status_code == 401
        wrong = client.post("/predict", json=body, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and "X-API-Key" in wrong.json()["detail"]
        bearer = {"Authorization": "Bearer s3cret"}
        assert client.post("/predict", json=body, headers=bearer).status_code == 200
        assert (
            client.post("/predict", json=body, headers={"X-API-Key": "s3cret"}).status_code == 200
        )
        assert client.get("/health").status_code == 200 and client.get("/ready").status_code == 200
    monkeypatch.setenv("LOOPML_SERVING_API_KEYS", "k1,k2")
    url = serve(serving_ws, "churn")
    with httpx.Client(base_url=url) as client:
        assert client.post("/predict", json=body, headers=bearer).status_code == 401
        assert client.post("/predict", json=body, headers={"X-API-Key": "k2"}).status_code == 200


def _wait_for(client: httpx.Client, model: str, deadline: float) -> float:
    while True:
        reply = client.post("/predict", json={"records": ROWS})
        if reply.json().get("model") == model:
            return time.monotonic()
        assert time.monotonic() < deadline, f"{client.base_url} still serves {reply.json()}"
        time.sleep(0.05)


def test_two_servers_follow_a_change(serving_ws: Workspace, serve: Callable[..., str]) -> None:
    # Within about poll_interval (1 s) on a quiet machine; the deadlines leave room for a
    # loaded CI machine (no timed assertions: benchmarks measure, tests check behaviour).
    urls = [serve(serving_ws, "churn", poll_interval=1.0) for _ in range(2)]
    clients = [httpx.Client(base_url=u) for u in urls]
    assert {c.post("/predict", json={"records": ROWS}).json()["model"] for c in clients} == {
        "double/1"
    }
    current = serving_ws.deployments.get("churn")
    changed_at = time.monotonic()
    serving_ws.deployments.update(
        replace(current, variants=(Variant("primary", "double/2"),)), reason="v2"
    )
    for client in clients:
        _wait_for(client, "double/2", changed_at + 20)
        assert client.post("/predict", json={"records": ROWS}).json()["predictions"] == [4.0, 7.5]
        assert client.get("/deployment").json()["revision"] == 2
    # An alias move is followed too: the deployment names churn@live, not a version.
    serving_ws.models.set_alias("double", "live", 1)
    serving_ws.deployments.update(
        replace(serving_ws.deployments.get("churn"), variants=(Variant("primary", "double@live"),))
    )
    for client in clients:
        _wait_for(client, "double/1", time.monotonic() + 20)
    moved_at = time.monotonic()
    serving_ws.models.set_alias("double", "live", 2)
    for client in clients:
        _wait_for(client, "double/2", moved_at + 20)
        client.close()


def test_a_model_that_fails_to_load_gets_no_traffic_and_an_event(
    serving_ws: Workspace, serve: Callable[..., str]
) -> None:
    broken = serving_ws.models.register("broken", model_for_broken(), input_example=_example())
    serving_ws.blobs.delete(broken.digest)  # its package is gone: it can't load
    current = serving_ws.deployments.get("churn")
    serving_ws.deployments.update(
        replace(
            current,
            strategy="canary",
            variants=(
                Variant("primary", "double/1", weight=50),
                Variant("canary", "broken/1", weight=50, role="candidate"),
            ),
        ),
        reason="canary of a broken model",
    )
    url = serve(serving_ws, "churn")
    with httpx.Client(base_url=url) as client:
        ready = client.get("/ready").json()
        assert ready["loaded"] == ["primary"] and "canary" in ready["failed"]
        variants = {
            client.post("/predict", json={"records": ROWS}).json()["variant"] for _ in range(30)
        }
        assert variants == {"primary"}
        assert "canary" in client.get("/deployment").json()["failed"]
    events = serving_ws.events.read(kinds="deployment.model_failed")
    assert len(events) == 1
    payload = events[0].payload
    assert payload is not None
    assert (payload["revision"], payload["variant"], payload["model"]) == (
        2,
        "canary",
        "models:/broken/1",
    )
    assert "not in the blob store" in payload["error"]


def test_a_primary_that_fails_to_load_is_not_ready_and_says_why(
    serving_ws: Workspace, serve: Callable[..., str]
) -> None:
    # It answered /ready with 200 and /predict with a bare 500 (KeyError) before.
    broken = serving_ws.models.register("broken", model_for_broken(), input_example=_example())
    serving_ws.blobs.delete(broken.digest)
    current = serving_ws.deployments.get("churn")
    serving_ws.deployments.update(
        replace(current, variants=(Variant("primary", "broken/1"),)), reason="broken"
    )
    url = serve(serving_ws, "churn", ready=False)
    with httpx.Client(base_url=url) as client:
        deadline = time.monotonic() + 30
        while (ready := client.get("/ready")).json()["status"] == "loading":
            assert time.monotonic() < deadline, "the first load never ended"
            time.sleep(0.05)
        body = ready.json()
        assert ready.status_code == 503 and body["status"] == "failed"
        assert body["loaded"] == [] and "ModelFilesMissing" in body["failed"]["primary"]
        reply = client.post("/predict", json={"records": ROWS})
        assert reply.status_code == 503, reply.text
        detail = reply.json()["detail"]
        assert "primary model models:/broken/1 failed to load" in detail
        assert "loopml deploy rollback churn" in detail and reply.json()["request_id"]
        # rolled back to a model that loads: followed without a restart
        serving_ws.deployments.rollback("churn")
        _wait_for(client, "double/1", time.monotonic() + 20)
        assert client.get("/ready").json()["status"] == "ready"


def model_for_broken() -> Any:
    from serving.conftest import model_classes

    return model_classes()["Linear"](5.0)


def _example() -> Any:
    from serving.conftest import EXAMPLE

    return EXAMPLE


def test_a_shadow_scores_off_the_response_path_and_is_logged(
    serving_ws: Workspace, serve: Callable[..., str]
) -> None:
    current = serving_ws.deployments.get("churn")
    serving_ws.deployments.update(
        replace(
            current,
            strategy="shadow",
            variants=(
                Variant("primary", "double/1"),
                Variant("shadow", "double/2", weight=0, role="shadow"),
            ),
        )
    )
    url = serve(serving_ws, "churn")
    with httpx.Client(base_url=url) as client:
        reply = client.post("/predict", json={"records": ROWS}, headers={"X-Request-Id": "s-1"})
        assert reply.json()["model"] == "double/1" and reply.json()["predictions"] == [3.0, 5.0]
    serve.stop(url)  # type: ignore[attr-defined]
    log = read_predictions(serving_ws, "churn").set_index("variant")
    assert set(log["request_id"]) == {"s-1"}
    assert not log.loc["primary", "shadow"] and log.loc["shadow", "shadow"]
    assert log.loc["shadow", "model"] == "double/2" and log.loc["shadow", "outputs"] == "[4.0,7.5]"


# -- parsing and checking, without a server ---------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "JSON object"),
        ({}, '"records"'),
        ({"records": {"x": 1}}, "list of objects"),
        ({"records": [], "extra": 1}, "extra"),
        ({"columns": ["x"], "data": [[1, 2]]}, "row 0 has 2 value"),
        ({"columns": "x", "data": []}, "list of column names"),
        ({"columns": ["x"], "data": [1]}, "list of rows"),
    ],
)
def test_parse_predict_rejects_bad_shapes(body: Any, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        parse_predict(body)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "exactly one of"),
        ({"inputs": [], "instances": []}, "exactly one of"),
        ({"inputs": [], "other": 1}, "'other'"),
        ({"inputs": {"x": [1], "n": [1, 2]}}, "differ in length"),
        ({"instances": "x"}, "list of rows"),
    ],
)
def test_parse_invocations_rejects_bad_shapes(body: Any, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        parse_invocations(body)


def test_check_rows_casts_to_the_signature_and_names_every_problem() -> None:
    signature = Signature(
        inputs=(("x", "float64"), ("n", "int64"), ("ok", "bool"), ("s", "object")),
        outputs=(),
    )
    frame = check_rows([{"s": "a", "ok": True, "n": 2.0, "x": 1}], signature)
    assert list(frame.columns) == ["x", "n", "ok", "s"]
    assert [str(t) for t in frame.dtypes] == ["float64", "int64", "bool", "object"]
    with pytest.raises(SchemaMismatch) as info:
        check_rows([{"x": True, "n": None, "ok": 1, "s": 2, "z": 0}], signature)
    message = str(info.value)
    for part in [
        "['z']",
        "'x' must be float64, got bool",
        "'n' must be int64, got null",
        "'ok' must be bool, got int",
        "'s' must be object, got int",
    ]:
        assert part in message
    arrays = Signature(inputs=(("[0]", "float64"), ("[1]", "float64")), outputs=())
    assert check_rows([[1.0, 2.0]], arrays).shape == (1, 2)
    with pytest.raises(SchemaMismatch, match="lists of 2"):
        check_rows([[1.0]], arrays)


SIGNATURE = Signature(
    inputs=(
        ("x", "float64"),
        ("n", "int64"),
        ("ok", "bool"),
        ("s", "object"),
        ("f", "float32"),
        ("u", "uint8"),
    ),
    outputs=(),
)


@pytest.mark.parametrize(
    ("signature", "rows"),
    [
        (
            SIGNATURE,
            [
                {"x": 1.5, "n": 2, "ok": True, "s": "a", "f": None, "u": 3},
                {"u": 255, "f": 2, "s": "b", "ok": False, "n": -5, "x": None},
            ],
        ),
        (
            Signature(inputs=tuple((f"f{i}", "float64") for i in range(20)), outputs=()),
            [
                {f"f{i}": i if i % 3 else i / 3 for i in range(20)},
                {f"f{i}": 0.5 for i in range(20)},
            ],
        ),
        (Signature(inputs=(("x", "float64"),), outputs=()), [{"x": None}, {"x": 3}]),
    ],
)
def test_the_fast_path_builds_what_the_slow_path_builds(
    signature: Signature, rows: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from loopml.serving import requests

    fast = requests._fast_frame(rows, requests._plan(signature.inputs))
    assert fast is not None  # these rows take the fast path
    monkeypatch.setattr(requests, "_fast_frame", lambda rows, plan: None)
    pd.testing.assert_frame_equal(fast, check_rows(rows, signature))


@pytest.mark.parametrize(
    "rows",
    [
        [{"x": 1.5, "n": 2.0, "ok": True, "s": "a", "f": 1.0, "u": 3}],  # 2.0 for an int: cast
        [{"x": True, "n": 2, "ok": True, "s": "a", "f": 1.0, "u": 3}],  # a bool for a float
        [{"x": 1.5, "n": 2, "ok": True, "s": None, "f": 1.0, "u": 3}],  # None in an object column
        [{"x": 1.5, "n": 2, "ok": True, "s": "a", "f": 1.0, "u": 300}],  # out of uint8's range
        [{"x": 1.5, "n": 2, "ok": True, "s": "a", "f": 1.0}],  # a column missing
        [{"x": 1.5, "n": 2, "ok": True, "s": "a", "f": 1.0, "u": 3, "z": 0}],  # one too many
        [],
    ],
)
def test_rows_the_fast_path_cannot_take_go_the_slow_way(rows: list[dict[str, Any]]) -> None:
    from loopml.serving import requests

    assert requests._fast_frame(rows, requests._plan(SIGNATURE.inputs)) is None


def test_a_model_is_scored_inline_only_while_requests_of_that_size_are_fast(
    serving_ws: Workspace,
) -> None:
    from loopml.serving.app import INLINE_MAX_S, ModelServer

    serving_ws.deployments.create("sluggish", "slow/1")
    server = ModelServer(serving_ws, "sluggish")
    assert server.refresh()
    served = server.served
    assert served is not None
    loaded = served.loaded["primary"]
    key = (loaded.model_uri, len(ROWS).bit_length())
    assert not server.inline(served, loaded, ROWS)  # nothing known yet: a thread
    server.score(served, loaded, ROWS)
    assert server.timings[key] >= 0.2  # slow/1 sleeps 0.2 s a request
    assert not server.inline(served, loaded, ROWS)
    server.timings[key] = INLINE_MAX_S / 2  # as if it had been fast
    assert server.inline(served, loaded, ROWS)
    # Requests of another size (rows, to the power of two) are timed on their own.
    assert not server.inline(served, loaded, ROWS * 40)
    server.score(served, loaded, ROWS)  # one slow answer: back to the threads at once
    assert server.timings[key] > INLINE_MAX_S and not server.inline(served, loaded, ROWS)


def test_entity_keys_are_filled_with_online_features(
    serving_ws: Workspace, serve: Callable[..., str]
) -> None:
    from features.conftest import NOW, customer, customer_stats, stats_view
    from loopml.features import FeatureService
    from loopml.registry import PythonModel

    class Spend(PythonModel):
        def predict(self, model_input: Any) -> Any:
            return (model_input["avg_purchase"] + model_input["n_orders"]).to_numpy()

    (serving_ws.root / "data").mkdir()
    customer_stats().to_parquet(serving_ws.root / "data" / "customer_stats.parquet")
    view = stats_view()
    serving_ws.features.use(customer, view, FeatureService("churn_features", [view]))
    serving_ws.features.materialize(NOW - timedelta(days=1), NOW)
    example = pd.DataFrame({"avg_purchase": [1.0], "n_orders": [1]})
    serving_ws.models.register("spend", Spend(), input_example=example)
    from loopml.exceptions import LoopmlError

    with pytest.raises(LoopmlError, match="churn_featurez"):  # a service the store lacks
        serving_ws.deployments.create("spend", "spend/1", feature_service="churn_featurez")
    serving_ws.deployments.create("spend", "spend/1", feature_service="churn_features")
    url = serve(serving_ws, "spend")
    with httpx.Client(base_url=url) as client:
        # customer 3's latest values: avg_purchase 304.0, n_orders 7 (see customer_stats)
        filled = client.post("/predict", json={"records": [{"customer_id": 3}]})
        assert filled.status_code == 200, filled.text
        assert filled.json()["predictions"] == [311.0]
        given = client.post("/predict", json={"records": [{"customer_id": 3, "avg_purchase": 1.0}]})
        assert given.json()["predictions"] == [8.0]  # a value the request gives is kept
        full = client.post("/predict", json={"records": [{"avg_purchase": 1.0, "n_orders": 2}]})
        assert full.json()["predictions"] == [3.0]  # nothing to fill: the store isn't asked
        no_key = client.post("/predict", json={"records": [{"n_orders": 2}]})
        assert no_key.status_code == 422 and "customer_id" in no_key.json()["detail"]
