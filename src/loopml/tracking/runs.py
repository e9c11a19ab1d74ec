"""The active run handle: what training code logs to."""

from __future__ import annotations

import json
import logging
import random
import threading
import traceback
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Connection, Row, func, insert, select, update
from sqlalchemy.exc import DBAPIError

from loopml.events import emit
from loopml.exceptions import Conflict, LoopmlError, ParamConflict, RunNotActive, RunNotFound
from loopml.store import liveness
from loopml.store.clock import now_ms
from loopml.store.db import Database, upsert
from loopml.tracking import keys
from loopml.tracking.artifacts import store_artifacts, upsert_artifacts
from loopml.tracking.inputs import DatasetRef, dataset_ref
from loopml.tracking.shutdown import Terminated
from loopml.tracking.tables import experiments, latest_metrics, params, run_inputs, runs, tags

if TYPE_CHECKING:
    from loopml.tracking.api import Runs
    from loopml.tracking.system_metrics import SystemMetricsSampler


class RunStatus(StrEnum):
    RUNNING = "RUNNING"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"


_ADJECTIVES = [
    "amber",
    "bold",
    "brisk",
    "calm",
    "clever",
    "crisp",
    "eager",
    "fancy",
    "gentle",
    "happy",
    "keen",
    "lively",
    "lucid",
    "merry",
    "noble",
    "proud",
    "quick",
    "quiet",
    "rapid",
    "sharp",
    "shy",
    "sleek",
    "smart",
    "steady",
    "swift",
    "tidy",
    "vivid",
    "warm",
    "wise",
    "zesty",
]
_NOUNS = [
    "badger",
    "bass",
    "bee",
    "crane",
    "deer",
    "dove",
    "eagle",
    "falcon",
    "finch",
    "fox",
    "gecko",
    "hare",
    "hawk",
    "heron",
    "ibis",
    "koala",
    "lark",
    "lynx",
    "mole",
    "newt",
    "otter",
    "owl",
    "panda",
    "puffin",
    "quail",
    "raven",
    "robin",
    "seal",
    "swan",
    "tern",
    "trout",
    "wolf",
    "wren",
    "yak",
]


def generate_name() -> str:
    rng = random.SystemRandom()
    return f"{rng.choice(_ADJECTIVES)}-{rng.choice(_NOUNS)}-{rng.randrange(100, 1000)}"


def emit_run_ended(
    conn: Connection,
    experiment: str,
    run_id: str,
    name: str | None,
    status: RunStatus,
    error: str | None = None,
) -> None:
    """Record ``run.finished``/``run.failed``/``run.killed`` in the caller's transaction."""
    if status is RunStatus.RUNNING:
        return
    payload: dict[str, Any] = {"run_id": run_id, "name": name}
    lines = (error or "").strip().splitlines()
    if status is RunStatus.FAILED and lines:
        payload["error"] = lines[-1][:200]  # the exception, not its whole traceback
    emit(conn, f"run.{status.value.lower()}", experiment, payload)


def upsert_tags(conn: Connection, run_id: str, items: dict[str, str]) -> None:
    if not items:
        return
    stmt = upsert(conn.dialect.name, tags)
    stmt = stmt.on_conflict_do_update(
        index_elements=[tags.c.run_id, tags.c.key], set_={"value": stmt.excluded.value}
    )
    conn.execute(stmt, [{"run_id": run_id, "key": k, "value": v} for k, v in items.items()])


def run_row(
    conn: Connection, run_id: str, *columns: ColumnElement[Any]
) -> Row[*tuple[Any, ...]] | None:
    """Run ``run_id``'s ``columns`` and its experiment's name (``.experiment``), or None
    when there is no such run.

    >>> run_row(conn, run_id, runs.c.status).experiment
    'churn'
    """
    return conn.execute(
        select(*columns, experiments.c.name.label("experiment"))
        .join(experiments, experiments.c.id == runs.c.experiment_id)
        .where(runs.c.id == run_id)
    ).first()


def require_running(conn: Connection, run_id: str) -> None:
    status = conn.execute(select(runs.c.status).where(runs.c.id == run_id)).scalar()
    if status is None:
        raise RunNotFound(f"No run {run_id!r}.")
    if status != RunStatus.RUNNING:
        raise RunNotActive(
            f"Run {run_id} is {status}: nothing more can be logged to it. "
            "Start a new run, or resume this one with start_run(run_id=...)."
        )


def insert_running(
    conn: Connection,
    run_id: str,
    experiment_id: int,
    name: str,
    *,
    start: int,
    parent: str | None,
    owner: str,
    tags: dict[str, str],
    environment: dict[str, Any] | None = None,
) -> None:
    """Insert run ``run_id`` as RUNNING, owned by ``owner`` (its heartbeat now), with its
    tags: the one way a run row is created (the Python API, loopml's client API and MLflow's
    REST API)."""
    conn.execute(
        insert(runs).values(
            id=run_id,
            experiment_id=experiment_id,
            name=name,
            status=RunStatus.RUNNING.value,
            start_time=start,
            parent_run_id=parent,
            environment=json.dumps(environment) if environment is not None else None,
            owner=owner,
            heartbeat_at=now_ms(),
        )
    )
    upsert_tags(conn, run_id, tags)


def reopen(db: Database, run_id: str, owner: str) -> None:
    """Mark run ``run_id`` RUNNING again, owned by ``owner`` (a resume): its end time and
    error are cleared. Raises Conflict while another live process still runs it."""

    def tx(conn: Connection) -> None:
        row = conn.execute(
            select(runs.c.status, runs.c.owner, runs.c.heartbeat_at).where(runs.c.id == run_id)
        ).one()
        if (
            row.status == RunStatus.RUNNING
            and row.owner != owner
            and liveness.owner_alive(row.owner, row.heartbeat_at)
        ):
            raise Conflict(
                f"Run {run_id} is running in another process ({row.owner}); wait for it "
                "to end, or end that process first."
            )
        conn.execute(
            update(runs)
            .where(runs.c.id == run_id)
            .values(
                status=RunStatus.RUNNING.value,
                end_time=None,
                error=None,
                owner=owner,
                heartbeat_at=now_ms(),
            )
        )

    db.transact(tx)


# -- liveness: a RUNNING run whose process died is KILLED ------------------------------------


def heartbeat(db: Database, run_ids: Sequence[str]) -> None:
    """Refresh the heartbeat of this process's live runs (called by the metric writer's
    thread every :data:`loopml.store.liveness.HEARTBEAT_S` seconds)."""
    if not run_ids:
        return
    owner = liveness.owner_token()
    db.transact(
        lambda conn: conn.execute(
            update(runs)
            .where(runs.c.id.in_(list(run_ids)), runs.c.owner == owner)
            .values(heartbeat_at=now_ms())
        )
    )


def reap_dead_runs(db: Database, run_ids: Sequence[str] | None = None) -> list[str]:
    """Mark RUNNING runs whose owner process is gone (:func:`loopml.store.liveness.owner_alive`)
    as KILLED, persistently, and return their ids; reading runs calls it, so a run killed with
    SIGKILL shows as KILLED to every reader.

    The end time is its last sign of life: the later of its last heartbeat and its last
    metric point (not after now). A store that refuses the write (read-only) leaves the runs
    as they are."""
    stmt = (
        select(
            runs.c.id,
            runs.c.name,
            runs.c.owner,
            runs.c.heartbeat_at,
            experiments.c.name.label("experiment"),
        )
        .join(experiments, experiments.c.id == runs.c.experiment_id)
        .where(runs.c.status == RunStatus.RUNNING.value)
    )
    if run_ids is not None:
        stmt = stmt.where(runs.c.id.in_(list(run_ids)))
    with db.read() as conn:
        candidates = conn.execute(stmt).all()
    now = now_ms()
    dead = [row for row in candidates if not liveness.owner_alive(row.owner, row.heartbeat_at, now)]
    if not dead:
        return []

    def tx(conn: Connection) -> list[str]:
        reaped = []
        last_points = dict(
            conn.execute(
                select(latest_metrics.c.run_id, func.max(latest_metrics.c.timestamp))
                .where(latest_metrics.c.run_id.in_([row.id for row in dead]))
                .group_by(latest_metrics.c.run_id)
            ).all()
        )
        for row in dead:
            last_seen = max(row.heartbeat_at or 0, min(last_points.get(row.id) or 0, now))
            same_owner = runs.c.owner.is_(None) if row.owner is None else runs.c.owner == row.owner
            who = row.owner or "not recorded: a run started by an older loopml"
            moved = conn.execute(
                update(runs)
                .where(runs.c.id == row.id, runs.c.status == RunStatus.RUNNING.value, same_owner)
                .values(
                    status=RunStatus.KILLED.value,
                    end_time=last_seen or now,
                    error=f"The process running this run ({who}) stopped without ending it: "
                    "killed (SIGKILL, out of memory) or its machine went down. What it logged "
                    "is kept; continue it with start_run(run_id=...).",
                )
            ).rowcount
            if moved:
                reaped.append(row.id)
        for row in dead:  # last: the events' lock is held from here to commit
            if row.id in reaped:
                emit_run_ended(conn, row.experiment, row.id, row.name, RunStatus.KILLED)
        return reaped

    try:
        return db.transact(tx)
    except (LoopmlError, DBAPIError) as exc:
        logging.getLogger(__name__).debug("loopml: could not mark dead runs KILLED: %s", exc)
        return []


class Run:
    """A run in progress. Use it as a context manager; leaving the block ends the run
    (FINISHED, or FAILED with the traceback recorded if an exception escapes)."""

    def __init__(
        self,
        api: Runs,
        run_id: str,
        name: str,
        experiment_id: int,
        experiment: str,
        parent_run_id: str | None = None,
    ) -> None:
        self._api = api
        self.id = run_id
        self.name = name
        self.experiment_id = experiment_id
        self.experiment = experiment
        self.parent_run_id = parent_run_id
        self.status = RunStatus.RUNNING
        self._next_step: dict[str, int] = {}
        self._sampler: SystemMetricsSampler | None = None
        self._end_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<Run {self.id} {self.name!r} experiment={self.experiment!r} {self.status}>"

    def _check_active(self) -> None:
        if self.status is not RunStatus.RUNNING:
            raise RunNotActive(
                f"Run {self.id} ({self.name}) is {self.status}: nothing more can be logged to it."
            )

    # -- metrics (buffered) ----------------------------------------------------------------

    def log_metric(
        self, key: str, value: float, step: int | None = None, timestamp: Any = None
    ) -> None:
        """Record one point. Returns at once; a background thread writes it within
        ``flush_interval`` seconds (NaN and ±inf are stored as such).

        ``step`` is an integer that fits in 64 bits (default: one more than this key's last);
        ``timestamp`` is seconds since the epoch, as ``time.time()`` gives, or a datetime
        (default: now). A value in milliseconds, MLflow's unit, is refused with
        :class:`~loopml.exceptions.InvalidValue`: divide it by 1000."""
        if self.status is not RunStatus.RUNNING:
            self._check_active()
        keys.check_key(key, "metric key")
        number = keys.metric_value(key, value)
        step = self._next_step.get(key, 0) if step is None else keys.step_value(key, step)
        self._next_step[key] = step + 1
        ts = now_ms() if timestamp is None else keys.timestamp_ms(timestamp, key)
        self._api._writer().add((self.id, key, number, step, ts))

    def log_metrics(
        self, values: dict[str, float], step: int | None = None, timestamp: Any = None
    ) -> None:
        """Record several metrics at one step."""
        self._check_active()
        ts = now_ms() if timestamp is None else keys.timestamp_ms(timestamp)
        given = None if step is None else keys.step_value("metrics", step)
        points = []
        next_step = self._next_step
        for key, value in values.items():
            keys.check_key(key, "metric key")
            number = keys.metric_value(key, value)
            s = next_step.get(key, 0) if given is None else given
            next_step[key] = s + 1
            points.append((self.id, key, number, s, ts))
        self._api._writer().extend(points)

    # -- params and tags (written at once) -------------------------------------------------

    def log_param(self, key: str, value: Any) -> None:
        """Record a param. Params are immutable: the same value again is fine, another raises."""
        self.log_params({key: value})

    def log_params(self, values: dict[str, Any]) -> None:
        self._check_active()
        items = {keys.check_key(k, "param key"): keys.param_value(k, v) for k, v in values.items()}
        if not items:
            return

        def tx(conn: Connection) -> None:
            require_running(conn, self.id)
            existing = dict(
                conn.execute(
                    select(params.c.key, params.c.value).where(
                        params.c.run_id == self.id, params.c.key.in_(list(items))
                    )
                ).all()
            )
            clashes = {
                k: (existing[k], v) for k, v in items.items() if k in existing and existing[k] != v
            }
            if clashes:
                detail = "; ".join(
                    f"{k!r} is {old!r}, not {new!r}" for k, (old, new) in clashes.items()
                )
                raise ParamConflict(
                    f"Params of run {self.id} are immutable: {detail}. Log the new value "
                    "under another key, or start a new run."
                )
            new = [
                {"run_id": self.id, "key": k, "value": v}
                for k, v in items.items()
                if k not in existing
            ]
            if new:
                conn.execute(insert(params), new)

        self._api.db.transact(tx)

    def set_tag(self, key: str, value: Any) -> None:
        self.set_tags({key: value})

    def set_tags(self, values: dict[str, Any]) -> None:
        """Tags are mutable labels (a later value replaces an earlier one)."""
        items = {keys.check_key(k, "tag key"): keys.tag_value(k, v) for k, v in values.items()}
        self._api.db.transact(lambda conn: upsert_tags(conn, self.id, items))

    # -- artifacts and inputs ----------------------------------------------------------------

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> list[str]:
        """Store a file or a folder (every file under it) in the blob store; returns the
        artifact paths. A folder's files go under ``artifact_path`` (default: its name)."""
        self._check_active()
        rows = store_artifacts(self._api.blobs, path, artifact_path)
        self._api.db.transact(lambda conn: upsert_artifacts(conn, self.id, rows))
        return [r[0] for r in rows]

    def log_text(self, text: str, artifact_file: str) -> str:
        """Store ``text`` as the artifact ``artifact_file`` (e.g. ``notes/readme.md``)."""
        return self._log_bytes(text.encode(), artifact_file)

    def log_dict(self, value: Any, artifact_file: str) -> str:
        """Store a JSON-serialisable value as a JSON (or YAML, by extension) artifact."""
        if artifact_file.endswith((".yaml", ".yml")):
            import yaml

            data = yaml.safe_dump(value, sort_keys=False).encode()
        else:
            data = json.dumps(value, indent=2, default=str).encode()
        return self._log_bytes(data, artifact_file)

    def _log_bytes(self, data: bytes, artifact_file: str) -> str:
        self._check_active()
        from loopml.tracking.artifacts import _clean_artifact_path

        path = _clean_artifact_path(artifact_file)
        digest = self._api.blobs.put_bytes(data)
        self._api.db.transact(
            lambda conn: upsert_artifacts(conn, self.id, [(path, digest, len(data))])
        )
        return path

    def log_input(self, source: Any, name: str | None = None) -> DatasetRef:
        """Record a dataset this run read (a path, pointer file, DataFrame or Arrow table) by
        its content hash."""
        self._check_active()
        ref = dataset_ref(source, name)
        keys.check_key(ref.name, "input name")
        stmt = upsert(self._api.db.dialect, run_inputs)
        stmt = stmt.on_conflict_do_update(
            index_elements=[run_inputs.c.run_id, run_inputs.c.name],
            set_={
                "digest": stmt.excluded.digest,
                "source": stmt.excluded.source,
                "size": stmt.excluded.size,
                "file_count": stmt.excluded.file_count,
            },
        )
        row = {
            "run_id": self.id,
            "name": ref.name,
            "digest": ref.digest,
            "source": ref.source,
            "size": ref.size,
            "file_count": ref.file_count,
            "created_at": now_ms(),
        }
        self._api.db.transact(lambda conn: conn.execute(stmt, [row]))
        return ref

    def record_seed(self, seed: int) -> None:
        self._api.db.transact(
            lambda conn: conn.execute(update(runs).where(runs.c.id == self.id).values(seed=seed))
        )
        self.set_tag("loopml.seed", seed)

    # -- ending ------------------------------------------------------------------------------

    def end(self, status: str | RunStatus = RunStatus.FINISHED, error: str | None = None) -> None:
        """End the run: flush its metrics and record its status. A second call does nothing.
        The run stops being this process's active run even when recording the end fails."""
        final = RunStatus(str(status).upper())
        with self._end_lock:
            if self.status is not RunStatus.RUNNING:
                return
            if self._sampler is not None:
                self._sampler.stop()
            try:
                self._api.flush()
            finally:
                self.status = final
                try:
                    self._record_end(final, error)
                finally:
                    self._api._forget(self)

    def _record_end(self, status: RunStatus, error: str | None) -> None:
        """Store the run's end (status, end time, error) with its ``run.finished``,
        ``run.failed`` or ``run.killed`` event."""

        def tx(conn: Connection) -> None:
            conn.execute(
                update(runs)
                .where(runs.c.id == self.id)
                .values(status=status.value, end_time=now_ms(), error=error)
            )
            emit_run_ended(conn, self.experiment, self.id, self.name, status, error)

        self._api.db.transact(tx)

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None or (
            isinstance(exc, SystemExit)
            and not isinstance(exc, Terminated)
            and exc.code in (0, None)
        ):
            self.end(RunStatus.FINISHED)
        elif isinstance(exc, KeyboardInterrupt | Terminated):
            self.end(RunStatus.KILLED, error=f"{type(exc).__name__}")
        else:
            self.end(RunStatus.FAILED, error="".join(traceback.format_exception(exc_type, exc, tb)))
