"""The progress bar: drawn on a terminal (a real pseudo-terminal here), silent when piped."""

from __future__ import annotations

import subprocess
import sys

from terminal import run_on_terminal

SCRIPT = """
from loopml.cli.progress import progress_bar
with progress_bar("Copying") as tracker:
    tracker(total_files=4, total_bytes=4_000_000)
    for _ in range(4):
        tracker(files=1, bytes=1_000_000)
with progress_bar("Backfilling", unit="run", show_bytes=False) as runs:
    runs(total_files=3)
    runs(files=3)
print("counted", tracker.files, tracker.bytes, tracker.total_files, tracker.total_bytes, runs.files)
"""


def test_a_terminal_sees_counts_bytes_and_the_unit() -> None:
    drawn = run_on_terminal([sys.executable, "-c", SCRIPT])
    assert "Copying" in drawn
    assert "4/4 files" in drawn
    assert "4.0 MB" in drawn
    assert "3/3 runs" in drawn
    assert "counted 4 4000000 4 4000000 3" in drawn


def test_piped_output_has_no_progress_noise() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "counted 4 4000000 4 4000000 3\n"
    assert done.stderr == ""


def test_disabled_tracker_still_counts_and_ignores_unknown_keywords() -> None:
    from loopml.cli.progress import progress_bar

    with progress_bar("x", enabled=False) as tracker:
        tracker(total_files=2, total_bytes=10)
        tracker(files=1, bytes=4, phase="hashing")
        tracker(files=1, bytes=6)
    assert (tracker.files, tracker.bytes, tracker.total_files, tracker.total_bytes) == (
        2,
        10,
        2,
        10,
    )
