"""Executors: where task calls run. The seam is :class:`Executor` (``submit``, ``cancel``,
``close``); outcomes come back through the ``done`` callback given to ``submit``, from any
thread.

=====================  ===========================================================
``"inline"``           in the calling thread, one at a time (debugging; no timeouts)
``"threads"``          a pool of threads in this process (the default)
``"processes"``        a pool of worker processes (CPU-bound Python code)
``"ray"``              Ray tasks on a local Ray cluster (started if none is running)
``"ray://host:port"``  Ray tasks on the Ray cluster at that address
=====================  ===========================================================

A timed-out call is abandoned by ``threads`` (Python can't stop a thread: it runs on, its
result is ignored, and a fresh thread takes its place), killed by ``processes`` (its worker
process is terminated and replaced) and cancelled by Ray (``ray.cancel(force=True)``).
"""

from __future__ import annotations

import abc
import os
import queue
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from loopml.exceptions import InvalidInput
from loopml.pipelines.context import RemoteError, TaskContext, run_in_process
from loopml.pipelines.exceptions import ExecutorClosed

if TYPE_CHECKING:
    from loopml.workspace import Workspace

EXECUTORS = ("inline", "threads", "processes", "ray")


@dataclass(eq=False)
class Job:
    """One attempt of one task: the function, its resolved arguments and its context."""

    id: int
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    context: TaskContext
    workspaces: Sequence[Workspace] = ()  # whose active run is the pipeline's, in-process
    payload: Callable[[], bytes] | None = None  # the function pickled, for other processes
    started_at: float | None = None  # monotonic; set by the executor when it begins
    cancelled: bool = False
    handle: Any = field(default=None, repr=False)  # executor-specific

    def call(self) -> Any:
        return run_in_process(self.fn, self.args, self.kwargs, self.context, self.workspaces)


@dataclass
class Outcome:
    """How an attempt ended: ``value`` when ``ok``; else ``error`` (with ``traceback`` text).
    ``killed`` means the worker process died; ``unstorable`` that the value could not be
    sent back from another process."""

    job: Job
    ok: bool
    value: Any = None
    error: BaseException | None = None
    traceback: str = ""
    killed: bool = False
    unstorable: bool = False


Done = Callable[[Outcome], None]


def failure(job: Job, exc: BaseException) -> Outcome:
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return Outcome(job, False, error=exc, traceback=text)


def remote_failure(job: Job, error: RemoteError) -> Outcome:
    return Outcome(job, False, error=error.rebuild(), traceback=error.traceback)


class Executor(abc.ABC):
    """Runs jobs. ``submit`` must not block on the job; ``cancel`` stops (or abandons) a
    running job without reporting its outcome; ``close`` releases workers."""

    name = "executor"
    max_workers = 1

    @abc.abstractmethod
    def submit(self, job: Job, done: Done) -> None: ...

    def cancel(self, job: Job) -> None:  # noqa: B027 - nothing to stop by default
        job.cancelled = True

    def close(self) -> None:  # noqa: B027 - nothing to release by default
        """Release the executor's workers."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} max_workers={self.max_workers}>"


class InlineExecutor(Executor):
    """Runs each job at once in the submitting thread: no concurrency and no timeouts."""

    name = "inline"

    def submit(self, job: Job, done: Done) -> None:
        job.started_at = time.monotonic()
        try:
            value = job.call()
        except Exception as exc:
            done(failure(job, exc))
            return
        done(Outcome(job, True, value))


class ThreadExecutor(Executor):
    """A pool of daemon threads that grows to ``max_workers``. A cancelled (timed-out) job's
    thread is replaced at once, and left to finish on its own, its result ignored."""

    name = "threads"

    def __init__(self, max_workers: int | None = None) -> None:
        self.max_workers = max_workers or min(32, (os.cpu_count() or 1) + 4)
        if self.max_workers < 1:
            raise InvalidInput(f"max_workers must be at least 1, got {max_workers}")
        self._queue: queue.SimpleQueue[tuple[Job, Done] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._live = 0  # threads that still count towards max_workers
        self._busy = 0
        self._pending = 0
        self._closed = False

    def submit(self, job: Job, done: Done) -> None:
        with self._lock:
            if self._closed:
                raise ExecutorClosed(
                    "The threads executor is closed: a closed executor takes no more tasks. "
                    'Create a new one, or pass its name (executor="threads") and let each run '
                    "open and close its own."
                )
            self._pending += 1
            self._queue.put((job, done))
            self._grow()

    def _grow(self) -> None:
        while self._live < self.max_workers and self._pending > self._live - self._busy:
            self._live += 1
            threading.Thread(target=self._work, name="loopml-task", daemon=True).start()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            job, done = item
            with self._lock:
                self._pending -= 1
                if job.cancelled:
                    continue
                self._busy += 1
                job.handle = threading.current_thread()
            job.started_at = time.monotonic()
            try:
                outcome = Outcome(job, True, job.call())
            except BaseException as exc:  # a task's SystemExit must not kill the pool
                outcome = failure(job, exc)
            with self._lock:
                if job.cancelled:  # abandoned: a replacement thread was started; leave
                    return
                self._busy -= 1
                job.handle = None
            done(outcome)

    def cancel(self, job: Job) -> None:
        with self._lock:
            job.cancelled = True
            if job.handle is not None:  # running: abandon this thread, start another
                self._busy -= 1
                self._live -= 1
                self._grow()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for _ in range(self._live):
                self._queue.put(None)


def resolve_executor(
    executor: str | Executor | None, max_workers: int | None = None
) -> tuple[Executor, bool]:
    """An executor from its name or URL; the flag says whether the caller owns (closes) it."""
    if isinstance(executor, Executor):
        return executor, False
    spec = (executor or "threads").strip()
    if spec == "inline":
        return InlineExecutor(), True
    if spec in ("threads", "thread"):
        return ThreadExecutor(max_workers), True
    if spec in ("processes", "process"):
        from loopml.pipelines.process_pool import ProcessExecutor

        return ProcessExecutor(max_workers), True
    if spec == "ray" or spec.startswith("ray://"):
        from loopml.pipelines.ray_executor import RayExecutor

        return RayExecutor(None if spec == "ray" else spec, max_workers), True
    raise InvalidInput(
        f"Unknown executor {spec!r}: use one of {', '.join(EXECUTORS)}, or ray://host:port "
        "for a remote Ray cluster."
    )
