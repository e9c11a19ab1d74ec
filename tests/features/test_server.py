"""The HTTP feature server, run by a real uvicorn on 127.0.0.1 and called with httpx."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
import uvicorn

from features.conftest import NOW
from loopml.features.server import BadRequest, create_app, parse_request
from loopml.workspace import Workspace


@pytest.fixture
def server(feature_ws: Workspace) -> Iterator[str]:
    """The feature server of ``feature_ws`` (materialized) on a free port; its base URL."""
    feature_ws.features.materialize(NOW - timedelta(days=1), NOW, partitions=1)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(
        create_app(feature_ws.features), host="127.0.0.1", port=port, log_level="warning"
    )
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not instance.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    instance.should_exit = True
    thread.join(5)


@pytest.mark.slow
def test_get_online_features_by_columns_and_rows(server: str) -> None:
    with httpx.Client(base_url=server) as client:
        assert client.get("/health").json() == {"status": "ok"}
        body = {"features": ["customer_stats:avg_purchase"], "entities": {"customer_id": [1, 99]}}
        reply = client.post("/get-online-features", json=body)
        assert reply.status_code == 200
        assert reply.json() == {
            "metadata": {"feature_names": ["customer_id", "avg_purchase"]},
            "results": [{"values": [1, 99]}, {"values": [104.0, None]}],
        }
        rows = client.post(
            "/get-online-features",
            json={
                "features": ["customer_stats:n_orders"],
                "entity_rows": [{"customer_id": 2}],
                "full_feature_names": True,
            },
        )
        assert rows.json()["metadata"]["feature_names"] == [
            "customer_id",
            "customer_stats__n_orders",
        ]
        assert rows.json()["results"][1] == {"values": [6]}


@pytest.mark.slow
def test_bad_requests_are_400_or_422_naming_the_problem(server: str) -> None:
    with httpx.Client(base_url=server) as client:
        post = client.post
        not_json = post("/get-online-features", content=b"{nope")
        assert not_json.status_code == 400 and "not JSON" in not_json.json()["detail"]
        typo = post(
            "/get-online-features",
            json={"features": ["customer_stats:n_order"], "entities": {"customer_id": [1]}},
        )
        assert typo.status_code == 422 and "Did you mean 'n_orders'" in typo.json()["detail"]
        no_key = post(
            "/get-online-features",
            json={"features": ["customer_stats:n_orders"], "entity_rows": [{"id": 1}]},
        )
        assert no_key.status_code == 422 and "customer_id" in no_key.json()["detail"]
        service = post(
            "/get-online-features", json={"feature_service": "nope", "entity_rows": [{}]}
        )
        assert service.status_code == 422 and "'nope'" in service.json()["detail"]
        assert client.get("/get-online-features").status_code == 405


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "JSON object"),
        ({"entities": {"customer_id": [1]}}, "feature_service"),
        ({"features": "x:y", "entities": {"customer_id": [1]}}, "non-empty list"),
        ({"features": ["x:y"]}, "entity_rows"),
        ({"features": ["x:y"], "entities": {"a": [1], "b": [1, 2]}}, "differ in length"),
        ({"features": ["x:y"], "entities": {"a": 1}}, "list of values"),
        ({"features": ["x:y"], "entity_rows": [1]}, "list of objects"),
        ({"features": ["x:y"], "entity_rows": [], "extra": 1}, "'extra'"),
        ({"features": ["x:y"], "entity_rows": [], "full_feature_names": "yes"}, "true or false"),
    ],
)
def test_parse_request_rejects_bad_shapes(body: object, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        parse_request(body)


def test_parse_request_turns_columns_into_rows() -> None:
    features, rows, full = parse_request(
        {"feature_service": "churn", "entities": {"a": [1, 2], "b": ["x", "y"]}}
    )
    assert (features, rows, full) == ("churn", [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}], False)
