"""``loopml demo`` run as a user would: a subprocess of the CLI with none of loopml's
environment variables (tests/conftest.py's ``demo_run`` shares one finished run)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def run_demo(
    *args: str, cwd: Path | None = None, path: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPML_")}
    if path is not None:
        env["PATH"] = path
    return subprocess.run(
        [sys.executable, "-m", "loopml.cli", "demo", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
        env=env,
    )


@dataclass(frozen=True)
class DemoRun:
    """One finished ``loopml demo --fast --json``: its folder, exit code and output."""

    root: Path
    returncode: int
    stdout: str
    stderr: str

    def check(self) -> dict[str, Any]:
        """The JSON summary; fails the test with the demo's output if it did not finish."""
        assert self.returncode == 0, self.stdout[-3000:] + self.stderr[-3000:]
        summary: dict[str, Any] = json.loads(self.stdout)
        return summary
