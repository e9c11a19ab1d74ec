"""Running per-file work on a thread pool: BLAKE3 hashing and file I/O release the GIL."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


LARGE_FILE = 64 << 10  # below this average size, per-file Python work dominates: one thread


def default_jobs(io_bound: bool = False) -> int:
    """Threads for local hashing (one per core), or for network transfers."""
    return 16 if io_bound else min(16, os.cpu_count() or 2)


def threads_for(requested: int | None, total_bytes: int, count: int) -> int:
    """Threads for local work on ``count`` files of ``total_bytes``: what was asked for, else
    one per core for large files (hashing and copying release the GIL) and a single thread
    for small ones (there, thread hand-offs cost more than the work: measured 0.45 s on one
    thread vs 0.7 s on four for 5,000 files of 4 KB)."""
    if requested:
        return requested
    return default_jobs() if count and total_bytes >= LARGE_FILE * count else 1


def parallel_map(fn: Callable[[T], R], items: list[T], jobs: int) -> list[R]:
    """``[fn(x) for x in items]`` on up to ``jobs`` threads, in order; inline for one item.

    The first exception cancels the work not yet started and is raised once the running
    calls have finished (so none of them is left writing in the background).
    """
    if len(items) <= 1 or jobs <= 1:
        return [fn(item) for item in items]
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=min(jobs, len(items)))
    try:
        futures = [pool.submit(fn, item) for item in items]
        return [f.result() for f in futures]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
