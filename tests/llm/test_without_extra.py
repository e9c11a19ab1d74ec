"""Without the `llm` extra (no OpenTelemetry), the LLM commands say what to install in one
error line instead of a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from loopml.workspace import Workspace

BLOCK_OPENTELEMETRY = """
import sys
class Block:
    def find_spec(self, name, path, target=None):
        if name == 'opentelemetry' or name.startswith('opentelemetry.'):
            raise ImportError('No module named ' + repr(name))
sys.meta_path.insert(0, Block())
from loopml.cli.main import main
sys.argv = ['loopml'] + sys.argv[1:]
main()
"""


@pytest.mark.parametrize("argv", [["traces", "list"], ["llm", "costs"], ["gateway", "serve"]])
def test_llm_commands_name_the_extra_to_install(tmp_path: Path, argv: list[str]) -> None:
    Workspace.init(tmp_path).close()
    done = subprocess.run(
        [sys.executable, "-c", BLOCK_OPENTELEMETRY, *argv],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert "pip install 'loopml[llm]'" in done.stderr
    assert "Traceback" not in done.stderr
