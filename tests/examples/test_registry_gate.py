"""examples/registry_gate.py end to end: data versions, gate blocks and promotes, rollback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


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
    assert "rolled back: Production is churn/1" in text
    assert "the same as data/train.csv.loopml" in text
    assert "gate: PASS" in text and "rollback → Production" in text
    assert (tmp_path / "demo" / "data" / "train.csv.loopml").is_file()
