"""Pipelines: DAGs of tasks, run in parallel (threads, processes, Ray), cached, resumable,
backfilled by partition, and started by schedules, new data and events.

    from loopml import pipeline, run_pipeline, task

    @task(retries=2, retry_delay=1.0, timeout=600)
    def load(day: str) -> pd.DataFrame: ...

    @pipeline(schedule="0 3 * * *", partition="day")
    def train_churn(day: str):
        raw = load(day)
        model = train(build_features(raw))
        return register(model, evaluate(model, raw))

    run = run_pipeline(train_churn, params={"day": "2026-11-01"}, executor="threads")

Every pipeline run and task run is recorded in the metadata store (``loopml pipelines runs``,
``show-run``); each pipeline run is also a tracking run, active while its tasks run, so
``loopml.log_metric``, ``loopml.log_input`` and ``loopml.register_model`` inside a task land
on it (with lineage). Task outputs are stored by content hash (Parquet for tables) and reused
when a task's code and inputs are unchanged: a rerun or :func:`resume` only does new work.
"Code" is the task's source and what it uses: module-level values, project functions and
classes (followed transitively), the versions of the packages it calls
(:mod:`loopml.pipelines.fingerprint`); :func:`explain_cache` says why a task ran again.

A pipeline ends with a *gated promotion* by making it a task that calls the registry::

    @task
    def promote(version: int) -> str:
        try:
            loopml.promote("churn", version)        # the gate in loopml.toml decides
        except PromotionBlocked as blocked:
            return f"blocked: {blocked}"
        return "promoted"

(``examples/training_pipeline.py`` does this end to end.) Triggers (:func:`on_schedule`,
:func:`on_new_data`, :func:`on_event`) are run by ``loopml scheduler run``.

Errors are :class:`~loopml.exceptions.LoopmlError` subclasses, drawn in
:mod:`loopml.pipelines.exceptions`.
"""

from loopml.pipelines.backfill import backfill, partitions_between
from loopml.pipelines.context import TaskContext, current_task
from loopml.pipelines.dag import DAG, render_mermaid, render_text
from loopml.pipelines.events import Event, emit_event, list_events
from loopml.pipelines.exceptions import (
    ClusterUnavailable,
    CycleError,
    ExecutorClosed,
    InvalidSchedule,
    OutputNotStorable,
    PipelineDefinitionError,
    PipelineFailed,
    PipelineNotFound,
    PipelineRunNotFound,
    RunNotResumable,
    TaskFailed,
    TaskKilled,
    TaskOutputNotFound,
    TaskTimeout,
)
from loopml.pipelines.executors import Executor, InlineExecutor, ThreadExecutor
from loopml.pipelines.explain import CacheExplanation, explain_cache
from loopml.pipelines.pipeline import Pipeline, pipeline
from loopml.pipelines.records import PipelineRunRecord, TaskRunRecord
from loopml.pipelines.refs import load_pipeline
from loopml.pipelines.runner import (
    PipelineRun,
    TaskResult,
    get_pipeline_run,
    resume,
    run_pipeline,
)
from loopml.pipelines.scheduler import Scheduler
from loopml.pipelines.tasks import Handle, Task, TaskSpec, task
from loopml.pipelines.triggers import (
    NewData,
    OnEvent,
    Schedule,
    Trigger,
    on_event,
    on_new_data,
    on_schedule,
)
from loopml.pipelines.validate import validate

__all__ = [
    "validate",
    "DAG",
    "CacheExplanation",
    "ClusterUnavailable",
    "CycleError",
    "ExecutorClosed",
    "Event",
    "Executor",
    "Handle",
    "InlineExecutor",
    "InvalidSchedule",
    "NewData",
    "OnEvent",
    "OutputNotStorable",
    "Pipeline",
    "PipelineDefinitionError",
    "PipelineFailed",
    "PipelineNotFound",
    "PipelineRun",
    "PipelineRunNotFound",
    "PipelineRunRecord",
    "RunNotResumable",
    "Schedule",
    "Scheduler",
    "Task",
    "TaskContext",
    "TaskFailed",
    "TaskKilled",
    "TaskOutputNotFound",
    "TaskResult",
    "TaskRunRecord",
    "TaskSpec",
    "TaskTimeout",
    "ThreadExecutor",
    "Trigger",
    "backfill",
    "current_task",
    "emit_event",
    "explain_cache",
    "get_pipeline_run",
    "list_events",
    "load_pipeline",
    "on_event",
    "on_new_data",
    "on_schedule",
    "partitions_between",
    "pipeline",
    "render_mermaid",
    "render_text",
    "resume",
    "run_pipeline",
    "task",
]
