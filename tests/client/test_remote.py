"""The remote workspace's edges: credentials refused by the server, a server that is not
there at start, the LOOPML_TRACKING_URI variable, the CLI through a server, the spool alone."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from loopml.cli.main import cli
from loopml.client import ServerUnreachable, Unauthorized, forget_sessions, session_for
from loopml.client.spool import Outbox, Spool, spool_folder
from loopml.client.transport import Transport
from loopml.config import load_settings
from loopml.server.context import OpenAccess
from loopml.server.errors import ApiError
from loopml.workspace import Workspace
from server.conftest import free_port


class TokenAccess(OpenAccess):
    """401 without ``Bearer good`` (or ``Bearer reader``); ``reader`` may not write (403)."""

    def middleware(self, app: Any) -> Any:
        async def checked(scope: Any, receive: Any, send: Any) -> None:
            headers = dict(scope.get("headers") or [])
            token = headers.get(b"authorization", b"").decode()
            if (
                scope["type"] == "http"
                and scope["path"].startswith("/api/")
                and token
                not in (
                    "Bearer good",
                    "Bearer reader",
                )
            ):
                body = orjson.dumps({"error_code": "UNAUTHENTICATED", "message": "bad token"})
                await send({"type": "http.response.start", "status": 401, "headers": []})
                await send({"type": "http.response.body", "body": body})
                return
            await app(scope, receive, send)

        return checked

    def check(self, conn: Any, kind: Any, key: str, level: Any) -> None:
        if conn.headers.get("authorization") == "Bearer reader" and level != "read":
            raise ApiError("PERMISSION_DENIED", f"no {level} permission on {kind} {key}")


def test_refused_credentials_are_an_error_naming_loopml_token(
    server: Callable[..., str],
    sqlite_ws: Workspace,
    spool_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = server(sqlite_ws, access=TokenAccess())
    with pytest.raises(Unauthorized, match="LOOPML_TOKEN") as refused:
        Workspace.open(url).experiments.list()
    assert "401" in str(refused.value)
    forget_sessions()
    monkeypatch.setenv("LOOPML_TOKEN", "good")
    assert Workspace.open(url).experiments.create("yes").name == "yes"
    forget_sessions()
    monkeypatch.setenv("LOOPML_TOKEN", "reader")
    ws = Workspace.open(url)
    assert [e.name for e in ws.experiments.list()] == ["yes"]
    with pytest.raises(Unauthorized, match="403.*LOOPML_TOKEN"):
        ws.experiments.rename("yes", "no")


def test_a_run_starts_while_the_server_is_not_there(spool_dir: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens here
    ws = Workspace.open(url)
    with ws.runs.start(experiment="offline", log_environment=False) as run:
        run.log_param("lr", 0.1)
        run.log_metric("loss", 0.5)
        assert run.experiment_id == -1  # not known until the server answers
    pending = session_for(url).spool.pending()
    paths = [orjson.loads(p.read_bytes())["path"] for p in pending]
    assert paths == [
        "/runs",
        f"/runs/{run.id}/params",
        f"/runs/{run.id}/batches",
        f"/runs/{run.id}/end",
    ]
    with pytest.raises(ServerUnreachable, match="can't be reached"):
        ws.runs.get(run.id)
    assert spool_folder(url).parent == spool_dir


def test_loopml_tracking_uri_names_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOPML_TRACKING_URI", "http://127.0.0.1:5999")
    settings = load_settings()
    assert settings.store_url == "http://127.0.0.1:5999"
    assert settings.sources["store.url"] == "LOOPML_TRACKING_URI"
    monkeypatch.setenv("LOOPML_STORE_URL", "sqlite:///x.db")  # the store's own name wins
    assert load_settings().store_url.endswith("x.db")


def test_the_cli_lists_and_shows_runs_and_models_through_a_server(
    server: Callable[..., str],
    sqlite_ws: Workspace,
    spool_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    url = server(sqlite_ws)
    with sqlite_ws.runs.start(experiment="cli", log_environment=False) as run:
        run.log_metric("acc", 0.5)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LOOPML_TRACKING_URI", url)
    runner = CliRunner()
    listed = runner.invoke(cli, ["runs", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    assert [r["run_id"] for r in orjson.loads(listed.output)] == [run.id]
    shown = runner.invoke(cli, ["runs", "show", run.id[:8], "--json"])
    assert shown.exit_code == 0, shown.output
    assert orjson.loads(shown.output)["metrics"] == {"acc": 0.5}
    models = runner.invoke(cli, ["models", "list", "--json"])
    assert models.exit_code == 0 and orjson.loads(models.output) == []


def test_the_outbox_spools_in_order_and_replays_once_the_server_answers(
    server: Callable[..., str], sqlite_ws: Workspace, tmp_path: Path
) -> None:
    url = server(sqlite_ws)
    down = Transport(f"http://127.0.0.1:{free_port()}")
    spool = Spool(tmp_path / "s")
    outbox = Outbox(down, spool)
    assert outbox.send({"method": "POST", "path": "/experiments", "body": {"name": "a"}}) is None
    assert outbox.backlog
    # Later requests go behind the spooled one even if they could be sent.
    outbox.send({"method": "POST", "path": "/experiments", "body": {"name": "b"}})
    assert not outbox.replay()  # still down: kept
    assert len(spool.pending()) == 2
    outbox.transport = Transport(url)
    outbox.send({"method": "POST", "path": "/experiments", "body": {"name": "a"}})  # refused
    assert outbox.replay()
    assert [e.name for e in sqlite_ws.experiments.list()] == ["a", "b"]
    assert sorted(p.suffix for p in (spool.folder / "rejected").iterdir()) == [".json", ".why"]
    assert spool.pending() == []


def test_the_module_level_api_logs_through_loopml_tracking_uri(
    server: Callable[..., str],
    sqlite_ws: Workspace,
    spool_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    import loopml
    from loopml.workspace import set_default_workspace

    url = server(sqlite_ws)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LOOPML_TRACKING_URI", url)
    set_default_workspace(None)
    with loopml.start_run(experiment="fluent", log_environment=False) as run:
        loopml.log_param("lr", 0.1)
        loopml.log_metrics({"acc": 0.75, "loss": 0.2}, step=3)
        loopml.set_tag("who", "me")
    frame = loopml.search_runs("fluent")
    assert list(frame["run_id"]) == [run.id]
    assert frame["metrics.acc"][0] == 0.75
    record = sqlite_ws.runs.get(run.id)
    assert record.params == {"lr": "0.1"} and record.tags["who"] == "me"
    assert loopml.get_run(run.id) == record
    loopml.default_workspace().close()


def test_artifacts_and_metrics_logged_offline_arrive_when_a_server_comes_up(
    sqlite_ws: Workspace, spool_dir: Path, tmp_path: Path
) -> None:
    from server.conftest import wait_healthy

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    ws = Workspace.open(url)
    model_file = tmp_path / "weights.bin"
    model_file.write_bytes(bytes(range(256)) * 1000)
    with ws.runs.start(experiment="later", log_environment=False) as run:
        for step in range(300):
            run.log_metric("loss", 1 / (step + 1))
        run.log_artifact(model_file, "model")
        run.log_text("offline notes", "notes.txt")
    assert any((spool_dir / f"127.0.0.1_{port}" / "blobs").iterdir())  # the bytes wait here

    import threading

    import uvicorn

    from loopml.server.app import create_app

    instance = uvicorn.Server(
        uvicorn.Config(create_app(sqlite_ws), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    try:
        wait_healthy(url)
        ws.runs.flush()  # sends the spool now that the server answers
        record = sqlite_ws.runs.get(run.id)
        assert record.status == "FINISHED" and record.experiment == "later"
        assert len(sqlite_ws.runs.metric_history(run.id, "loss")) == 300
        got = sqlite_ws.runs.download_artifacts(run.id, dst=tmp_path / "out")
        assert (got / "model" / "weights.bin").read_bytes() == model_file.read_bytes()
        assert (got / "notes.txt").read_text() == "offline notes"
        assert session_for(url).spool.pending() == []
        assert not list((spool_dir / f"127.0.0.1_{port}" / "blobs").iterdir())
    finally:
        ws.close()
        instance.should_exit = True
        thread.join(10)
