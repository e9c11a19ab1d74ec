"""Running a pipeline: tasks start as soon as their inputs are ready, failed attempts are
retried with exponential backoff, a timed-out attempt fails, a task that fails for good skips
its downstream tasks while independent branches finish, and every step is recorded.

    run = run_pipeline(train_churn, params={"day": "2026-11-01"}, executor="threads")
    run.status, run.output("train")

Each pipeline run is also a tracking run (experiment: the pipeline's), active while its tasks
run, so ``loopml.log_metric`` inside a task lands there.
"""

from __future__ import annotations

import contextlib
import json
import threading
import traceback
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, update

from loopml.exceptions import LoopmlError
from loopml.pipelines import cache, records
from loopml.pipelines.exceptions import (
    PipelineFailed,
    RunNotResumable,
    TaskOutputNotFound,
)
from loopml.pipelines.execution import Execution, TaskResult
from loopml.pipelines.executors import Executor, resolve_executor
from loopml.pipelines.records import (
    FAILED,
    FINISHED,
    KILLED,
    QUEUED,
    RUNNING,
    SKIPPED,
)
from loopml.pipelines.tables import pipeline_runs
from loopml.workspace import resolve_workspace

if TYPE_CHECKING:
    from loopml.pipelines.pipeline import Build, Pipeline
    from loopml.tracking import Run
    from loopml.workspace import Workspace, WorkspaceLike


@dataclass
class PipelineRun:
    """The outcome of a pipeline run: status, params, the tracking run and every task."""

    id: str
    pipeline: str
    status: str
    params: dict[str, Any]
    partition: str | None
    tracking_run_id: str | None
    error: str | None
    tasks: dict[str, TaskResult]
    _workspace: Workspace = field(repr=False)
    _values: dict[str, Any] = field(default_factory=dict, repr=False)
    _returned: Any = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.status == FINISHED

    def failed_tasks(self) -> list[str]:
        return [n for n, t in self.tasks.items() if t.status == FAILED]

    def output(self, node: str) -> Any:
        """The output of task ``node`` (loaded from the store if not in memory)."""
        if node in self._values:
            return self._values[node]
        if node not in self.tasks:
            raise TaskOutputNotFound(
                f"Pipeline run {self.id[:8]} of {self.pipeline!r} has no task {node!r}; its "
                f"tasks are: {', '.join(self.tasks) or 'none'}."
            )
        value = load_output(self._workspace, self.id, node)
        self._values[node] = value
        return value

    @property
    def result(self) -> Any:
        """What the pipeline function returned, each task handle replaced by its output."""
        from loopml.pipelines.tasks import Handle

        def walk(value: Any) -> Any:
            if isinstance(value, Handle):
                return self.output(value.node)
            if isinstance(value, list | tuple):
                return type(value)(walk(v) for v in value)
            if isinstance(value, dict):
                return {k: walk(v) for k, v in value.items()}
            return value

        return walk(self._returned)

    def raise_for_status(self) -> PipelineRun:
        if self.status != FINISHED:
            raise PipelineFailed(failure_message(self), self)
        return self


def failure_message(run: PipelineRun) -> str:
    failed = run.failed_tasks()
    skipped = [n for n, t in run.tasks.items() if t.status == SKIPPED]
    parts = [f"Pipeline run {run.id[:8]} of {run.pipeline!r} is {run.status}"]
    for node in failed:
        error = run.tasks[node].error or ""
        parts.append(f"task {node!r} failed: {error}")
    if skipped:
        parts.append(f"skipped downstream: {', '.join(skipped)}")
    if not failed and run.error:
        parts.append(run.error.splitlines()[0])
    text = "; ".join(part.rstrip(".") for part in parts)
    return text + f". Fix it and run `loopml pipelines resume {run.id[:8]}`."


def load_output(workspace: Workspace, run_id: str, node: str) -> Any:
    rows = records.task_rows(workspace.db, run_id)
    row = rows.get(node)
    if row is None or row.output_digest is None:
        with_output = [n for n, r in rows.items() if r.output_digest is not None]
        why = f"it is {row.status}" if row is not None else "it is not one of its tasks"
        raise TaskOutputNotFound(
            f"Task {node!r} of pipeline run {run_id[:8]} has no output: {why}. Tasks with an "
            f"output: {', '.join(with_output) or 'none'}."
        )
    return cache.load(workspace.blobs, row.output_format, row.output_digest, row.output_inline)


# -- public entry points ---------------------------------------------------------------------


def run_pipeline(
    pipeline: Pipeline | str,
    params: Mapping[str, Any] | None = None,
    *,
    executor: str | Executor = "threads",
    max_workers: int | None = None,
    cache: bool = True,
    workspace: WorkspaceLike = None,
    raise_on_failure: bool = True,
    log_environment: bool | None = None,
    tags: Mapping[str, Any] | None = None,
    trigger: str = "manual",
    trigger_detail: Mapping[str, Any] | None = None,
) -> PipelineRun:
    """Run a pipeline once and record it; returns its :class:`PipelineRun`.

    ``executor``: ``"threads"`` (default), ``"processes"``, ``"inline"``, ``"ray"``,
    ``"ray://host:port"`` or an :class:`Executor`. ``cache=False`` reruns every task even
    when an identical call (same code, same inputs) already completed. A run that fails
    raises :class:`PipelineFailed` (its ``.run`` has the details) unless
    ``raise_on_failure=False``.
    """
    from loopml.pipelines.refs import load_pipeline

    ws = resolve_workspace(workspace)
    pipe = load_pipeline(pipeline, ws.root)
    values = pipe.bind(params)
    build = pipe.build(values)
    run_id = uuid.uuid4().hex
    partition = pipe.partition_of(values)

    def create(conn: Connection) -> None:
        records.insert_run(
            conn,
            id=run_id,
            pipeline=pipe.name,
            ref=pipe.ref,
            status=QUEUED,
            params=records.params_json(values),
            partition=partition,
            trigger=trigger,
            trigger_detail=records.params_json(dict(trigger_detail)) if trigger_detail else None,
            owner=records.owner_token(),
            heartbeat_at=records.now_ms(),
        )

    pool, owned = resolve_executor(executor, max_workers)  # a bad name fails before any record
    try:
        ws.db.transact(create)
        return _execute(
            ws,
            pipe,
            build,
            run_id,
            executor=pool,
            max_workers=max_workers,
            use_cache=cache,
            raise_on_failure=raise_on_failure,
            log_environment=log_environment,
            tags=tags,
        )
    finally:
        if owned:
            pool.close()


def run_queued(
    workspace: Workspace,
    run_id: str,
    pipeline: Pipeline | None = None,
    *,
    executor: str | Executor = "threads",
    max_workers: int | None = None,
    cache: bool = True,
    raise_on_failure: bool = False,
) -> PipelineRun:
    """Execute a run recorded as QUEUED (a scheduler's claim), or resume one."""
    return resume(
        run_id,
        executor=executor,
        max_workers=max_workers,
        cache=cache,
        workspace=workspace,
        pipeline=pipeline,
        raise_on_failure=raise_on_failure,
    )


def resume(
    run_id: str,
    *,
    executor: str | Executor | None = None,
    max_workers: int | None = None,
    cache: bool = True,
    workspace: WorkspaceLike = None,
    pipeline: Pipeline | str | None = None,
    raise_on_failure: bool = True,
) -> PipelineRun:
    """Resume a failed or killed pipeline run under the same id: every task that completed
    (and whose code and inputs are unchanged) is reused, the rest runs.

    A run whose process died while RUNNING is noticed and resumed; a run still running in a
    live process raises :class:`RunNotResumable`. A finished run is returned as it is.
    """
    from loopml.pipelines.refs import load_pipeline

    ws = resolve_workspace(workspace)
    full_id = records.resolve_run_id(ws.db, run_id)
    records.reap_stale(ws.db, [full_id])
    record = records.get_run(ws.db, full_id)
    if record.status == RUNNING:
        raise RunNotResumable(
            f"Pipeline run {full_id[:8]} is still running (in {record.owner}); wait for it, or "
            "stop that process first."
        )
    if pipeline is None:
        if not record.ref:
            raise RunNotResumable(
                f"Pipeline run {full_id[:8]} does not record where its pipeline is defined: "
                "pass pipeline=... to resume it."
            )
        pipe = load_pipeline(record.ref, ws.root)
    else:
        pipe = load_pipeline(pipeline, ws.root)
    if record.status == FINISHED:
        return _result_from_record(ws, record)
    build = pipe.build(decode_params(pipe, record.params))
    pool, owned = resolve_executor(executor or _recorded_executor(record.executor), max_workers)
    try:
        return _execute(
            ws,
            pipe,
            build,
            full_id,
            executor=pool,
            max_workers=max_workers,
            use_cache=cache,
            raise_on_failure=raise_on_failure,
            log_environment=None,
            tags=None,
            resuming=record,
        )
    finally:
        if owned:
            pool.close()


def decode_params(pipe: Pipeline, params: Mapping[str, Any]) -> dict[str, Any]:
    """Params read back from a run record (JSON) with their types restored: a ``date`` param
    was stored as its ISO text."""
    decoded: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, str) and key in pipe.signature.parameters:
            decoded[key] = pipe.coerce({key: value})[key]
        else:
            decoded[key] = value
    return decoded


def _recorded_executor(name: str | None) -> str:
    if name in ("inline", "threads", "processes", "ray") or (name or "").startswith("ray://"):
        return str(name)
    return "threads"


def _default_workspace() -> Workspace:
    from loopml.workspace import default_workspace

    return default_workspace()


def _execute(
    ws: Workspace,
    pipe: Pipeline,
    build: Build,
    run_id: str,
    *,
    executor: str | Executor,
    max_workers: int | None,
    use_cache: bool,
    raise_on_failure: bool,
    log_environment: bool | None,
    tags: Mapping[str, Any] | None,
    resuming: records.PipelineRunRecord | None = None,
) -> PipelineRun:
    values = build.params
    partition = pipe.partition_of(values)
    pool, owned = resolve_executor(executor, max_workers)
    previous: dict[str, Any] = {}
    attempt = 1
    if resuming is not None:
        previous = records.task_rows(ws.db, run_id) if resuming.status != QUEUED else {}
        attempt = resuming.attempt + (0 if resuming.status == QUEUED else 1)
    try:
        tracking = _tracking_run(
            ws, pipe, run_id, values, partition, resuming, log_environment, tags
        )
    except BaseException as exc:
        failure = "".join(traceback.format_exception(exc))
        ws.db.transact(lambda conn: records.finish_run(conn, run_id, FAILED, failure))
        if owned:
            pool.close()
        raise
    owner = records.owner_token()
    nodes = [(node, build.calls[node].task.name) for node in build.dag.order]

    def begin(conn: Connection) -> None:
        moved = conn.execute(
            update(pipeline_runs)
            .where(pipeline_runs.c.id == run_id, pipeline_runs.c.status != RUNNING)
            .values(
                status=RUNNING,
                owner=owner,
                attempt=attempt,
                start_time=records.now_ms(),
                end_time=None,
                heartbeat_at=records.now_ms(),
                error=None,
                executor=pool.name,
                tracking_run_id=tracking.id if tracking is not None else None,
            )
        ).rowcount
        if not moved:
            raise RunNotResumable(
                f"Pipeline run {run_id[:8]} was started by another process meanwhile."
            )
        records.put_tasks(conn, run_id, nodes)

    try:
        ws.db.transact(begin)
    except BaseException:
        if tracking is not None:
            tracking.end(FAILED)
        if owned:
            pool.close()
        raise
    context = {
        "pipeline": pipe.name,
        "pipeline_run_id": run_id,
        "partition": partition,
        "tracking_run_id": tracking.id if tracking is not None else None,
        "tracking_run_name": tracking.name if tracking is not None else "",
        "experiment_id": tracking.experiment_id if tracking is not None else 0,
        "experiment": tracking.experiment if tracking is not None else "",
        "store_url": _shared_url(ws.settings.store_url, ws.db.in_memory),
        "artifacts_url": _shared_url(
            ws.settings.artifacts_url, ws.settings.artifacts_url.startswith("memory://")
        ),
        "_run": tracking,
    }
    execution = Execution(ws, build, run_id, pool, use_cache, previous, context)
    status, error = FAILED, None
    beating = _Heartbeat(ws, run_id)
    try:
        execution.run()
    except BaseException as exc:
        execution.abort()
        execution.flush()
        interrupted = isinstance(exc, KeyboardInterrupt | SystemExit)
        status = KILLED if interrupted else FAILED
        error = "".join(traceback.format_exception(exc))
        _finish(ws, pipe, run_id, partition, status, error, tracking)
        raise
    finally:
        beating.stop()
        if owned:
            pool.close()
    _save_manifest(tracking, execution)
    results = execution.results()
    failed = [n for n, t in results.items() if t.status == FAILED]
    if failed:
        first = results[failed[0]]
        status = FAILED
        error = f"task {failed[0]!r} failed: {first.error}\n\n{first.traceback or ''}".rstrip()
    else:
        status = FINISHED
    _finish(ws, pipe, run_id, partition, status, error, tracking)
    run = PipelineRun(
        id=run_id,
        pipeline=pipe.name,
        status=status,
        params=dict(values),
        partition=partition,
        tracking_run_id=tracking.id if tracking is not None else None,
        error=error,
        tasks=results,
        _workspace=ws,
        _values={n: v for n, v in execution.values.items() if n in execution.keep},
        _returned=build.returned,
    )
    if raise_on_failure and status != FINISHED:
        raise PipelineFailed(failure_message(run), run)
    return run


#: The artifact of a pipeline run's tracking run that records what each cache key was made of.
MANIFEST_ARTIFACT = "loopml/cache.json"


def _save_manifest(tracking: Run | None, execution: Execution) -> None:
    if tracking is None or not execution.manifest:
        return
    with contextlib.suppress(LoopmlError):  # an explanation is not worth failing the run
        text = json.dumps(execution.cache_manifest(), separators=(",", ":"), sort_keys=True)
        tracking.log_text(text, MANIFEST_ARTIFACT)


class _Heartbeat:
    """Writes the run's heartbeat every :data:`records.HEARTBEAT_S` seconds while it runs,
    from its own thread, so a long task (even inline) never makes a live run look dead to a
    process on another host."""

    def __init__(self, ws: Workspace, run_id: str) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._beat, args=(ws, run_id), name="loopml-heartbeat", daemon=True
        )
        self._thread.start()

    def _beat(self, ws: Workspace, run_id: str) -> None:
        while not self._stop.wait(records.HEARTBEAT_S):
            with contextlib.suppress(LoopmlError):  # a busy store: the next beat will do
                ws.db.transact(lambda conn: records.heartbeat(conn, run_id))

    def stop(self) -> None:
        self._stop.set()


def _shared_url(url: str, local_only: bool) -> str | None:
    """The URL a worker process can open, or None for a store only this process sees."""
    return None if local_only else url


def _tracking_run(
    ws: Workspace,
    pipe: Pipeline,
    run_id: str,
    values: Mapping[str, Any],
    partition: str | None,
    resuming: records.PipelineRunRecord | None,
    log_environment: bool | None,
    tags: Mapping[str, Any] | None,
) -> Run | None:
    if resuming is not None and resuming.tracking_run_id:
        try:
            return ws.runs.start(
                run_id=resuming.tracking_run_id, nested=ws.runs.active() is not None
            )
        except LoopmlError:
            pass  # deleted, or live elsewhere: start a fresh one
    label = partition or run_id[:8]
    system_tags = {
        "loopml.pipeline": pipe.name,
        "loopml.pipeline_run": run_id,
        **({"loopml.partition": partition} if partition else {}),
    }
    from loopml.tracking import environment

    with environment.code_file(pipe.source_file):  # its git checkout is the code version
        run = ws.runs.start(
            experiment=pipe.experiment,
            name=f"{pipe.name}-{label}",
            tags={**system_tags, **dict(tags or {})},
            nested=ws.runs.active() is not None,
            log_environment=log_environment,
        )
    try:
        loggable = {k: v for k, v in values.items() if len(str(v)) <= 6000}
        if loggable:
            run.log_params(loggable)
    except LoopmlError:
        pass  # a param key the tracking store can't take: the pipeline run records them all
    return run


def _finish(
    ws: Workspace,
    pipe: Pipeline,
    run_id: str,
    partition: str | None,
    status: str,
    error: str | None,
    tracking: Run | None,
) -> None:
    replaced: list[str | None] = [None]

    def tx(conn: Connection) -> None:
        records.finish_run(conn, run_id, status, error)
        if status == FINISHED and partition is not None:
            replaced[0] = records.set_partition(conn, pipe.name, partition, run_id)

    ws.db.transact(tx)
    if tracking is not None:
        tracking.end(status if status in (FINISHED, FAILED, KILLED) else FAILED, error=error)
    old = replaced[0]
    if old is not None:
        _retire_tracking_run(ws, old, tracking.id if tracking is not None else None)


def _retire_tracking_run(ws: Workspace, old_run_id: str, current: str | None) -> None:
    """A rerun of a partition replaces the earlier run: its tracking run is soft-deleted
    (``loopml runs restore`` brings it back) so searches see one run per partition."""
    try:
        record = records.get_run(ws.db, old_run_id)
        if record.tracking_run_id and record.tracking_run_id != current:
            ws.runs.delete(record.tracking_run_id)
    except LoopmlError:
        pass


def _result_from_record(ws: Workspace, record: records.PipelineRunRecord) -> PipelineRun:
    tasks = {
        t.node: TaskResult(
            node=t.node,
            task=t.task,
            status=t.status,
            attempts=t.attempts,
            duration=t.duration,
            error=t.error,
            traceback=t.traceback,
            output_digest=t.output_digest,
            cached_from=t.cached_from,
        )
        for t in record.tasks
    }
    return PipelineRun(
        id=record.id,
        pipeline=record.pipeline,
        status=record.status,
        params=record.params,
        partition=record.partition,
        tracking_run_id=record.tracking_run_id,
        error=record.error,
        tasks=tasks,
        _workspace=ws,
    )


def get_pipeline_run(run_id: str, workspace: WorkspaceLike = None) -> PipelineRun:
    """A recorded pipeline run (``run_id`` may be a unique prefix); outputs load on demand."""
    ws = resolve_workspace(workspace)
    return _result_from_record(ws, records.get_run(ws.db, run_id))


__all__ = [
    "PipelineRun",
    "TaskResult",
    "get_pipeline_run",
    "resume",
    "run_pipeline",
]
