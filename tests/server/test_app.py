"""The server's app: health, metrics, MLflow's error shape, the loopback rule."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from click.testing import CliRunner

from loopml.cli.main import cli
from loopml.cli.server import is_loopback
from loopml.workspace import Workspace


def test_health_and_metrics(server: Callable[..., str], sqlite_ws: Workspace) -> None:
    url = server(sqlite_ws)
    assert httpx.get(f"{url}/health").json() == {"status": "ok"}
    httpx.get(f"{url}/api/2.0/mlflow/no-such-endpoint")
    text = httpx.get(f"{url}/metrics").text
    assert "loopml_server_requests_total" in text
    assert 'route="app.health"' in text


def test_an_unknown_api_path_is_mlflows_endpoint_not_found(
    server: Callable[..., str], sqlite_ws: Workspace
) -> None:
    url = server(sqlite_ws)
    answer = httpx.get(f"{url}/api/2.0/mlflow/no-such-endpoint")
    assert answer.status_code == 404
    assert answer.json()["error_code"] == "ENDPOINT_NOT_FOUND"


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", True),
        ("localhost", True),
        ("::1", True),
        ("127.1.2.3", True),
        ("0.0.0.0", False),
        ("10.0.0.5", False),
        ("example.org", False),
    ],
)
def test_is_loopback(host: str, expected: bool) -> None:
    assert is_loopback(host) is expected


def test_binding_another_address_without_auth_is_refused(sqlite_ws: Workspace) -> None:
    result = CliRunner().invoke(
        cli, ["--workspace", str(sqlite_ws.root), "server", "--host", "0.0.0.0"]
    )
    assert result.exit_code == 1
    assert "error: refusing to serve 0.0.0.0 without --auth" in result.output


def test_not_found_answers_do_not_list_what_exists() -> None:
    import orjson

    from loopml.exceptions import ExperimentNotFound, ModelNotFound
    from loopml.server.errors import error_response

    answer = error_response(ExperimentNotFound("No experiment 'x'. Known experiments: 'secret'."))
    body = orjson.loads(answer.body)
    assert answer.status_code == 404
    assert body == {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "No experiment 'x'."}
    answer = error_response(ModelNotFound("No registered model 'm'. Registered: hidden."))
    assert b"hidden" not in answer.body


def test_an_unknown_experiment_name_over_http_names_no_other(
    server: Callable[..., str], sqlite_ws: Workspace
) -> None:
    sqlite_ws.experiments.create("team-secret")
    url = server(sqlite_ws)
    answer = httpx.get(
        f"{url}/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": "nope"}
    )
    assert answer.status_code == 404
    assert "team-secret" not in answer.text


def test_loopml_api_unknown_experiment_names_no_other(
    server: Callable[..., str], sqlite_ws: Workspace
) -> None:
    sqlite_ws.experiments.create("team-secret")
    url = server(sqlite_ws)
    answer = httpx.get(f"{url}/api/loopml/experiment", params={"name": "nope"})
    assert answer.status_code == 404
    assert "team-secret" not in answer.text
