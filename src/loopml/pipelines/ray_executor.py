"""The Ray executor: each task attempt is a Ray task, on the Ray cluster at ``address``
(``ray://host:port``), or on the cluster this process is already connected to, or on a local
one started on first use. Ray is imported here only; without it the error says how to
install it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import threading
import time
from collections import deque
from typing import Any

from loopml.exceptions import missing_dependency
from loopml.pipelines.context import RemoteError, dumps, run_in_worker
from loopml.pipelines.exceptions import ClusterUnavailable, ExecutorClosed, TaskKilled
from loopml.pipelines.executors import Done, Executor, Job, Outcome, failure, remote_failure


def _ray_call(payload: bytes, args: bytes) -> tuple[str, Any]:
    """Runs on a Ray worker: the task, with its value (or error) pickled by loopml so that
    an unpicklable result is reported as such, like in the process pool."""
    call_args, kwargs, context = pickle.loads(args)
    try:
        value = run_in_worker(payload, call_args, kwargs, context)
    except BaseException as exc:
        return "error", RemoteError.capture(exc)
    try:
        return "ok", dumps(value)
    except Exception as exc:
        return "unstorable", RemoteError.capture(exc)


def _unreachable(address: str | None, exc: BaseException) -> ClusterUnavailable:
    auth = ""
    if address and address.startswith("ray://") and os.environ.get("RAY_AUTH_MODE") != "token":
        # Ray >= 2.59 turns token authentication on for clusters started with `ray start`;
        # its client then only times out.
        auth = (
            " If the cluster uses token authentication (the default since Ray 2.59), set "
            "RAY_AUTH_MODE=token here, and RAY_AUTH_TOKEN unless ~/.ray/auth_token holds the "
            "cluster's token."
        )
    return ClusterUnavailable(
        f"Cannot reach the Ray cluster at {address or 'the address Ray found'}: {str(exc).rstrip('.')}. Is it "
        f"running (`ray start --head --ray-client-server-port PORT`)?{auth}"
    )


#: Attempts to connect to a ``ray://`` cluster whose client server answered but failed to
#: start this client's own server process (a loaded head: transient more often than not).
CONNECT_ATTEMPTS = 3


def _connect(ray: Any, address: str | None, kwargs: dict[str, Any]) -> None:
    """``ray.init(address, **kwargs)``; a ``ray://`` cluster that failed to start this
    client's server is asked again (``CONNECT_ATTEMPTS``, 1 s then 2 s apart). An address
    nothing answers on is not retried here: Ray's client already waits for it."""
    for attempt in range(1, CONNECT_ATTEMPTS + 1):
        try:
            ray.init(address=address, **kwargs)
            return
        except ConnectionError as exc:
            server_side = "Initialization failure from server" in str(exc)
            if not server_side or attempt == CONNECT_ATTEMPTS:
                raise _unreachable(address, exc) from exc
        with contextlib.suppress(Exception):
            ray.shutdown()
        time.sleep(attempt)


class RayExecutor(Executor):
    """Submits jobs as Ray tasks; ``max_workers`` (optional) caps how many run at once."""

    name = "ray"

    def __init__(self, address: str | None = None, max_workers: int | None = None) -> None:
        try:
            import ray
        except ImportError as exc:
            raise missing_dependency("ray", "ray", "The Ray executor (executor='ray')") from exc
        self._ray = ray
        self.address = address
        if address is not None:
            self.name = address
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"ignore_reinit_error": True, "log_to_driver": True}
            if address is None or not address.startswith("ray://"):
                kwargs["include_dashboard"] = False
            _connect(ray, address, kwargs)
        self.max_workers = max_workers or 0  # 0: as many as the cluster schedules
        self._remote = ray.remote(max_retries=0)(_ray_call)
        self._lock = threading.Lock()
        self._pending: deque[tuple[Job, Done]] = deque()
        self._running: dict[Any, tuple[Job, Done]] = {}
        self._payloads: dict[bytes, Any] = {}
        self._wake = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._collect, name="loopml-ray", daemon=True)
        self._thread.start()

    def submit(self, job: Job, done: Done) -> None:
        with self._lock:
            if self._closed:
                raise ExecutorClosed(
                    "The ray executor is closed: a closed executor takes no more tasks. "
                    'Create a new one, or pass its name (executor="ray") and let each run '
                    "open and close its own."
                )
            self._pending.append((job, done))
            self._launch()
        self._wake.set()

    def _launch(self) -> None:
        while self._pending and (not self.max_workers or len(self._running) < self.max_workers):
            job, done = self._pending.popleft()
            if job.cancelled:
                continue
            try:
                payload = job.payload() if job.payload is not None else b""
                key = hashlib.blake2b(payload, digest_size=16).digest()
                ref = self._payloads.get(key)
                if ref is None:
                    ref = self._payloads[key] = self._ray.put(payload)
                args = dumps((job.args, job.kwargs, job.context))
                result = self._remote.remote(ref, args)
            except Exception as exc:
                threading.Thread(target=done, args=(failure(job, exc),), daemon=True).start()
                continue
            job.started_at = time.monotonic()
            job.handle = result
            self._running[result] = (job, done)

    def cancel(self, job: Job) -> None:
        with self._lock:
            job.cancelled = True
            if job.handle is not None and job.handle in self._running:
                # It may have finished already, or the cluster may be gone.
                with contextlib.suppress(Exception):
                    self._ray.cancel(job.handle, force=True)

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self._wake.set()
        self._thread.join(timeout=10)

    def _collect(self) -> None:
        ray = self._ray
        while True:
            with self._lock:
                refs = list(self._running)
                closed = self._closed
            if not refs:
                if closed:
                    return
                self._wake.wait(0.5)
                self._wake.clear()
                continue
            ready, _ = ray.wait(refs, num_returns=1, timeout=0.05)
            if ready:  # take every other finished one too, without waiting
                more, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
                ready = list(dict.fromkeys([*ready, *more]))
            for ref in ready:
                with self._lock:
                    job, done = self._running.pop(ref)
                    self._launch()
                if job.cancelled:
                    continue
                done(self._outcome(job, ref))

    def _outcome(self, job: Job, ref: Any) -> Outcome:
        ray = self._ray
        try:
            kind, body = ray.get(ref)
        except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError) as exc:
            outcome = failure(
                job,
                TaskKilled(
                    f"The Ray worker running task {job.context.node!r} died before the task "
                    f"returned: {exc}",
                    task=job.context.node,
                ),
            )
            outcome.killed = True
            return outcome
        except Exception as exc:
            return failure(job, exc)
        if kind == "ok":
            return Outcome(job, True, pickle.loads(body))
        outcome = remote_failure(job, body)
        outcome.unstorable = kind == "unstorable"
        return outcome
