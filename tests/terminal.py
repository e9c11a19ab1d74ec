"""Run a command on a real pseudo-terminal, as a person at a terminal would, and return
everything it drew (progress bars only appear there)."""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path


def run_on_terminal(
    argv: Sequence[str], cwd: str | Path | None = None, columns: int = 120, timeout: float = 120
) -> str:
    """Run ``argv`` with stdout and stderr on one pseudo-terminal; assert it exits 0 and
    return what it drew, decoded."""
    main, child = os.openpty()
    proc = subprocess.Popen(
        list(argv),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=child,
        stderr=child,
        env={**os.environ, "COLUMNS": str(columns), "TERM": "xterm-256color"},
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
    try:
        code = proc.wait(timeout=timeout)
    finally:
        reader.join(timeout=60)
        os.close(main)
    drawn = b"".join(chunks).decode(errors="replace")
    assert code == 0, drawn[-2000:]
    return drawn
