"""The README works when pasted: every Python snippet runs in a fresh workspace, and every
line of a shell block is one command that the CLI knows."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from loopml.cli.main import cli

README = Path(__file__).resolve().parents[1] / "README.md"
TEXT = README.read_text(encoding="utf-8")
PYTHON_BLOCKS = re.findall(r"```python\n(.*?)```", TEXT, re.S)
SHELL_BLOCKS = re.findall(r"```bash\n(.*?)```", TEXT, re.S)


def _title(block: str) -> str:
    first = next(line for line in block.splitlines() if line.strip() and "import" not in line)
    return first.strip()[:40]


@pytest.mark.slow
@pytest.mark.parametrize("block", PYTHON_BLOCKS, ids=[_title(b) for b in PYTHON_BLOCKS])
def test_python_snippet_runs_when_pasted(block: str, tmp_path: Path) -> None:
    loopml_bin = Path(sys.executable).with_name("loopml")
    init = [str(loopml_bin)] if loopml_bin.exists() else [sys.executable, "-m", "loopml.cli"]
    subprocess.run([*init, "init", str(tmp_path)], check=True, capture_output=True)
    script = tmp_path / "snippet.py"
    script.write_text(block, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"README snippet failed:\n{block}\n--- stderr ---\n{done.stderr}"


def _commands() -> list[list[str]]:
    commands = []
    for block in SHELL_BLOCKS:
        for line in block.splitlines():
            code = line.split("  #", 1)[0].strip()
            if code.startswith("loopml "):
                commands.append(shlex.split(code))
    return commands


def test_shell_lines_are_single_commands() -> None:
    """`loopml models list | versions NAME` or `delete RUN / restore RUN` break when pasted."""
    for block in SHELL_BLOCKS:
        for line in block.splitlines():
            code = line.split("  #", 1)[0]
            assert " / loopml" not in code and not re.search(r"\| *[a-z]+ +[A-Z]", code), line


@pytest.mark.parametrize("argv", _commands(), ids=[" ".join(c)[:50] for c in _commands()])
def test_shell_commands_exist(argv: list[str]) -> None:
    """Each `loopml …` line names a real command (checked with --help, nothing runs)."""
    import click

    words = [w for w in argv[1:] if not w.startswith("-")]
    command: click.Command = cli
    ctx = click.Context(cli)
    for word in words:
        if not isinstance(command, click.Group):
            break  # the rest are the leaf command's arguments
        sub = command.get_command(ctx, word)
        assert sub is not None, f"{word!r} is not a command in: {' '.join(argv)}"
        command = sub
    assert not isinstance(command, click.Group), f"incomplete command: {' '.join(argv)}"
