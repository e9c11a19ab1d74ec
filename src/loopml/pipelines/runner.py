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
import heapq
import itertools
import queue
import threading
import time
import traceback
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, update

from loopml.exceptions import LoopmlError
from loopml.pipelines import cache, records
from loopml.pipelines.context import TaskContext, default_workspace_or_none, function_payload
from loopml.pipelines.dag import Frontier
from loopml.pipelines.exceptions import (
    OutputNotStorable,
    PipelineFailed,
    RunNotResumable,
    TaskTimeout,
)
from loopml.pipelines.executors import Executor, Job, Outcome, resolve_executor
from loopml.pipelines.records import (
    CACHED,
    COMPLETED,
    DONE_TASK,
    FAILED,
    FINISHED,
    KILLED,
    PENDING,
    QUEUED,
    RUNNING,
    SKIPPED,
)
from loopml.store.tables import pipeline_runs

if TYPE_CHECKING:
    from loopml.pipelines.pipeline import Build, Pipeline
    from loopml.tracking import Run
    from loopml.workspace import Workspace

#: Task-state changes are written in batches: at most this many seconds apart …
FLUSH_INTERVAL_S = 0.25
#: … or this many at a time.
FLUSH_BATCH = 500
#: The scheduling loop wakes at least this often (timeouts, retries, flushes).
MAX_WAIT_S = 1.0
#: At most this many cache keys are read at the start of a run (see ``_Execution.known``).
KNOWN_KEYS_LIMIT = 200_000
#: A task that ran this long has its completion written before its dependents start.
WRITE_AHEAD_S = 0.05


@dataclass
class TaskResult:
    """How one task of a run ended."""

    node: str
    task: str
    status: str
    attempts: int
    duration: float | None
    error: str | None
    traceback: str | None
    output_digest: str | None
    cached_from: str | None = None


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
            raise KeyError(f"No task {node!r} in pipeline run {self.id}: {', '.join(self.tasks)}")
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
    return "; ".join(parts) + f". Fix it and run `loopml pipelines resume {run.id[:8]}`."


def load_output(workspace: Workspace, run_id: str, node: str) -> Any:
    rows = records.task_rows(workspace.db, run_id)
    row = rows.get(node)
    if row is None or row.output_digest is None:
        status = row.status if row is not None else "unknown"
        raise KeyError(f"Task {node!r} of pipeline run {run_id} has no output ({status}).")
    return cache.load(workspace.blobs, row.output_format, row.output_digest, row.output_inline)


# -- the scheduling loop ---------------------------------------------------------------------


@dataclass
class _Node:
    node: str
    task: str
    status: str = PENDING
    attempts: int = 0
    cache_key: str | None = None
    start_time: int | None = None
    end_time: int | None = None
    duration: float | None = None
    error: str | None = None
    traceback: str | None = None
    output_digest: str | None = None
    output_format: str | None = None
    output_size: int | None = None
    output_inline: bytes | None = None
    cached_from: str | None = None
    job: Job | None = None
    consumers: int = 0

    def row(self) -> dict[str, Any]:
        return {
            "node": self.node,
            **{name: getattr(self, name) for name in records.TASK_FIELDS},
        }


_payloads: dict[int, tuple[Any, bytes]] = {}


def _payload_getter(fn: Any) -> Any:
    def get() -> bytes:
        cached = _payloads.get(id(fn))
        if cached is None or cached[0] is not fn:
            cached = (fn, function_payload(fn))
            _payloads[id(fn)] = cached
        return cached[1]

    return get


class _Execution:
    """One pass over a run's DAG with one executor (a run, or a resume of one)."""

    _job_ids = itertools.count(1)

    def __init__(
        self,
        workspace: Workspace,
        build: Build,
        run_id: str,
        executor: Executor,
        use_cache: bool,
        previous: Mapping[str, Any],
        context: dict[str, Any],
    ) -> None:
        self.ws = workspace
        self.build = build
        self.run_id = run_id
        self.executor = executor
        self.use_cache = use_cache
        self.previous = previous  # node → task row of an earlier attempt of this run
        self.context = context
        self.dag = build.dag
        self.frontier = Frontier(self.dag)
        self.events: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
        self.nodes = {n: _Node(n, build.calls[n].task.name) for n in self.dag.order}
        for name, state in self.nodes.items():
            state.consumers = len(self.dag.dependents[name])
            row = previous.get(name)
            if row is not None and row.status in DONE_TASK:
                # Shown as done until its turn comes and its cache key is checked again.
                for attr in records.TASK_FIELDS:
                    setattr(state, attr, getattr(row, attr))
        self.keep = set(build.returned_nodes())
        self.values: dict[str, Any] = {}
        self.by_key: dict[str, str] = {}  # cache key → node that produced it in this run
        self.inflight: dict[int, str] = {}
        self.retries: list[tuple[float, int, str]] = []
        self.dirty: dict[str, None] = {}
        self.last_flush = time.monotonic()
        self.timeouts = any(c.task.spec.timeout for c in build.calls.values())
        # The cache keys these tasks completed under before, read once: a task whose key is
        # not among them is a miss without a query (a history too long to hold: query each).
        self.known: set[str] | None = None
        if use_cache:
            tasks = [call.task.name for call in build.calls.values() if call.task.spec.cache]
            self.known = (
                records.known_keys(workspace.db, tasks, KNOWN_KEYS_LIMIT) if tasks else set()
            )
        default = default_workspace_or_none()
        self.workspaces = [workspace] + ([default] if default not in (None, workspace) else [])

    # -- main loop -------------------------------------------------------------------------

    def run(self) -> None:
        try:
            self._start_ready()
            while not self.frontier.finished:
                try:
                    outcome: Outcome | None = self.events.get(timeout=self._wait_time())
                except queue.Empty:
                    outcome = None
                while outcome is not None:
                    self._on_outcome(outcome)
                    try:
                        outcome = self.events.get_nowait()
                    except queue.Empty:
                        outcome = None
                now = time.monotonic()
                if self.timeouts:
                    self._check_timeouts(now)
                self._due_retries(now)
                self._start_ready()
                self._maybe_flush(now)
        finally:
            self.flush()

    def _wait_time(self) -> float:
        wait = MAX_WAIT_S
        now = time.monotonic()
        if self.retries:
            wait = min(wait, max(0.0, self.retries[0][0] - now))
        if self.dirty:
            wait = min(wait, max(0.0, self.last_flush + FLUSH_INTERVAL_S - now))
        if self.timeouts and self.inflight:
            wait = min(wait, 0.05)
        return wait

    def _start_ready(self) -> None:
        # A cache hit completes at once and may make more nodes ready: loop until none are.
        while ready := self.frontier.ready():
            keyed: list[tuple[str, str]] = []
            for node in ready:
                key = self._key(node)
                if key is not None:
                    keyed.append((node, key))
            wanted = [
                key
                for node, key in keyed
                if self._cacheable(node)
                and key not in self.by_key
                and (self.known is None or key in self.known)
            ]
            found = self._sync(wanted)
            for node, key in keyed:
                if self._cacheable(node) and self._reuse(node, key, found):
                    continue
                self._run(node, key)

    # -- starting a task -------------------------------------------------------------------

    def _cacheable(self, node: str) -> bool:
        return self.use_cache and self.build.calls[node].task.spec.cache

    def _key(self, node: str) -> str | None:
        """The node's cache key, or None when it completed (or failed) on the spot."""
        call = self.build.calls[node]
        inputs = {dep: self.nodes[dep].output_digest or "" for dep in call.deps}
        try:
            key = cache.cache_key(call.task.code_digest, call.args, call.kwargs, inputs)
        except Exception as exc:  # e.g. a Path argument that can't be read to hash it
            self._fail(node, exc, "".join(traceback.format_exception(exc)))
            return None
        previous = self.previous.get(node)
        if previous is not None and previous.status in DONE_TASK and previous.cache_key == key:
            self._complete(node, None, from_previous=True)
            return None
        return key

    def _sync(self, keys: list[str]) -> dict[str, Any]:
        """Look up ``keys`` in the cache, in the same transaction as writing the task states
        that must be on record before the ready tasks start: completions of tasks that ran
        for :data:`WRITE_AHEAD_S` or more, so a resume after a crash never redoes real work.
        Quicker tasks are cheaper to redo than to record one by one: they are written in
        batches, within :data:`FLUSH_INTERVAL_S`."""
        must_write = any(
            self.nodes[node].status == COMPLETED
            and (self.nodes[node].duration or 0.0) >= WRITE_AHEAD_S
            for node in self.dirty
        )
        if not must_write:
            if not keys:
                return {}
            with self.ws.db.read() as conn:
                return records.cached_outputs(conn, keys)
        dirty, self.dirty = self.dirty, {}
        rows = [self.nodes[node].row() for node in dirty]

        def tx(conn: Connection) -> dict[str, Any]:
            records.write_tasks(conn, self.run_id, rows)
            return records.cached_outputs(conn, keys) if keys else {}

        found = self.ws.db.transact(tx)
        self.last_flush = time.monotonic()
        return found

    def _run(self, node: str, key: str) -> None:
        state = self.nodes[node]
        state.cache_key = key
        state.status = RUNNING
        state.attempts = 0
        state.error = state.traceback = None
        state.output_digest = state.output_format = state.output_inline = None
        state.output_size = None
        state.cached_from = None
        self._submit(node)

    def _reuse(self, node: str, key: str, found: dict[str, Any]) -> bool:
        state = self.nodes[node]
        twin = self.by_key.get(key)
        if twin is not None:
            source = self.nodes[twin]
            hit: Any = (
                self.run_id,
                source.output_digest,
                source.output_format,
                source.output_size,
                source.output_inline,
                None,
            )
            if twin in self.values:
                self.values[node] = self.values[twin]
        else:
            hit = found.get(key)
            if hit is None:
                return False
            _, digest, _, _, inline, _ = hit
            if inline is None and not self.ws.blobs.exists(digest):
                return False  # the blob is gone (deleted store?): compute it again
        run_id, digest, fmt, size, inline, origin = hit
        state.cache_key = key
        state.status = CACHED
        state.output_digest, state.output_format, state.output_size = digest, fmt, size
        state.output_inline = inline
        state.cached_from = origin or run_id
        state.start_time = state.end_time = records.now_ms()
        state.duration = 0.0
        state.error = state.traceback = None
        self.dirty[node] = None
        self.by_key.setdefault(key, node)
        self.frontier.complete(node)
        return True

    def _submit(self, node: str) -> None:
        call = self.build.calls[node]
        state = self.nodes[node]
        state.attempts += 1
        state.status = RUNNING
        state.start_time = records.now_ms()
        state.end_time = state.duration = None
        try:
            values = {dep: self._value(dep) for dep in call.deps}
            args = cache.resolve(call.args, values)
            kwargs = cache.resolve(call.kwargs, values)
        except Exception as exc:
            self._fail(node, exc, "".join(traceback.format_exception(exc)))
            return
        context = TaskContext(
            node=node, task=call.task.name, attempt=state.attempts, **self.context
        )
        job = Job(
            id=next(self._job_ids),
            fn=call.task.fn,
            args=args,
            kwargs=kwargs,
            context=context,
            workspaces=self.workspaces,
            payload=_payload_getter(call.task.fn),
        )
        state.job = job
        self.inflight[job.id] = node
        self.dirty[node] = None
        try:
            self.executor.submit(job, self.events.put)
        except Exception as exc:
            self.inflight.pop(job.id, None)
            self._fail(node, exc, "".join(traceback.format_exception(exc)))

    def _value(self, node: str) -> Any:
        if node not in self.values:
            state = self.nodes[node]
            assert state.output_digest is not None and state.output_format is not None
            self.values[node] = cache.load(
                self.ws.blobs, state.output_format, state.output_digest, state.output_inline
            )
        return self.values[node]

    # -- outcomes --------------------------------------------------------------------------

    def _on_outcome(self, outcome: Outcome) -> None:
        node = self.inflight.pop(outcome.job.id, None)
        if node is None or outcome.job.cancelled:
            return  # a timed-out attempt that finished after all
        state = self.nodes[node]
        state.job = None
        started = outcome.job.started_at
        duration = time.monotonic() - started if started is not None else None
        if outcome.ok:
            try:
                stored = cache.serialize(outcome.value, node)
                cache.save(stored, self.ws.blobs)
            except OutputNotStorable as exc:
                self._fail(node, exc, "".join(traceback.format_exception(exc)), duration)
                return
            except LoopmlError as exc:  # the blob store is unavailable
                self._attempt_failed(node, exc, "".join(traceback.format_exception(exc)), duration)
                return
            state.duration = duration
            state.output_digest, state.output_format = stored.digest, stored.format
            state.output_size, state.output_inline = stored.size, stored.inline
            self.values[node] = outcome.value
            self._complete(node, duration)
            return
        error = outcome.error or RuntimeError("unknown error")
        if outcome.unstorable:
            value_error = OutputNotStorable(
                f"Task {node!r} returned a value that can't be sent back from the worker or "
                f"stored: {type(error).__name__}: {error}. Return plain data, a DataFrame or "
                "a picklable object."
            )
            self._fail(node, value_error, outcome.traceback, duration)
            return
        self._attempt_failed(node, error, outcome.traceback, duration)

    def _attempt_failed(
        self, node: str, error: BaseException, text: str, duration: float | None
    ) -> None:
        state = self.nodes[node]
        spec = self.build.calls[node].task.spec
        state.error = _error_line(error)
        state.traceback = text
        state.duration = duration
        if state.attempts <= spec.retries:
            delay = spec.delay_before(state.attempts + 1)
            heapq.heappush(self.retries, (time.monotonic() + delay, state.attempts, node))
            self.dirty[node] = None
            return
        self._fail(node, error, text, duration)

    def _due_retries(self, now: float) -> None:
        while self.retries and self.retries[0][0] <= now:
            _, _, node = heapq.heappop(self.retries)
            self._submit(node)

    def _check_timeouts(self, now: float) -> None:
        for job_id, node in list(self.inflight.items()):
            state = self.nodes[node]
            timeout = self.build.calls[node].task.spec.timeout
            job = state.job
            if not timeout or job is None or job.started_at is None:
                continue
            elapsed = now - job.started_at
            if elapsed <= timeout:
                continue
            self.inflight.pop(job_id, None)
            state.job = None
            self.executor.cancel(job)
            error = TaskTimeout(
                f"Task {node!r} did not finish within its timeout of {timeout:g}s "
                f"(attempt {state.attempts}); it was "
                + ("killed." if self.executor.name == "processes" else "abandoned."),
                task=node,
            )
            self._attempt_failed(node, error, f"TaskTimeout: {error}\n", elapsed)

    def _complete(self, node: str, duration: float | None, from_previous: bool = False) -> None:
        state = self.nodes[node]
        if not from_previous:
            state.status = COMPLETED
            state.end_time = records.now_ms()
            state.error = state.traceback = None
            if state.cache_key is not None and self.build.calls[node].task.spec.cache:
                self.by_key.setdefault(state.cache_key, node)
        self.dirty[node] = None
        self.frontier.complete(node)
        self._release_inputs(node)

    def _fail(
        self, node: str, error: BaseException, text: str, duration: float | None = None
    ) -> None:
        state = self.nodes[node]
        state.status = FAILED
        state.error = _error_line(error)
        state.traceback = text
        state.end_time = records.now_ms()
        state.duration = duration
        self.dirty[node] = None
        for skipped in self.frontier.fail(node):
            other = self.nodes[skipped]
            other.status = SKIPPED
            other.error = f"upstream task {node!r} failed"
            other.traceback = None
            other.output_digest = other.output_format = other.output_inline = None
            other.output_size = None
            self.dirty[skipped] = None
        self._release_inputs(node)

    def _release_inputs(self, node: str) -> None:
        """Drop in-memory inputs no remaining task needs (they stay in the store)."""
        for dep in self.build.calls[node].deps:
            other = self.nodes[dep]
            other.consumers -= 1
            if other.consumers <= 0 and dep not in self.keep:
                self.values.pop(dep, None)

    # -- recording -------------------------------------------------------------------------

    def _maybe_flush(self, now: float) -> None:
        if self.dirty and (
            len(self.dirty) >= FLUSH_BATCH or now - self.last_flush >= FLUSH_INTERVAL_S
        ):
            self.flush()

    def flush(self) -> None:
        dirty, self.dirty = self.dirty, {}
        rows = [self.nodes[node].row() for node in dirty]
        if rows:
            self.ws.db.transact(lambda conn: records.write_tasks(conn, self.run_id, rows))
        self.last_flush = time.monotonic()

    def abort(self) -> None:
        """Stop in-flight attempts (the run is being interrupted) and mark them failed."""
        for node in list(self.inflight.values()):
            state = self.nodes[node]
            if state.job is not None:
                self.executor.cancel(state.job)
            state.status = FAILED
            state.error = "interrupted"
            state.end_time = records.now_ms()
            self.dirty[node] = None
        self.inflight.clear()

    def results(self) -> dict[str, TaskResult]:
        return {
            node: TaskResult(
                node=node,
                task=state.task,
                status=state.status,
                attempts=state.attempts,
                duration=state.duration,
                error=state.error,
                traceback=state.traceback,
                output_digest=state.output_digest,
                cached_from=state.cached_from,
            )
            for node, state in self.nodes.items()
        }


def _error_line(error: BaseException) -> str:
    message = str(error).strip()
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


# -- public entry points ---------------------------------------------------------------------


def run_pipeline(
    pipeline: Pipeline | str,
    params: Mapping[str, Any] | None = None,
    *,
    executor: str | Executor = "threads",
    max_workers: int | None = None,
    cache: bool = True,
    workspace: Workspace | None = None,
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

    ws = workspace or _default_workspace()
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
    workspace: Workspace | None = None,
    pipeline: Pipeline | str | None = None,
    raise_on_failure: bool = True,
) -> PipelineRun:
    """Resume a failed or killed pipeline run under the same id: every task that completed
    (and whose code and inputs are unchanged) is reused, the rest runs.

    A run whose process died while RUNNING is noticed and resumed; a run still running in a
    live process raises :class:`RunNotResumable`. A finished run is returned as it is.
    """
    from loopml.pipelines.refs import load_pipeline

    ws = workspace or _default_workspace()
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
    execution = _Execution(ws, build, run_id, pool, use_cache, previous, context)
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
            return ws.start_run(run_id=resuming.tracking_run_id, nested=ws.active_run() is not None)
        except LoopmlError:
            pass  # deleted, or live elsewhere: start a fresh one
    label = partition or run_id[:8]
    system_tags = {
        "loopml.pipeline": pipe.name,
        "loopml.pipeline_run": run_id,
        **({"loopml.partition": partition} if partition else {}),
    }
    run = ws.start_run(
        experiment=pipe.experiment,
        name=f"{pipe.name}-{label}",
        tags={**system_tags, **dict(tags or {})},
        nested=ws.active_run() is not None,
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
            ws.delete_run(record.tracking_run_id)
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


def get_pipeline_run(run_id: str, workspace: Workspace | None = None) -> PipelineRun:
    """A recorded pipeline run (``run_id`` may be a unique prefix); outputs load on demand."""
    ws = workspace or _default_workspace()
    return _result_from_record(ws, records.get_run(ws.db, run_id))


__all__ = [
    "PipelineRun",
    "TaskResult",
    "get_pipeline_run",
    "resume",
    "run_pipeline",
]
