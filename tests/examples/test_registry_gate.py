"""examples/registry_gate.py end to end: data versions, gate blocks and promotes, rollback;
and the README's registry section, pasted as a user would."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from loopml.registry import GatePolicy

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_registry_gate_example(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "registry_gate.py"), str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "PROMOTED churn/1" in text
    assert "BLOCKED churn/2" in text and "[FAIL] beats_champion" in text
    assert "PROMOTED churn/3" in text
    assert "[pass] check:my_checks:predicts_both_classes" in text
    assert "rolled back: Production is churn/1" in text
    assert "the same as data/train.csv.loopml" in text
    assert "gate: PASS" in text and "rollback → Production" in text
    assert (tmp_path / "demo" / "data" / "train.csv.loopml").is_file()
    assert "gate PASS — promoted from the notebooks/ folder" in text
    assert "churn/3 is now in Production." in text


def _registry_blocks() -> dict[str, list[str]]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Model registry with a promotion gate", 1)[1].split("\n## ", 1)[0]
    blocks: dict[str, list[str]] = {}
    for lang, body in re.findall(r"```(\w+)\n(.*?)```", section, flags=re.S):
        blocks.setdefault(lang, []).append(body)
    return blocks


@pytest.mark.slow
def test_the_readme_registry_snippets_run_as_pasted(tmp_path: Path) -> None:
    blocks = _registry_blocks()
    (python,) = blocks["python"]
    (toml,) = blocks["toml"]
    (bash,) = blocks["bash"]
    gates = tomllib.loads(toml)["gates"]
    assert GatePolicy.from_dict(gates["churn"], "README [gates.churn]").checks
    bindir = Path(sys.executable).parent
    env = {
        **os.environ,
        "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONWARNINGS": "ignore",
    }
    for var in ("LOOPML_STORE_URL", "LOOPML_ARTIFACTS_URL", "LOOPML_WORKSPACE"):
        env.pop(var, None)
    work = tmp_path / "project"
    work.mkdir()

    def run(command: list[str]) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            command, cwd=work, env=env, capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, (command, done.stdout, done.stderr)
        return done

    run(["loopml", "init"])
    assert run([sys.executable, "-c", python]).stdout.strip() == "1"
    lines = [line.split("  #")[0] for line in bash.splitlines() if line.strip()]
    for line in lines:
        argv = shlex.split(line)
        assert argv[0] == "loopml", line  # one command per line, nothing to fill in
        run(argv)
