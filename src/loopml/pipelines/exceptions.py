"""The errors pipelines raise, each a :class:`~loopml.exceptions.LoopmlError`::

InvalidInput (ValueError)
├── PipelineDefinitionError   a task called outside a pipeline, a handle misused, bad options
│   ├── CycleError            the tasks depend on each other in a circle (the path is named)
│   └── InvalidSchedule       a cron expression that does not parse
└── InvalidValue
    └── OutputNotStorable     a task returned something loopml can't serialize (names it)
NotFound (LookupError)
├── PipelineNotFound          MODULE:NAME names no pipeline
│   └── PipelineImportError   its module has a syntax error, a failed import, or raised
├── PipelineRunNotFound       no pipeline run with that id
└── TaskOutputNotFound (KeyError)  no such task in the run, or it left no output
Conflict
├── RunNotResumable           the run is still running in a live process
└── ExecutorClosed (RuntimeError)  a task was submitted to an executor after close()
TaskFailed                    a task failed for good (after its retries); .task, .traceback
├── TaskTimeout (TimeoutError) a task ran past its timeout
└── TaskKilled                the process running a task died (killed, out of memory)
PipelineFailed                a pipeline run ended FAILED or KILLED; .run is its result
StoreUnavailable (OSError)
└── ClusterUnavailable        the executor's cluster (ray://host:port) can't be reached
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from loopml.exceptions import (
    Conflict,
    InvalidInput,
    InvalidValue,
    LoopmlError,
    NotFound,
    StoreUnavailable,
)
from loopml.wording import shown  # noqa: F401  (pipelines import it from here)

if TYPE_CHECKING:
    from loopml.pipelines.runner import PipelineRun


class PipelineDefinitionError(InvalidInput):
    """A pipeline or task is defined or called in a way that can't build a DAG."""


class CycleError(PipelineDefinitionError):
    """Tasks depend on each other in a circle; ``.cycle`` lists the nodes, first == last."""

    def __init__(self, message: str, cycle: list[str] | None = None) -> None:
        super().__init__(message)
        self.cycle = cycle or []


class InvalidSchedule(PipelineDefinitionError):
    """A cron expression (or its timezone) that does not parse."""


class OutputNotStorable(InvalidValue):
    """A task's return value can't be serialized to the blob store."""


class PipelineNotFound(NotFound):
    """A pipeline reference (``MODULE:NAME`` or ``path.py:NAME``) names no pipeline."""


class PipelineImportError(PipelineNotFound):
    """The module that defines a pipeline can't be imported: a syntax error, a failed import
    or an exception at import; the message names the file, the line and the error."""


class PipelineRunNotFound(NotFound):
    """No pipeline run with that id (or id prefix)."""


class TaskOutputNotFound(KeyError, NotFound):
    """``PipelineRun.output(node)``: the run has no task ``node``, or that task left no
    output (it failed or was skipped); the message names the tasks that have one."""

    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0]) if self.args else ""


class ExecutorClosed(RuntimeError, Conflict):
    """A task was submitted to an executor that was closed."""


class RunNotResumable(Conflict):
    """The pipeline run is still running in a live process, or cannot be reloaded."""


class TaskFailed(LoopmlError):
    """A task failed for good. ``task`` names it; ``traceback`` is the formatted traceback
    (from the worker process or Ray worker when it ran there)."""

    def __init__(self, message: str, task: str = "", traceback: str = "") -> None:
        super().__init__(message)
        self.task = task
        self.traceback = traceback


class TaskTimeout(TimeoutError, TaskFailed):
    """A task ran longer than its ``timeout``."""

    def __init__(self, message: str, task: str = "", traceback: str = "") -> None:
        TaskFailed.__init__(self, message, task, traceback)

    def __str__(self) -> str:  # OSError would format its args as (errno, strerror)
        return str(self.args[0]) if self.args else ""


class TaskKilled(TaskFailed):
    """The worker process running a task died before returning."""


class PipelineFailed(LoopmlError):
    """A pipeline run ended FAILED or KILLED. ``run`` is its :class:`PipelineRun`."""

    def __init__(self, message: str, run: PipelineRun | Any = None) -> None:
        super().__init__(message)
        self.run = run


class ClusterUnavailable(StoreUnavailable):
    """The cluster an executor runs tasks on (Ray at ``ray://host:port``) can't be reached."""
