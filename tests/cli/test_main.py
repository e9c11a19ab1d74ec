"""The `loopml` group: version, help, lazy subcommand loading, workspace selection, `init`,
and the installed console script."""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from loopml import __version__
from loopml.cli.main import COMMANDS, LazyGroup, cli
from loopml.workspace import Workspace

Invoke = Callable[..., Result]
HEAVY = ("pandas", "sqlalchemy", "pyarrow", "numpy")


def imported_after(*argv: str) -> list[str]:
    """Run ``loopml ARGV`` in a fresh interpreter; return the heavy modules it imported."""
    code = textwrap.dedent(
        f"""
        import sys
        from loopml.cli.main import main
        try:
            main({list(argv)!r})
        except SystemExit as exc:
            assert exc.code in (0, None), exc.code
        print("\\nHEAVY=" + ",".join(m for m in {HEAVY!r} if m in sys.modules))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    heavy = out.rsplit("HEAVY=", 1)[1].strip()
    return heavy.split(",") if heavy else []


def test_version(invoke: Invoke) -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"loopml {__version__}"


def test_version_and_help_import_nothing_heavy() -> None:
    assert imported_after("--version") == []
    # `--help` imports every subcommand module for its one-line help: keep heavy imports
    # inside the command functions.
    assert imported_after("--help") == []
    assert imported_after("runs", "list", "--help") == []


def test_help_lists_the_commands(invoke: Invoke) -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    for name in ("init", "experiments", "runs"):
        assert f"  {name} " in result.stdout
    assert "--workspace" in result.stdout


def walk(
    command: click.Command, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    yield path, command
    if isinstance(command, click.Group):
        ctx = click.Context(command, info_name=path[-1] if path else "loopml")
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            assert sub is not None, f"{' '.join(path)} lists {name} but cannot load it"
            yield from walk(sub, (*path, name))


def test_every_command_has_help_text(invoke: Invoke) -> None:
    seen = []
    for path, command in walk(cli):
        seen.append(" ".join(path))
        assert (command.help or "").strip(), f"`loopml {' '.join(path)}` has no help text"
        result = invoke(*path, "--help")
        assert result.exit_code == 0, result.output
    assert {"init", "experiments list", "runs list", "runs reproduce"} <= set(seen)


def test_lazy_group_skips_a_missing_module_but_not_a_broken_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "loopml_cli_broken_fixture.py").write_text("import loopml_no_such_dependency\n")
    (tmp_path / "loopml_cli_good_fixture.py").write_text(
        "import click\n\n@click.command()\ndef hello():\n    '''Say hello.'''\n    click.echo('hi')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))

    @click.group(
        cls=LazyGroup,
        lazy_subcommands={
            "ghost": "loopml.cli.no_such_module:ghost",
            "hello": "loopml_cli_good_fixture:hello",
        },
    )
    def group() -> None:
        """A test group."""

    runner = CliRunner()
    result = runner.invoke(group, ["--help"])
    assert result.exit_code == 0, result.output
    assert "hello" in result.stdout and "ghost" not in result.stdout
    assert runner.invoke(group, ["hello"]).stdout == "hi\n"
    assert runner.invoke(group, ["ghost"]).exit_code == 2  # click's "No such command"

    group.lazy_subcommands["broken"] = "loopml_cli_broken_fixture:broken"  # type: ignore[attr-defined]
    result = runner.invoke(group, ["--help"])
    assert isinstance(result.exception, ModuleNotFoundError)
    assert result.exception.name == "loopml_no_such_dependency"


def test_every_command_table_entry_names_a_module_and_attribute() -> None:
    for name, target in COMMANDS.items():
        module, _, attribute = target.partition(":")
        assert module.startswith("loopml.cli.") and attribute == name


def test_init_creates_a_workspace_and_says_what_next(
    invoke: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke("init", "proj")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "proj" / "loopml.toml").is_file()
    assert (tmp_path / "proj" / ".loopml" / "loopml.db").is_file()
    out = result.stdout
    assert f"Created a workspace in {tmp_path / 'proj'}" in out
    assert "loopml.toml" in out and ".loopml/" in out
    assert "cd proj" in out and "loopml runs list" in out and "loopml.start_run" in out
    again = invoke("init", "proj")
    assert "already set up" in again.stdout
    here = invoke("init")
    assert here.exit_code == 0 and "cd " not in here.stdout
    assert (tmp_path / "loopml.toml").is_file()


def test_workspace_option_and_environment_variable(
    invoke: Invoke,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    error_lines: Callable[[Result], list[str]],
) -> None:
    with Workspace.init(tmp_path / "elsewhere") as ws, ws.start_run("far", log_environment=False):
        pass
    monkeypatch.chdir(tmp_path)
    error_lines(invoke("runs", "list"))  # no workspace here
    by_option = invoke("--workspace", str(tmp_path / "elsewhere"), "runs", "list", "--json")
    assert [r["experiment"] for r in json.loads(by_option.stdout)] == ["far"]
    monkeypatch.setenv("LOOPML_WORKSPACE", str(tmp_path / "elsewhere"))
    by_env = invoke("experiments", "list", "--json")
    assert [e["name"] for e in json.loads(by_env.stdout)] == ["far"]
    (line,) = error_lines(invoke("-w", str(tmp_path / "nowhere"), "runs", "list"))
    assert "nowhere" in line


def test_store_url_variable_is_honoured(
    invoke: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Workspace.init(tmp_path / "ws") as ws:
        with ws.start_run("by-url", log_environment=False):
            pass
        store_url = ws.settings.store_url
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LOOPML_STORE_URL", store_url)
    result = invoke("runs", "list", "--json")
    assert result.exit_code == 0, result.output
    assert [r["experiment"] for r in json.loads(result.stdout)] == ["by-url"]


@pytest.mark.slow
def test_installed_console_script(workspace: Workspace, make_run: Callable[..., str]) -> None:
    script = Path(sysconfig.get_path("scripts")) / "loopml"
    assert script.exists(), "the loopml console script is not installed: pip install -e ."
    run_id = make_run(params={"lr": 0.1}, metrics={"acc": 0.5})
    done = subprocess.run(
        [str(script), "runs", "list", "--json"],
        cwd=workspace.root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    (run,) = json.loads(done.stdout)
    assert run["run_id"] == run_id
    assert run["params"] == {"lr": "0.1"} and run["metrics"] == {"acc": 0.5}
    failed = subprocess.run(
        [str(script), "runs", "show", "ffffffffff"],
        cwd=workspace.root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert failed.returncode == 1
    assert failed.stderr.startswith("error: ") and "Traceback" not in failed.stderr
