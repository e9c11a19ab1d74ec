"""Optional sampling of system metrics (``system/*``) while a run is active."""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Callable

import psutil

from loopml.exceptions import RunNotActive, StoreUnavailable


def gpu_utilization() -> dict[str, float]:
    if shutil.which("nvidia-smi") is None:
        return {}
    try:
        out = subprocess.run(
            [
                "nvidia-smi",
                "--query-gpu=utilization.gpu,memory.used",
                "--format=csv,noheader,nounits",
            ],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    result: dict[str, float] = {}
    for i, line in enumerate(out.strip().splitlines()):
        parts = [p.strip() for p in line.split(",")]
        try:
            result[f"system/gpu{i}_utilization_percent"] = float(parts[0])
            result[f"system/gpu{i}_memory_used_mb"] = float(parts[1])
        except (IndexError, ValueError):
            continue
    return result


def sample(process: psutil.Process) -> dict[str, float]:
    memory = psutil.virtual_memory()
    values = {
        "system/cpu_percent": psutil.cpu_percent(interval=None),
        "system/memory_percent": memory.percent,
        "system/process_rss_mb": process.memory_info().rss / 2**20,
    }
    values.update(gpu_utilization())
    return values


class SystemMetricsSampler:
    """Calls ``log(values, step)`` every ``interval`` seconds from a daemon thread."""

    def __init__(self, log: Callable[[dict[str, float], int], None], interval: float) -> None:
        self._log = log
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name="loopml-system-metrics", daemon=True
        )

    def start(self) -> SystemMetricsSampler:
        psutil.cpu_percent(interval=None)  # prime the CPU counter
        self._thread.start()
        return self

    def _loop(self) -> None:
        process = psutil.Process()
        step = 0
        while not self._stop.wait(self._interval):
            try:
                self._log(sample(process), step)
            except (RunNotActive, StoreUnavailable):  # the run ended, or the store went away
                return
            step += 1

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=self._interval + 1)
