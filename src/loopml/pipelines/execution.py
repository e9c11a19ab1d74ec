"""The scheduling loop of one pipeline run: start each task when its inputs are ready,
retry failed attempts with backoff, enforce timeouts, skip the downstream of a failed task,
and write task-state changes in batches. :mod:`loopml.pipelines.runner` drives it."""

from __future__ import annotations

import heapq
import itertools
import queue
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection

from loopml.exceptions import LoopmlError
from loopml.pipelines import cache, records
from loopml.pipelines.context import TaskContext, default_workspace_or_none, function_payload
from loopml.pipelines.dag import Frontier
from loopml.pipelines.exceptions import (
    OutputNotStorable,
    TaskTimeout,
)
from loopml.pipelines.executors import Executor, Job, Outcome
from loopml.pipelines.fingerprint import RECIPE, Fingerprint
from loopml.pipelines.records import (
    CACHED,
    COMPLETED,
    DONE_TASK,
    FAILED,
    PENDING,
    RUNNING,
    SKIPPED,
)

if TYPE_CHECKING:
    from loopml.pipelines.pipeline import Build
    from loopml.pipelines.tasks import Task
    from loopml.workspace import Workspace

#: Task-state changes are written in batches: at most this many seconds apart …
FLUSH_INTERVAL_S = 0.25
#: … or this many at a time.
FLUSH_BATCH = 500
#: The scheduling loop wakes at least this often (timeouts, retries, flushes).
MAX_WAIT_S = 1.0
#: At most this many cache keys are read at the start of a run (see ``Execution.known``).
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


class Execution:
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
        self.fingerprints: dict[str, tuple[Task[..., Any], Fingerprint]] = {}
        self.manifest: dict[str, dict[str, Any]] = {}
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
            code = self.fingerprint(call.task)
            labels, values = call.task.arguments(call.args, call.kwargs)
            arguments = cache.argument_digests(labels, values, inputs)
            key = cache.cache_key(code.digest, arguments)
        except Exception as exc:  # e.g. a Path argument that can't be read to hash it
            self._fail(node, exc, "".join(traceback.format_exception(exc)))
            return None
        self.manifest[node] = {"task": call.task.name, "key": key, "arguments": arguments}
        previous = self.previous.get(node)
        if previous is not None and previous.status in DONE_TASK and previous.cache_key == key:
            self._complete(node, None, from_previous=True)
            return None
        return key

    def fingerprint(self, task: Task[..., Any]) -> Fingerprint:
        """The task's code fingerprint, computed once per run."""
        found = self.fingerprints.get(task.name)
        if found is None or found[0] is not task:
            found = (task, task.fingerprint())
            self.fingerprints[task.name] = found
        return found[1]

    def cache_manifest(self) -> dict[str, Any]:
        """What each task's cache key was made of in this run (for ``--explain-cache``)."""
        return {
            "recipe": RECIPE,
            "tasks": {name: fp.components for name, (_, fp) in self.fingerprints.items()},
            "nodes": self.manifest,
        }

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
                f"stored: {type(error).__name__}: {str(error).rstrip('.')}. Return plain data, a DataFrame or "
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
