"""What a running task knows about itself, and how a task call runs on a worker.

Inside a task, :func:`current_task` says which pipeline run, node and attempt this is, and
``loopml.log_metric`` (and friends) log to the pipeline run's tracking run, whether the task
runs in a thread, in a worker process or on a Ray worker.
"""

from __future__ import annotations

import contextlib
import contextvars
import pickle
import threading
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from loopml.tracking import Run
    from loopml.workspace import Workspace


@dataclass(frozen=True)
class TaskContext:
    """The pipeline run, node and attempt of the running task (see :func:`current_task`)."""

    pipeline: str
    pipeline_run_id: str
    node: str
    task: str
    attempt: int
    partition: str | None = None
    tracking_run_id: str | None = None
    tracking_run_name: str = ""
    experiment_id: int = 0
    experiment: str = ""
    # Where a worker process reaches the workspace (None for a store only this process sees).
    store_url: str | None = None
    artifacts_url: str | None = None
    _run: Any = field(default=None, compare=False, repr=False)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_run"] = None  # the live Run object stays in the process that started it
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    @property
    def run(self) -> Run | None:
        """The pipeline run's tracking run (log params, metrics and artifacts to it)."""
        if self._run is not None:
            run: Run = self._run
            return run
        return _worker_run(self)


_CURRENT: contextvars.ContextVar[TaskContext | None] = contextvars.ContextVar(
    "loopml_task_context", default=None
)


def current_task() -> TaskContext | None:
    """The context of the task running in this thread, or None outside a task."""
    return _CURRENT.get()


def run_in_process(
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    context: TaskContext,
    workspaces: Sequence[Workspace] = (),
) -> Any:
    """Call a task in this process, with its context set and the pipeline's tracking run
    active in this thread for each of ``workspaces`` (the pipeline's, and the default one
    that ``loopml.log_metric`` and friends use), so module-level logging lands there."""
    token = _CURRENT.set(context)
    try:
        with contextlib.ExitStack() as active:
            # Active runs are per thread: a worker thread gets the pipeline's run for the task.
            if context._run is not None:
                for ws in workspaces:
                    active.enter_context(ws.runs.activate(context._run))
            return fn(*args, **kwargs)
    finally:
        _CURRENT.reset(token)


def default_workspace_or_none() -> Workspace | None:
    """The default workspace, or None when there is none to find (no loopml.toml here)."""
    from loopml.exceptions import LoopmlError
    from loopml.workspace import default_workspace

    try:
        return default_workspace()
    except LoopmlError:
        return None


# -- out of process (worker processes, Ray workers) ------------------------------------------


def dumps(value: Any) -> bytes:
    """pickle, falling back to cloudpickle (lambdas, classes defined in ``__main__``)."""
    try:
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        import cloudpickle

        return bytes(cloudpickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))


def function_payload(fn: Callable[..., Any]) -> bytes:
    """``fn`` pickled by value with cloudpickle, so a worker that can't import the module it
    came from (a script, a file loaded by path, a test module) can still run it."""
    import sys

    import cloudpickle

    module = sys.modules.get(getattr(fn, "__module__", "") or "")
    by_value = (
        module is not None
        and module.__name__ != "__main__"
        and not module.__name__.startswith("loopml.")
    )
    if by_value:
        try:
            cloudpickle.register_pickle_by_value(module)
        except ValueError:
            by_value = False
    try:
        return bytes(cloudpickle.dumps(fn, protocol=pickle.HIGHEST_PROTOCOL))
    finally:
        if by_value:
            cloudpickle.unregister_pickle_by_value(module)


_functions: dict[bytes, Callable[..., Any]] = {}
_workspaces: dict[tuple[str, str], Workspace] = {}
_lock = threading.Lock()


def run_in_worker(
    payload: bytes, args: tuple[Any, ...], kwargs: dict[str, Any], context: TaskContext
) -> Any:
    """Call a task shipped to another process (by the process pool or Ray)."""
    import hashlib

    key = hashlib.blake2b(payload, digest_size=16).digest()
    fn = _functions.get(key)
    if fn is None:
        fn = pickle.loads(payload)
        _functions[key] = fn
    workspace = _worker_workspace(context)
    run = _worker_run(context, workspace) if workspace is not None else None
    context = _with_run(context, run)
    try:
        return run_in_process(fn, args, kwargs, context, [workspace] if workspace else [])
    finally:
        if workspace is not None:
            workspace.runs.flush()


def _with_run(context: TaskContext, run: Run | None) -> TaskContext:
    if run is None:
        return context
    clone = TaskContext.__new__(TaskContext)
    clone.__dict__.update(context.__dict__)
    object.__setattr__(clone, "_run", run)
    return clone


def _worker_workspace(context: TaskContext) -> Workspace | None:
    if context.store_url is None or context.artifacts_url is None:
        return None
    key = (context.store_url, context.artifacts_url)
    with _lock:
        workspace = _workspaces.get(key)
        if workspace is None:
            from loopml.workspace import Workspace, set_default_workspace

            workspace = Workspace.open(
                store_url=context.store_url, artifacts_url=context.artifacts_url
            )
            _workspaces[key] = workspace
            set_default_workspace(workspace)
    return workspace


def _worker_run(context: TaskContext, workspace: Workspace | None = None) -> Run | None:
    if context.tracking_run_id is None:
        return None
    workspace = workspace or _worker_workspace(context)
    if workspace is None:
        return None
    from loopml.tracking import Run

    return Run(
        workspace.runs,
        context.tracking_run_id,
        context.tracking_run_name,
        context.experiment_id,
        context.experiment,
    )


@dataclass
class RemoteError:
    """A task's exception as it crosses a process boundary (the exception itself may not
    pickle): its type, message and formatted traceback."""

    type_name: str
    message: str
    traceback: str
    exception: bytes | None = None

    @classmethod
    def capture(cls, exc: BaseException) -> RemoteError:
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        blob: bytes | None
        try:
            blob = pickle.dumps(exc)
            pickle.loads(blob)
        except Exception:
            blob = None
        return cls(type(exc).__qualname__, str(exc), text, blob)

    def rebuild(self) -> BaseException:
        if self.exception is not None:
            # An exception class missing on this side can't be unpickled: fall back to text.
            with contextlib.suppress(Exception):
                exc = pickle.loads(self.exception)
                if isinstance(exc, BaseException):
                    return exc
        return RuntimeError(f"{self.type_name}: {self.message}")
