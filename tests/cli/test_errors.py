"""Bad input never reaches the user as a traceback: one ``error:`` line, exit 1, and no store
is invented or changed on the way."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from loopml.cli.main import cli, os_error_message
from loopml.exceptions import StoreNotFound, StoreUnavailable
from loopml.workspace import Workspace


def run_cli(*args: str, env: dict[str, str] | None = None) -> Result:
    """The CLI as a user meets it: click's standalone mode, exceptions not re-raised."""
    return CliRunner().invoke(cli, list(args), prog_name="loopml", env=env)


def assert_one_error_line(result: Result, *fragments: str) -> None:
    assert result.exit_code == 1, (result.exit_code, result.output, result.exception)
    # Anything but click's own exit means an exception escaped the CLI: a traceback.
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    lines = result.stderr.strip().splitlines()
    assert lines and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A workspace folder (closed again) that is the current directory."""
    Workspace.init(tmp_path / "project").close()
    monkeypatch.chdir(tmp_path / "project")
    return tmp_path / "project"


# -- one failing input per command group ---------------------------------------------------

FAILING = [
    (("runs", "show", "nosuchrun"), "nosuchrun"),
    (("runs", "list", "--filter", "metrics.acc >"), "acc"),
    (("experiments", "rename", "nosuch", "other"), "nosuch"),
    (("models", "show", "nosuch"), "nosuch"),
    (("models", "promote", "nosuch", "1"), "nosuch"),
    (("pipelines", "run", "nosuch.py:flow"), "nosuch.py"),
    (("pipelines", "show-run", "nosuchrun"), "nosuchrun"),
    (("scheduler", "run", "--once", "nosuch.py:flow"), "nosuch.py"),
    (("data", "add", "no/such/file.csv"), "no/such/file.csv"),
    (("data", "checkout", "no/such/file.csv"), "no/such/file.csv"),
    (("config", "show", "tracking.flush_intervl"), "did you mean 'tracking.flush_interval'?"),
    (("features", "apply"), "features.py is not in the workspace"),
    (("features", "show", "nosuch"), "nosuch"),
    (("features", "materialize", "yesterday", "today"), "START needs an ISO time"),
    (("deploy", "status", "nosuch"), "No deployment 'nosuch'"),
    (("serve", "nosuch"), "No deployment 'nosuch'"),
    (("deploy", "canary", "churn", "--candidate", "churn/2", "--abort", "latency > 3"), "latency"),
    (("deploy", "canary", "churn", "--candidate", "churn/2", "--steps", "50,5"), "5 follows 50"),
    (("deploy", "ab", "churn", "--variant", "a=churn/1:x", "--variant", "b=churn/2"), "'x'"),
    (("evals", "run", "nosuch.yaml", "--prompt", "qa/1"), "No suite file 'nosuch.yaml'"),
    (("predict", "nosuch", "--input", "x.csv", "--output", "y.parquet"), "'nosuch'"),
    (("labels", "ingest", "nosuch.csv", "--deployment", "churn"), "nosuch.csv"),
    (("monitor", "run", "nosuch"), "No deployment 'nosuch'"),
    (("monitor", "report", "nosuch", "-o", "r.html"), "No deployment 'nosuch'"),
    (("alerts", "ack", "99"), "No alert 99"),
    (("server", "--host", "0.0.0.0"), "refusing to serve 0.0.0.0 without --auth"),
    (("users", "delete", "nosuch"), "No user 'nosuch'"),
    (("tokens", "revoke", "99"), "No token with id 99"),
    (("gateway", "keys", "revoke", "k_nosuch"), "No virtual key 'k_nosuch'"),
    (("llm", "show", "nosuch"), "No request 'nosuch'"),
    (("llm", "requests", "--since", "yesterday"), "duration back from now like 30m"),
    (("traces", "show", "nosuch"), "No trace 'nosuch'"),
    (("prompts", "show", "support/nosuch"), "No prompt 'support/nosuch'"),
    (("rag", "check", "nosuch"), "No index 'nosuch'"),
    (("demo", "--dir", "loopml.toml"), "not a folder"),
    (("status", "--model", "nosuch"), "No model 'nosuch'"),
]


@pytest.mark.parametrize(("args", "fragment"), FAILING, ids=[" ".join(a) for a, _ in FAILING])
@pytest.mark.slow
def test_every_group_reports_bad_input_in_one_line(
    project: Path, args: tuple[str, ...], fragment: str
) -> None:
    assert_one_error_line(run_cli(*args), fragment)


def test_groups_cover_every_command_group() -> None:
    from loopml.cli.main import COMMANDS

    assert {args[0] for args, _ in FAILING} == set(COMMANDS)


# -- a missing store is an error, not a new empty one (issue 8, item 5) ---------------------

READ_COMMANDS = [
    ("runs", "list"),
    ("experiments", "list"),
    ("models", "list"),
    ("pipelines", "runs"),
    ("features", "list"),
]


@pytest.mark.parametrize("args", READ_COMMANDS, ids=[" ".join(a) for a in READ_COMMANDS])
@pytest.mark.slow
def test_read_commands_refuse_a_missing_store(project: Path, args: tuple[str, ...]) -> None:
    state = project / ".loopml"
    state.rename(project / "moved-away")
    assert_one_error_line(run_cli(*args), "No metadata store at", str(state / "loopml.db"))
    assert not state.exists(), "a read command created the store"


def test_a_mistyped_store_url_creates_no_folders(project: Path, tmp_path: Path) -> None:
    typo = tmp_path / "typo" / "dir"
    result = run_cli("runs", "list", env={"LOOPML_STORE_URL": f"sqlite:///{typo}/x.db"})
    assert_one_error_line(result, str(typo / "x.db"))
    assert not (tmp_path / "typo").exists()


def test_writing_api_recreates_state_folder_with_its_gitignore(project: Path) -> None:
    """A fresh clone has loopml.toml but no .loopml/: the first run creates it, ignored."""
    import shutil

    shutil.rmtree(project / ".loopml")
    with Workspace.open(project) as ws:
        ws.start_run("e", log_environment=False).end()
    assert (project / ".loopml" / ".gitignore").read_text() == "*\n"
    assert run_cli("runs", "list").exit_code == 0


def test_writing_api_refuses_a_store_in_a_missing_folder(tmp_path: Path) -> None:
    ws = Workspace.open(
        store_url=f"sqlite:///{tmp_path}/typo/x.db", artifacts_url=str(tmp_path / "blobs")
    )
    with pytest.raises(StoreNotFound, match="does not exist"):
        ws.start_run("e", log_environment=False)
    assert not (tmp_path / "typo").exists()


def test_create_false_refuses_a_missing_file(tmp_path: Path) -> None:
    ws = Workspace.open(
        store_url=f"sqlite:///{tmp_path}/x.db", artifacts_url=str(tmp_path / "b"), create=False
    )
    with pytest.raises(StoreNotFound, match="loopml init"):
        ws.db.connect()
    assert not (tmp_path / "x.db").exists()


# -- configuration and operating-system errors ----------------------------------------------


def test_non_utf8_config_is_one_line(project: Path) -> None:
    (project / "loopml.toml").write_bytes(b"\xff\xfe[store]\n")
    assert_one_error_line(run_cli("runs", "list"), "loopml.toml", "UTF-8")


def test_os_error_is_one_line(project: Path) -> None:
    with Workspace.open(project) as ws:
        run = ws.start_run("e", log_environment=False)
        run.log_text("hello", "notes.txt")
        run.end()
    # /dev/null is a file: writing below it fails with ENOTDIR, even as root.
    result = run_cli("runs", "artifacts", run.id, "--download", "/dev/null/out")
    assert_one_error_line(result, "/dev/null")


def test_os_error_message_names_path_and_fix() -> None:
    import errno

    exc = OSError(errno.ENOSPC, "No space left on device", "/data/x")
    assert os_error_message(exc) == (
        "No space left on device (/data/x): free some disk space and run the command again; "
        "nothing half-written is kept."
    )


# -- an S3 endpoint that answers 404 to everything ------------------------------------------


class _NotFound(http.server.BaseHTTPRequestHandler):
    def _answer(self) -> None:
        body = b"Not Found"
        self.send_response(404)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def not_found_endpoint() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotFound)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.slow
def test_s3_endpoint_answering_404_is_store_unavailable(
    tmp_path: Path, not_found_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("s3fs")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    ws = Workspace.open(
        store_url=f"sqlite:///{tmp_path}/x.db",
        artifacts_url="s3://bucket/blobs",
        client_kwargs={"endpoint_url": not_found_endpoint},
        skip_instance_cache=True,
    )
    with (
        ws,
        ws.start_run("e", log_environment=False) as run,
        pytest.raises(StoreUnavailable, match="bucket does not exist"),
    ):
        run.log_text("hello", "notes.txt")


# -- the real console script ----------------------------------------------------------------


@pytest.mark.slow
def test_console_script_prints_no_traceback(project: Path) -> None:
    (project / "loopml.toml").write_bytes(b"\xff[store]\n")
    loopml = Path(sys.executable).with_name("loopml")
    command: list[str] = [str(loopml)] if loopml.exists() else [sys.executable, "-m", "loopml.cli"]
    done = subprocess.run(
        [*command, "runs", "list"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("error: ") and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("message", "shown"),
    [
        ("git failed: bad revision 'v9'..", "git failed: bad revision 'v9'."),
        ("Wait for it...", "Wait for it..."),
        ("Fine.", "Fine."),
        (
            "A split's weights sum to 100; 60 + 50 = 110",
            "A split's weights sum to 100; 60 + 50 = 110.",
        ),
        (
            "Run `loopml prompts label NAME LABEL VERSION`",
            "Run `loopml prompts label NAME LABEL VERSION`.",
        ),
        ('He said "stop."', 'He said "stop."'),
    ],
)
def test_error_line_has_one_full_stop(message: str, shown: str) -> None:
    from loopml.cli.context import CliError

    assert CliError(message).format_message() == shown


@pytest.mark.slow
def test_data_push_to_an_endpoint_answering_404_is_one_line(
    project: Path, not_found_endpoint: str
) -> None:
    pytest.importorskip("s3fs")
    (project / "d.txt").write_text("hello")
    assert run_cli("data", "add", "d.txt").exit_code == 0
    env = {
        "AWS_ENDPOINT_URL": not_found_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    assert run_cli("data", "remote", "add", "r", "s3://bucket/data", "--default").exit_code == 0
    result = run_cli("data", "push", env=env)
    assert_one_error_line(result, "s3://bucket/data", "bucket does not exist")
