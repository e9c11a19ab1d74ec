"""``loopml data``: every command end to end through click, its help, and its start-up cost."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from loopml.cli.data import data
from terminal import run_on_terminal


def invoke(*args: str) -> click.testing.Result:
    return CliRunner().invoke(data, list(args), catch_exceptions=False)


def commands(group: click.Group, prefix: str = "") -> Iterator[tuple[str, click.Command]]:
    for name, command in group.commands.items():
        yield f"{prefix}{name}", command
        if isinstance(command, click.Group):
            yield from commands(command, f"{prefix}{name} ")


def test_every_command_has_help() -> None:
    found = dict(commands(data))
    assert {"add", "status", "checkout", "push", "pull", "gc", "remote add"} <= set(found)
    for name, command in found.items():
        assert command.help and command.help.strip(), f"`loopml data {name}` has no help"
        result = CliRunner().invoke(data, [*name.split(), "--help"])
        assert result.exit_code == 0, name


def test_add_names_the_files_to_commit(ws: Path, make_tree: Callable[..., Path]) -> None:
    make_tree(ws / "data/raw", {"a.txt": b"a"})
    make_tree(ws / "data/labels", {"b.txt": b"b"})
    (ws / "notes.txt").write_text("n")
    result = invoke("add", "data/raw", "data/labels/", "notes.txt")
    line = result.output.splitlines()[-1]
    assert line == (
        "Commit the pointer files: git add data/raw.loopml data/labels.loopml notes.txt.loopml "
        "data/.gitignore .gitignore"
    )
    # The command as printed works: every file it names exists for git to add.
    subprocess.run(line.split(": ", 1)[1].split(), cwd=ws, check=True, capture_output=True)


def test_add_status_checkout(ws: Path, make_tree: Callable[..., Path]) -> None:
    make_tree(ws / "data", {"a.txt": b"a", "b/c.txt": b"c"})
    result = invoke("add", "data")
    assert "Added data: 2 files" in result.output
    assert "git add data.loopml .gitignore" in result.output  # beside the data
    assert invoke("status").output == "data: up to date\n"
    (ws / "data/a.txt").unlink()
    (ws / "data/a.txt").write_text("changed")
    (ws / "data/b/c.txt").unlink()
    result = invoke("status", "-v")
    assert "data: 1 modified, 0 added, 1 deleted (hashed 1 of 1 file)" in result.output
    assert "modified: data/a.txt" in result.output
    (row,) = json.loads(invoke("status", "--json", "data").output)
    assert row["modified"] == ["a.txt"] and row["deleted"] == ["b/c.txt"] and not row["clean"]
    result = CliRunner().invoke(data, ["checkout", "data"])
    assert result.exit_code == 1
    assert result.output.startswith("error: Checkout would overwrite or delete 1 file")
    result = invoke("checkout", "--force", "--link", "copy", "data")
    assert "2 written (2 by copy)" in result.output or "1 written (1 by copy)" in result.output
    assert invoke("status").output == "data: up to date\n"


def test_status_json_names_paths_as_the_text_does(
    ws: Path, make_tree: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`status --json` gave absolute paths, the text workspace-relative ones: the JSON is
    relative to the workspace root, wherever it is run from."""
    make_tree(ws / "data/raw", {"a.txt": b"a"})
    invoke("add", "data/raw")
    assert invoke("status").output == "data/raw: up to date\n"
    assert invoke("status", ".").output == "data/raw: up to date\n"  # the root: every path
    (row,) = json.loads(invoke("status", "--json").output)
    assert row["path"] == "data/raw"
    monkeypatch.chdir(ws / "data")
    (row,) = json.loads(invoke("status", "--json").output)
    assert row["path"] == "data/raw"


def test_errors_are_one_line(ws: Path) -> None:
    result = CliRunner().invoke(data, ["add", "missing"])
    assert result.exit_code == 1
    assert (
        result.output == "error: Cannot add " + str(ws / "missing") + ": no such file or folder.\n"
    )
    result = CliRunner().invoke(data, ["checkout", "--link", "symlink"])
    assert result.exit_code == 1 and "choose from reflink, hardlink, copy" in result.output


def test_remotes_push_pull_gc(ws: Path, make_tree: Callable[..., Path], tmp_path: Path) -> None:
    make_tree(ws / "data", {"a": 100})
    invoke("add", "data")
    remote = tmp_path / "remote"
    assert (
        "(default)" in invoke("remote", "add", "nas", str(remote), "-o", "auto_mkdir=true").output
    )
    assert invoke("remote", "list").output == f"nas\t{remote}\t(default)\n"
    assert "Pushed 2 objects" in invoke("push").output
    assert "Pulled 0 objects" in invoke("pull").output
    (ws / "data.loopml").unlink()
    result = invoke("gc", "--grace", "0")
    assert result.output.count("would remove ") == 2
    assert "Run `loopml data gc --force`" in result.output
    result = invoke("gc", "--grace", "0", "--force", "--json")
    assert len(json.loads(result.output)["removed"]) == 2


def test_root_command_reaches_the_data_group(ws: Path) -> None:
    from loopml.cli.main import cli

    result = CliRunner().invoke(cli, ["data", "status"])
    assert result.exit_code == 0
    assert "No versioned data here" in result.output


def test_status_imports_only_what_it_needs(ws: Path, make_tree: Callable[..., Path]) -> None:
    make_tree(ws / "data", {"a": 10})
    invoke("add", "data")
    code = (
        "import sys\n"
        "from loopml.cli.main import main\n"
        "try:\n"
        "    main(['data', 'status'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = ('pandas', 'numpy', 'pyarrow', 'sqlalchemy', 'fsspec', 'rich', 'yaml',\n"
        "         'loopml.workspace', 'loopml.tracking.api', 's3fs')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy or m in heavy))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ws, capture_output=True, text=True, check=True
    )
    assert done.stdout.splitlines() == ["data: up to date", "[]"], done.stderr


@pytest.mark.parametrize("args", [["add"], ["unprotect"]])
def test_required_paths(args: list[str]) -> None:
    result = CliRunner().invoke(data, args)
    assert result.exit_code == 2 and "Missing argument" in result.output


def test_public_api_names() -> None:
    import importlib

    import loopml.data

    for module in ("changes", "restore", "collect", "transfer", "versions", "remotes", "integrity"):
        importlib.import_module(f"loopml.data.{module}")  # a submodule must not shadow a name
    for name in loopml.data.__all__:
        value = getattr(loopml.data, name)
        assert callable(value), name


def test_os_errors_are_one_line(ws: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    import loopml.data.versions

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", "/cache/ab/cd")

    monkeypatch.setattr(loopml.data.versions, "add", full)
    result = CliRunner().invoke(data, ["add", "data"])
    assert result.exit_code == 1
    assert result.output == "error: No space left on device: /cache/ab/cd.\n"


def test_git_add_hint_quotes_paths_for_the_shell(ws: Path, make_tree: Callable[..., Path]) -> None:
    make_tree(ws / "dätä set", {"a": b"a"})
    make_tree(ws / "plain", {"b": b"b"})
    result = invoke("add", "dätä set", "plain")
    line = result.output.splitlines()[-1]
    assert line == "Commit the pointer files: git add 'dätä set.loopml' plain.loopml .gitignore"
    assert "Added plain: 1 file, 1 byte," in result.output
    # Pasted into a shell, it works.
    subprocess.run(["bash", "-c", line.split(": ", 1)[1]], cwd=ws, check=True)
    assert (
        "dätä set.loopml"
        in subprocess.run(
            ["git", "-c", "core.quotepath=off", "diff", "--cached", "--name-only"],
            cwd=ws,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
    )


def test_add_names_the_links_it_skips(ws: Path, make_tree: Callable[..., Path]) -> None:
    folder = make_tree(ws / "data", {"real": b"r"})
    (folder / "dangling").symlink_to(folder / "nowhere")
    (folder / "loop").symlink_to(folder / "loop")
    result = CliRunner().invoke(data, ["add", "data"], catch_exceptions=False)
    assert result.exit_code == 0
    assert result.stderr == (
        f"warning: {folder}: skipped 2 symbolic links that lead to no file, so not versioned: "
        "dangling (dangling), loop (a symlink loop)\n"
    )
    assert "Added data: 1 file," in result.stdout


def _cli(ws: Path, *args: str) -> list[str]:
    return [sys.executable, "-c", "from loopml.cli.main import main; main()", "data", *args]


@pytest.mark.slow
def test_piped_commands_print_no_progress(
    ws: Path, make_tree: Callable[..., Path], tmp_path: Path
) -> None:
    make_tree(ws / "data", {"a": 5 << 20, "b": 100})
    remote = tmp_path / "remote"
    steps = [
        ("add", "data"),
        ("remote", "add", "r", str(remote), "--default"),
        ("push",),
        ("checkout", "--verify", "data"),
        ("pull",),
    ]
    for args in steps:
        done = subprocess.run(_cli(ws, *args), cwd=ws, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert done.stderr == "", (args, done.stderr)
        assert "\r" not in done.stdout and "\x1b" not in done.stdout, args


@pytest.mark.slow
def test_a_terminal_sees_the_progress_of_add(ws: Path, make_tree: Callable[..., Path]) -> None:
    make_tree(ws / "data", {"a": 5 << 20, "b": 100})
    drawn = run_on_terminal(_cli(ws, "add", "data"), cwd=ws)
    assert "Adding data" in drawn and "2/2 files" in drawn
    assert "Added data: 2 files, 5.2 MB" in drawn


def test_data_errors_are_one_line_with_one_full_stop(
    ws: Path, make_tree: Callable[..., Path]
) -> None:
    (ws / "bad.loopml").write_text("kind: [\n")
    make_tree(ws / "data", {"a": b"a"})
    invoke("add", "data")
    cases = [
        ["status"],
        ["push"],
        ["checkout", "nope"],
        ["checkout", "--rev", "nope", "data"],
        ["remote", "remove", "nope"],
        ["gc", "--workspace-only", "--all-commits"],
    ]
    for args in cases:
        result = CliRunner().invoke(data, args)
        assert result.exit_code == 1, (args, result.output)
        assert result.output.startswith("error: ") and result.output.count("\n") == 1, (
            args,
            result.output,
        )
        assert ".." not in result.output.replace(str(ws), ""), (args, result.output)
    bad = CliRunner().invoke(data, ["status"]).output
    assert "is not valid YAML (expected the node content, but found '<stream end>' at line 2" in bad
