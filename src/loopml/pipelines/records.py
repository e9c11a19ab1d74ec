"""Pipeline runs and task runs in the metadata store: writing them as a run goes, reading
them back, finding a cached output, and noticing runs whose process died.

A run is owned by the process executing it (``host:pid:start``, plus a heartbeat); a RUNNING
run whose owner is gone is marked KILLED by :func:`reap_stale`, after which it can be resumed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, bindparam, delete, insert, or_, select, update

from loopml.events import emit
from loopml.exceptions import InvalidInput
from loopml.pipelines.exceptions import PipelineRunNotFound, TaskOutputNotFound
from loopml.pipelines.tables import pipeline_partitions, pipeline_runs, task_runs
from loopml.store import liveness
from loopml.store.clock import now_ms, to_datetime
from loopml.store.db import upsert

if TYPE_CHECKING:
    from loopml.store.db import Database

QUEUED, RUNNING, FINISHED, FAILED, KILLED = "QUEUED", "RUNNING", "FINISHED", "FAILED", "KILLED"
PENDING, COMPLETED, CACHED, SKIPPED = "PENDING", "COMPLETED", "CACHED", "SKIPPED"
DONE_TASK = (COMPLETED, CACHED)
#: Triggers of runs a person (or a backfill) started, not the scheduler.
UNTRIGGERED = ("manual", "backfill")

STALE_AFTER_S = liveness.STALE_AFTER_S
HEARTBEAT_S = liveness.HEARTBEAT_S
MIN_PREFIX = 4

#: Task-run columns written as a run goes (all of them, so updates batch as one executemany).
TASK_FIELDS = (
    "status",
    "attempts",
    "cache_key",
    "start_time",
    "end_time",
    "duration",
    "error",
    "traceback",
    "output_digest",
    "output_format",
    "output_size",
    "output_inline",
    "cached_from",
)


# -- owners ----------------------------------------------------------------------------------

# One liveness rule for tracking runs and pipeline runs: see loopml.store.liveness.
owner_token = liveness.owner_token
owner_alive = liveness.owner_alive


# -- records ---------------------------------------------------------------------------------


@dataclass
class TaskRunRecord:
    """One task of a pipeline run, as stored."""

    node: str
    task: str
    status: str
    attempts: int
    cache_key: str | None
    start_time: datetime | None
    end_time: datetime | None
    duration: float | None
    error: str | None
    traceback: str | None
    output_digest: str | None
    output_format: str | None
    output_size: int | None
    cached_from: str | None


@dataclass
class PipelineRunRecord:
    """One pipeline run, as stored, with its task runs in execution order."""

    id: str
    pipeline: str
    ref: str | None
    status: str
    params: dict[str, Any]
    partition: str | None
    trigger: str
    trigger_slot: str | None
    trigger_detail: dict[str, Any] | None
    tracking_run_id: str | None
    executor: str | None
    attempt: int
    owner: str | None
    created_at: datetime
    start_time: datetime | None
    end_time: datetime | None
    superseded_by: str | None
    error: str | None
    tasks: list[TaskRunRecord] = field(default_factory=list)

    @property
    def duration(self) -> float | None:
        if self.start_time is None or self.end_time is None:
            return None
        return (self.end_time - self.start_time).total_seconds()

    def task(self, node: str) -> TaskRunRecord:
        for item in self.tasks:
            if item.node == node:
                return item
        raise TaskOutputNotFound(
            f"Pipeline run {self.id[:8]} of {self.pipeline!r} has no task {node!r}; its tasks "
            f"are: {', '.join(t.node for t in self.tasks) or 'none'}."
        )


def _run_record(row: Any) -> PipelineRunRecord:
    return PipelineRunRecord(
        id=row.id,
        pipeline=row.pipeline,
        ref=row.ref,
        status=row.status,
        params=json.loads(row.params),
        partition=row.partition,
        trigger=row.trigger,
        trigger_slot=row.trigger_slot,
        trigger_detail=json.loads(row.trigger_detail) if row.trigger_detail else None,
        tracking_run_id=row.tracking_run_id,
        executor=row.executor,
        attempt=row.attempt,
        owner=row.owner,
        created_at=to_datetime(row.created_at) or datetime.now(UTC),
        start_time=to_datetime(row.start_time),
        end_time=to_datetime(row.end_time),
        superseded_by=row.superseded_by,
        error=row.error,
    )


def _task_record(row: Any) -> TaskRunRecord:
    return TaskRunRecord(
        node=row.node,
        task=row.task,
        status=row.status,
        attempts=row.attempts,
        cache_key=row.cache_key,
        start_time=to_datetime(row.start_time),
        end_time=to_datetime(row.end_time),
        duration=row.duration,
        error=row.error,
        traceback=row.traceback,
        output_digest=row.output_digest,
        output_format=row.output_format,
        output_size=row.output_size,
        cached_from=row.cached_from,
    )


def params_json(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, default=str)


# -- writing ---------------------------------------------------------------------------------


def insert_run(conn: Connection, **values: Any) -> None:
    values.setdefault("created_at", now_ms())
    values.setdefault("attempt", 1)
    conn.execute(insert(pipeline_runs).values(**values))


def put_tasks(conn: Connection, run_id: str, nodes: Sequence[tuple[str, str]]) -> None:
    """Make the run's task rows match ``nodes`` ((node, task) in execution order): new nodes
    are PENDING, existing ones keep their state, nodes no longer in the DAG are removed."""
    existing = set(
        conn.execute(select(task_runs.c.node).where(task_runs.c.pipeline_run_id == run_id))
        .scalars()
        .all()
    )
    wanted = {node for node, _ in nodes}
    gone = existing - wanted
    if gone:
        conn.execute(
            delete(task_runs).where(
                task_runs.c.pipeline_run_id == run_id, task_runs.c.node.in_(sorted(gone))
            )
        )
    rows = [
        {
            "pipeline_run_id": run_id,
            "node": node,
            "task": task,
            "position": position,
            "status": PENDING,
            "attempts": 0,
        }
        for position, (node, task) in enumerate(nodes)
        if node not in existing
    ]
    if rows:
        conn.execute(insert(task_runs), rows)
    moved = [
        {"_run": run_id, "_node": node, "position": position}
        for position, (node, _task) in enumerate(nodes)
        if node in existing
    ]
    if moved:
        conn.execute(
            update(task_runs)
            .where(
                task_runs.c.pipeline_run_id == bindparam("_run"),
                task_runs.c.node == bindparam("_node"),
            )
            .values(position=bindparam("position")),
            moved,
        )


_UPDATE_TASK = (
    update(task_runs)
    .where(
        task_runs.c.pipeline_run_id == bindparam("_run"),
        task_runs.c.node == bindparam("_node"),
    )
    .values({name: bindparam(name) for name in TASK_FIELDS})
)


def write_tasks(conn: Connection, run_id: str, states: Iterable[dict[str, Any]]) -> None:
    """Write task-run states (each a dict with ``node`` and every :data:`TASK_FIELDS`)."""
    rows = [
        {"_run": run_id, "_node": state["node"], **{k: state[k] for k in TASK_FIELDS}}
        for state in states
    ]
    if rows:
        conn.execute(_UPDATE_TASK, rows)


def heartbeat(conn: Connection, run_id: str) -> None:
    conn.execute(
        update(pipeline_runs).where(pipeline_runs.c.id == run_id).values(heartbeat_at=now_ms())
    )


def finish_run(conn: Connection, run_id: str, status: str, error: str | None) -> None:
    """Record the run's end, and its ``pipeline.*`` event, in the caller's transaction."""
    conn.execute(
        update(pipeline_runs)
        .where(pipeline_runs.c.id == run_id)
        .values(status=status, end_time=now_ms(), heartbeat_at=now_ms(), error=error)
    )
    emit_run_ended(conn, run_id, status, error)


#: The event each end status of a pipeline run writes (see loopml.events.KINDS).
ENDED_EVENTS = {
    FINISHED: "pipeline.succeeded",
    FAILED: "pipeline.failed",
    KILLED: "pipeline.killed",
}


def emit_run_ended(conn: Connection, run_id: str, status: str, error: str | None) -> None:
    """Record the ``pipeline.*`` event of a run that ended ``status``, in the caller's
    transaction (subject: the pipeline; see :data:`loopml.events.KINDS`)."""
    kind = ENDED_EVENTS.get(status)
    if kind is None:
        return
    row = conn.execute(
        select(pipeline_runs.c.pipeline, pipeline_runs.c.partition, pipeline_runs.c.trigger).where(
            pipeline_runs.c.id == run_id
        )
    ).one_or_none()
    if row is None:
        return
    payload: dict[str, Any] = {"run_id": run_id, "partition": row.partition, "trigger": row.trigger}
    lines = (error or "").strip().splitlines()
    if status == FAILED and lines:
        payload["error"] = lines[-1][:200]  # the exception, not its whole traceback
    emit(conn, kind, row.pipeline, payload)


def set_partition(conn: Connection, pipeline: str, partition: str, run_id: str) -> str | None:
    """Make ``run_id`` the current run of the partition; returns the run it replaced."""
    previous = conn.execute(
        select(pipeline_partitions.c.pipeline_run_id).where(
            pipeline_partitions.c.pipeline == pipeline,
            pipeline_partitions.c.partition == partition,
        )
    ).scalar()
    stmt = upsert(conn.dialect.name, pipeline_partitions).values(
        pipeline=pipeline, partition=partition, pipeline_run_id=run_id, updated_at=now_ms()
    )
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[pipeline_partitions.c.pipeline, pipeline_partitions.c.partition],
            set_={"pipeline_run_id": stmt.excluded.pipeline_run_id, "updated_at": now_ms()},
        )
    )
    if previous is not None and previous != run_id:
        conn.execute(
            update(pipeline_runs).where(pipeline_runs.c.id == previous).values(superseded_by=run_id)
        )
        return str(previous)
    return None


# -- reading ---------------------------------------------------------------------------------


_CACHED = select(
    task_runs.c.cache_key,
    task_runs.c.pipeline_run_id,
    task_runs.c.output_digest,
    task_runs.c.output_format,
    task_runs.c.output_size,
    task_runs.c.output_inline,
    task_runs.c.cached_from,
).where(task_runs.c.status.in_(DONE_TASK), task_runs.c.output_digest.is_not(None))
_FIND_CACHED = _CACHED.where(task_runs.c.cache_key.in_(bindparam("keys", expanding=True)))


_FIND_ONE_CACHED = _CACHED.where(task_runs.c.cache_key == bindparam("key")).limit(1)


def cached_outputs(conn: Connection, keys: Sequence[str]) -> dict[str, Any]:
    """cache key → a completed task run with that key (its run id, output digest, format,
    size, inline bytes and origin), for the keys that have one."""
    found: dict[str, Any] = {}
    if len(keys) == 1:  # the common case in a chain: a plain `=` compiles once, runs faster
        row = conn.execute(_FIND_ONE_CACHED, {"key": keys[0]}).first()
        return {} if row is None else {row.cache_key: tuple(row)[1:]}
    for start in range(0, len(keys), 500):
        chunk = sorted(set(keys[start : start + 500]))
        for row in conn.execute(_FIND_CACHED, {"keys": chunk}):
            found.setdefault(row.cache_key, tuple(row)[1:])
    return found


def known_keys(db: Database, tasks: Sequence[str], limit: int) -> set[str] | None:
    """The cache keys of completed runs of these tasks (None if more than ``limit``)."""
    with db.read() as conn:
        rows = (
            conn.execute(
                select(task_runs.c.cache_key)
                .where(
                    task_runs.c.task.in_(sorted(set(tasks))),
                    task_runs.c.status.in_(DONE_TASK),
                    task_runs.c.output_digest.is_not(None),
                )
                .limit(limit + 1)
            )
            .scalars()
            .all()
        )
    return None if len(rows) > limit else {key for key in rows if key}


def task_rows(db: Database, run_id: str) -> dict[str, Any]:
    """The run's task rows by node, output bytes included (for resuming it)."""
    with db.read() as conn:
        rows = conn.execute(select(task_runs).where(task_runs.c.pipeline_run_id == run_id)).all()
    return {row.node: row for row in rows}


def resolve_run_id(db: Database, ref: str) -> str:
    """A full pipeline run id from an id or a unique prefix of one (at least 4 characters)."""
    ref = ref.strip().lower()
    with db.read() as conn:
        found = conn.execute(select(pipeline_runs.c.id).where(pipeline_runs.c.id == ref)).scalar()
        if found is not None:
            return str(found)
        if len(ref) < MIN_PREFIX:
            raise InvalidInput(
                f"Pipeline run id prefix {ref!r} is too short: give at least {MIN_PREFIX} "
                "characters (see `loopml pipelines runs`)."
            )
        if not all(c in "0123456789abcdef" for c in ref):
            raise PipelineRunNotFound(
                f"No pipeline run {ref!r}. List them with `loopml pipelines runs`."
            )
        matches = (
            conn.execute(
                select(pipeline_runs.c.id).where(pipeline_runs.c.id.like(f"{ref}%")).limit(11)
            )
            .scalars()
            .all()
        )
    if not matches:
        raise PipelineRunNotFound(
            f"No pipeline run with id or id prefix {ref!r}. List them with `loopml pipelines runs`."
        )
    if len(matches) > 1:
        raise InvalidInput(
            f"Pipeline run id prefix {ref!r} is ambiguous: it matches "
            f"{', '.join(m[:12] for m in matches[:10])}. Give more characters."
        )
    return str(matches[0])


def get_run(db: Database, run_id: str) -> PipelineRunRecord:
    """A pipeline run and its task runs (``run_id`` may be a unique prefix)."""
    full = resolve_run_id(db, run_id)
    with db.read() as conn:
        row = conn.execute(select(pipeline_runs).where(pipeline_runs.c.id == full)).first()
        tasks = conn.execute(
            select(*[c for c in task_runs.c if c.name != "output_inline"])
            .where(task_runs.c.pipeline_run_id == full)
            .order_by(task_runs.c.position)
        ).all()
    assert row is not None
    record = _run_record(row)
    record.tasks = [_task_record(t) for t in tasks]
    return record


def list_runs(
    db: Database,
    pipeline: str | None = None,
    status: str | None = None,
    partition: str | None = None,
    limit: int = 100,
    include_superseded: bool = True,
) -> list[PipelineRunRecord]:
    """Pipeline runs, newest first (without their task runs)."""
    stmt = select(pipeline_runs).order_by(
        pipeline_runs.c.created_at.desc(), pipeline_runs.c.id.desc()
    )
    if pipeline is not None:
        stmt = stmt.where(pipeline_runs.c.pipeline == pipeline)
    if status is not None:
        stmt = stmt.where(pipeline_runs.c.status == status.upper())
    if partition is not None:
        stmt = stmt.where(pipeline_runs.c.partition == partition)
    if not include_superseded:
        stmt = stmt.where(pipeline_runs.c.superseded_by.is_(None))
    with db.read() as conn:
        rows = conn.execute(stmt.limit(limit)).all()
    return [_run_record(row) for row in rows]


def task_counts(db: Database, run_ids: Sequence[str]) -> dict[str, dict[str, int]]:
    """run id → {task status: count}."""
    if not run_ids:
        return {}
    from sqlalchemy import func

    with db.read() as conn:
        rows = conn.execute(
            select(task_runs.c.pipeline_run_id, task_runs.c.status, func.count())
            .where(task_runs.c.pipeline_run_id.in_(list(run_ids)))
            .group_by(task_runs.c.pipeline_run_id, task_runs.c.status)
        ).all()
    counts: dict[str, dict[str, int]] = {}
    for run_id, status, count in rows:
        counts.setdefault(run_id, {})[status] = count
    return counts


def current_partitions(db: Database, pipeline: str) -> dict[str, str]:
    """partition → the id of the run whose outputs are current for it."""
    with db.read() as conn:
        rows = conn.execute(
            select(pipeline_partitions.c.partition, pipeline_partitions.c.pipeline_run_id).where(
                pipeline_partitions.c.pipeline == pipeline
            )
        ).all()
    return {row.partition: row.pipeline_run_id for row in rows}


# -- stale runs ------------------------------------------------------------------------------


def reap_stale(db: Database, run_ids: Sequence[str] | None = None) -> list[str]:
    """Mark RUNNING runs (and their running tasks) whose owner process is gone as KILLED;
    returns their ids. So are QUEUED manual and backfill runs whose process died before they
    started; QUEUED triggered runs are left to the scheduler that takes them over."""
    stmt = select(
        pipeline_runs.c.id,
        pipeline_runs.c.owner,
        pipeline_runs.c.heartbeat_at,
        pipeline_runs.c.status,
    ).where(
        or_(
            pipeline_runs.c.status == RUNNING,
            (pipeline_runs.c.status == QUEUED) & pipeline_runs.c.trigger.in_(UNTRIGGERED),
        )
    )
    if run_ids is not None:
        stmt = stmt.where(pipeline_runs.c.id.in_(list(run_ids)))
    with db.read() as conn:
        candidates = conn.execute(stmt).all()
    now = now_ms()
    dead = [
        (row.id, row.owner, row.status)
        for row in candidates
        if not owner_alive(row.owner, row.heartbeat_at, now)
    ]
    reaped: list[str] = []
    for run_id, owner, status in dead:

        def tx(
            conn: Connection, run_id: str = run_id, owner: str | None = owner, status: str = status
        ) -> bool:
            moved = conn.execute(
                update(pipeline_runs)
                .where(
                    pipeline_runs.c.id == run_id,
                    pipeline_runs.c.status == status,
                    or_(pipeline_runs.c.owner == owner, pipeline_runs.c.owner.is_(None)),
                )
                .values(
                    status=KILLED,
                    end_time=now_ms(),
                    error=f"The process running this pipeline run ({owner or 'unknown'}) "
                    "stopped before it finished (killed?). Resume it with "
                    f"`loopml pipelines resume {run_id[:8]}`.",
                )
            ).rowcount
            if moved:
                conn.execute(
                    update(task_runs)
                    .where(
                        task_runs.c.pipeline_run_id == run_id,
                        task_runs.c.status == RUNNING,
                    )
                    .values(
                        status=FAILED,
                        error="TaskKilled: the process running the pipeline stopped",
                    )
                )
                emit_run_ended(conn, run_id, KILLED, None)
            return bool(moved)

        if db.transact(tx):
            reaped.append(run_id)
    return reaped
