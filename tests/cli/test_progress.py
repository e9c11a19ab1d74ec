"""The progress bar: drawn on a terminal (a real pseudo-terminal here), silent when piped."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

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


def _on_pty(code: str) -> str:
    """Run ``code`` with stdout and stderr on one pseudo-terminal; everything it drew."""
    main, child = os.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.DEVNULL,
        stdout=child,
        stderr=child,
        env={**os.environ, "COLUMNS": "120", "TERM": "xterm"},
    )
    os.close(child)
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(main, 65536)
            except OSError:  # EIO once the child side is closed
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain)
    reader.start()
    assert proc.wait(timeout=60) == 0
    reader.join(timeout=60)
    os.close(main)
    return b"".join(chunks).decode(errors="replace")


def test_a_terminal_sees_counts_bytes_and_the_unit() -> None:
    drawn = _on_pty(SCRIPT)
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
