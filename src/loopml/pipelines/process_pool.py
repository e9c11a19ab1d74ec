"""The ``processes`` executor: a pool of worker processes, each fed one job at a time over
its own pipe, so a timed-out job's process can be killed (and replaced) without touching the
others, and a worker that dies is reported as :class:`TaskKilled` for the job it was running.

Workers start with the ``forkserver`` method where there is one (``spawn`` elsewhere), so a
script that runs a pipeline with this executor needs the usual
``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import signal
import threading
import time
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from loopml.exceptions import InvalidInput
from loopml.pipelines.context import RemoteError, dumps, run_in_worker
from loopml.pipelines.exceptions import ExecutorClosed, OutputNotStorable, TaskKilled
from loopml.pipelines.executors import Done, Executor, Job, Outcome, failure, remote_failure

_STOP = b""


@dataclass(eq=False)
class _Worker:
    process: Any
    conn: Connection
    job: Job | None = None
    done: Done | None = None


def _default_method() -> str:
    methods = multiprocessing.get_all_start_methods()
    return "forkserver" if "forkserver" in methods else "spawn"


class ProcessExecutor(Executor):
    """Runs jobs in up to ``max_workers`` worker processes (default: one per CPU)."""

    name = "processes"

    def __init__(self, max_workers: int | None = None, start_method: str | None = None) -> None:
        self.max_workers = max_workers or os.cpu_count() or 1
        if self.max_workers < 1:
            raise InvalidInput(f"max_workers must be at least 1, got {max_workers}")
        self._mp = multiprocessing.get_context(start_method or _default_method())
        self._lock = threading.Lock()
        self._pending: deque[tuple[Job, Done]] = deque()
        self._workers: list[_Worker] = []
        self._wake_r, self._wake_w = self._mp.Pipe(duplex=False)
        self._thread: threading.Thread | None = None
        self._closed = False

    # -- the seam --------------------------------------------------------------------------

    def submit(self, job: Job, done: Done) -> None:
        with self._lock:
            if self._closed:
                raise ExecutorClosed(
                    "The processes executor is closed: a closed executor takes no more tasks. "
                    'Create a new one, or pass its name (executor="processes") and let each run '
                    "open and close its own."
                )
            self._pending.append((job, done))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._collect, name="loopml-process-pool", daemon=True
                )
                self._thread.start()
        self._wake()

    def cancel(self, job: Job) -> None:
        with self._lock:
            job.cancelled = True
            for worker in self._workers:
                if worker.job is job:
                    worker.process.kill()  # the collector sees it die and replaces it
        self._wake()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            workers = list(self._workers)
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout=10)
        for worker in workers:
            worker.process.join(timeout=2)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(timeout=2)
        self._wake_r.close()
        self._wake_w.close()

    # -- the collector thread --------------------------------------------------------------

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send_bytes(b"!")

    def _collect(self) -> None:
        while True:
            with self._lock:
                if self._closed:
                    self._stop_all()
                    return
                sends = self._dispatch()
            for worker, job, data in sends:
                self._send(worker, job, data)
            with self._lock:
                waitables: list[Any] = [self._wake_r]
                for worker in self._workers:
                    waitables.append(worker.process.sentinel)
                    if worker.job is not None:
                        waitables.append(worker.conn)
            for ready in wait(waitables, timeout=5.0):
                if ready is self._wake_r:
                    self._drain_wakeups()
                else:
                    self._on_ready(ready)

    def _dispatch(self) -> list[tuple[_Worker, Job, bytes | BaseException]]:
        """Hand pending jobs to idle workers (starting workers up to the limit)."""
        sends: list[tuple[_Worker, Job, bytes | BaseException]] = []
        while self._pending:
            idle = next((w for w in self._workers if w.job is None), None)
            if idle is None and len(self._workers) >= self.max_workers:
                break
            job, done = self._pending.popleft()
            if job.cancelled:
                continue
            if idle is None:
                idle = self._start_worker()
            try:
                payload = job.payload() if job.payload is not None else b""
                data: bytes | BaseException = dumps(
                    (job.id, payload, job.args, job.kwargs, job.context)
                )
            except Exception as exc:
                data = OutputNotStorable(
                    f"The inputs of task {job.context.node!r} can't be sent to a worker process "
                    f"({type(exc).__name__}: {exc}). Use executor='threads' for it."
                )
            idle.job, idle.done = job, done
            sends.append((idle, job, data))
        return sends

    def _send(self, worker: _Worker, job: Job, data: bytes | BaseException) -> None:
        if isinstance(data, BaseException):
            self._finish(worker, failure(job, data))
            return
        job.started_at = time.monotonic()
        with contextlib.suppress(OSError):  # a dead worker is reported by its sentinel
            worker.conn.send_bytes(data)

    def _start_worker(self) -> _Worker:
        parent, child = self._mp.Pipe()
        process = self._mp.Process(  # type: ignore[attr-defined]
            target=_worker_main, args=(child,), name="loopml-task-worker", daemon=True
        )
        process.start()
        child.close()
        worker = _Worker(process, parent)
        self._workers.append(worker)
        return worker

    def _drain_wakeups(self) -> None:
        while self._wake_r.poll():
            try:
                self._wake_r.recv_bytes()
            except (EOFError, OSError):
                return

    def _on_ready(self, ready: Any) -> None:
        with self._lock:
            worker = next(
                (w for w in self._workers if ready is w.conn or ready == w.process.sentinel),
                None,
            )
        if worker is None:
            return
        if ready is worker.conn:
            try:
                data = worker.conn.recv_bytes()
            except (EOFError, OSError):
                self._on_death(worker)
                return
            job = worker.job
            if job is None:
                return
            kind, _job_id, body = pickle.loads(data)
            if kind == "ok":
                outcome = Outcome(job, True, body)
            elif kind == "unstorable":
                outcome = remote_failure(job, body)
                outcome.unstorable = True
            else:
                outcome = remote_failure(job, body)
            self._finish(worker, outcome)
        else:
            self._on_death(worker)

    def _finish(self, worker: _Worker, outcome: Outcome) -> None:
        with self._lock:
            done, worker.job, worker.done = worker.done, None, None
        if done is not None and not outcome.job.cancelled:
            done(outcome)

    def _on_death(self, worker: _Worker) -> None:
        worker.process.join(timeout=1)
        with self._lock:
            if worker in self._workers:
                self._workers.remove(worker)
            job, done = worker.job, worker.done
            worker.job = worker.done = None
        worker.conn.close()
        if job is None or done is None or job.cancelled:
            return
        code = worker.process.exitcode
        how = f"exit code {code}"
        if code is not None and code < 0:
            try:
                how = f"signal {signal.Signals(-code).name}"
            except ValueError:
                how = f"signal {-code}"
        error = TaskKilled(
            f"The worker process running task {job.context.node!r} (pid {worker.process.pid}) "
            f"died with {how} before the task returned (killed, or out of memory?).",
            task=job.context.node,
        )
        outcome = failure(job, error)
        outcome.killed = True
        done(outcome)

    def _stop_all(self) -> None:
        for worker in self._workers:
            with contextlib.suppress(OSError):
                worker.conn.send_bytes(_STOP)


def _worker_main(conn: Connection) -> None:
    """A worker process: run jobs from ``conn`` until told to stop or the parent goes away."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the parent to handle
    while True:
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            return
        if data == _STOP:
            return
        job_id, payload, args, kwargs, context = pickle.loads(data)
        try:
            value = run_in_worker(payload, args, kwargs, context)
        except BaseException as exc:
            reply = dumps(("error", job_id, RemoteError.capture(exc)))
        else:
            try:
                reply = dumps(("ok", job_id, value))
            except Exception as exc:
                reply = dumps(("unstorable", job_id, RemoteError.capture(exc)))
        try:
            conn.send_bytes(reply)
        except (OSError, ValueError):
            return
