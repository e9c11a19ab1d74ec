"""Materialization: the latest value of each entity, as known at ``end``, into the online store.

For each online view, a job ``(view, start, end, partitions)`` selects per entity the row with
the latest event time in ``[start, end]`` among rows created by ``end`` (ties broken by created
time, as in training sets), drops values already older than the view's TTL at ``end``, and
writes them with :meth:`OnlineStore.write` (newer-wins, so a rerun or an older job never
regresses a value).

Entities are split into ``partitions`` by a hash of their join keys, computed in DuckDB; each
partition is one task on the pipelines' executors (``threads``, ``processes``, ``ray``). Each
partition's status is a row of ``feature_materializations``: rerunning the same job skips the
DONE partitions, so an interrupted materialization resumes where it stopped, and running it
again changes nothing. A partition writes in batches of :data:`BATCH_ROWS`, each atomic.
"""

from __future__ import annotations

import os
import pickle
import queue
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, and_, case, delete, func, insert, select

from loopml import events
from loopml.features import offline
from loopml.features.definitions import DTYPES, FeatureView
from loopml.features.errors import (
    FeatureDefinitionError,
    MaterializationFailed,
    OnlineStoreUnavailable,
)
from loopml.features.online import (
    REDIS_BATCH,
    OnlineRow,
    OnlineStore,
    entity_key,
    open_online_store,
)
from loopml.features.tables import feature_materializations as fm

if TYPE_CHECKING:
    from loopml.pipelines.executors import Executor, Outcome
    from loopml.store.db import Database

BATCH_ROWS = REDIS_BATCH  # each write is one transaction / one Redis script: atomic
RUNNING, DONE, FAILED = "RUNNING", "DONE", "FAILED"


@dataclass(frozen=True)
class Partition:
    """One task of a materialization: what a worker (thread, process, Ray) needs to compute
    and write one slice of the entities of one view."""

    view: FeatureView
    context: offline.SourceContext
    online_url: str
    root: str
    start: datetime
    end: datetime
    partitions: int
    index: int
    late_after: datetime | None = None  # incremental: also rows created after this


@dataclass
class Materialized:
    """What one view's materialization did: rows written, partitions run and skipped."""

    view: str
    start: datetime
    end: datetime
    partitions: int
    rows: int = 0
    ran: int = 0
    skipped: int = 0
    rows_by_partition: dict[int, int] = field(default_factory=dict)


# -- the partition (runs in a worker) ----------------------------------------------------------


def partition_sql(
    view: FeatureView, source: str, partitions: int, index: int, ttl_floor: bool, late: bool
) -> str:
    """The SELECT of one partition's latest rows: join keys, event and created µs, features.
    Parameters: ``$start``, ``$end``, ``$floor`` (when ``ttl_floor``), ``$late`` (when
    ``late``)."""
    q = offline.quote
    keys = ", ".join(q(k) for k in view.join_keys)
    features = ", ".join(q(f) for f in view.feature_names)
    window = f"{offline.EVENT} BETWEEN $start AND $end"
    if late:  # incremental: rows that arrived since the last run, whatever their event time
        window = f"({window} OR ({offline.CREATED} > $late AND {offline.EVENT} <= $end))"
    where = [window, f"{offline.CREATED} <= $end"]
    if ttl_floor:
        where.append(f"{offline.EVENT} >= $floor")
    if partitions > 1:
        where.append(f"hash({keys}) % {partitions} = {index}")
    return (
        f"SELECT {keys}, epoch_us({offline.EVENT}) AS __e, epoch_us({offline.CREATED}) AS __c, "
        f"{features} FROM ({source}) WHERE {' AND '.join(where)} "
        f"QUALIFY row_number() OVER (PARTITION BY {keys} "
        f"ORDER BY {offline.EVENT} DESC, {offline.CREATED} DESC) = 1"
    )


def run_partition(payload: bytes) -> int:
    """Compute and write one partition (see :class:`Partition`); returns the rows written."""
    task: Partition = pickle.loads(payload)
    view = task.view
    store = open_online_store(task.online_url, task.root)
    con = offline.connect(Path(task.root) / ".loopml" / "features" / "duckdb-tmp")
    try:
        source = offline.source_select(view, con, task.context, f"__m{task.index}")
        floor = task.end - view.ttl if view.ttl is not None else None
        sql = partition_sql(
            view,
            source,
            task.partitions,
            task.index,
            ttl_floor=floor is not None,
            late=task.late_after is not None,
        )
        params: dict[str, Any] = {"start": task.start, "end": task.end}
        if floor is not None:
            params["floor"] = floor
        if task.late_after is not None:
            params["late"] = task.late_after
        cursor = con.execute(sql, params)
        n_keys = len(view.join_keys)
        names = view.feature_names
        written = 0
        while True:
            batch = cursor.fetchmany(BATCH_ROWS)
            if not batch:
                break
            rows = [
                OnlineRow(
                    entity_key(row[:n_keys]),
                    row[n_keys],
                    row[n_keys + 1],
                    dict(zip(names, row[n_keys + 2 :], strict=True)),
                )
                for row in batch
            ]
            written += store.write(view.name, rows)
        return written
    finally:
        con.close()
        store.close()


def partition_payload(task: Partition) -> bytes:
    """``task`` pickled for another process: the view's transform (defined in the user's
    features module, which a worker may not import) is pickled by value."""
    import cloudpickle

    modules = []
    if task.view.transform is not None:
        module = sys.modules.get(getattr(task.view.transform, "__module__", "") or "")
        if module is not None and module.__name__ not in ("__main__", "builtins"):
            modules.append(module)
    registered = []
    for module in modules:
        try:
            cloudpickle.register_pickle_by_value(module)
        except ValueError:  # not a plain module (a package's __main__...): pickled by reference
            continue
        registered.append(module)
    try:
        return bytes(cloudpickle.dumps(task, protocol=pickle.HIGHEST_PROTOCOL))
    finally:
        for module in registered:
            cloudpickle.unregister_pickle_by_value(module)


# -- the job (runs in the caller) --------------------------------------------------------------


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _job_filter(view: str, start: datetime, end: datetime, partitions: int) -> Any:
    return and_(
        fm.c.view == view,
        fm.c.start_at == _ms(start),
        fm.c.end_at == _ms(end),
        fm.c.partitions == partitions,
    )


def done_partitions(
    db: Database, view: str, start: datetime, end: datetime, partitions: int
) -> dict[int, int]:
    """Partition → rows of the job's partitions that are DONE."""
    with db.read() as conn:
        found = conn.execute(
            select(fm.c.partition, fm.c.rows).where(
                _job_filter(view, start, end, partitions), fm.c.status == DONE
            )
        ).all()
    return {int(p): int(r or 0) for p, r in found}


def _set_status(
    db: Database,
    view: str,
    start: datetime,
    end: datetime,
    partitions: int,
    index: int,
    status: str,
    rows: int | None = None,
) -> None:
    def write(conn: Connection) -> None:
        where = and_(_job_filter(view, start, end, partitions), fm.c.partition == index)
        conn.execute(delete(fm).where(where))
        conn.execute(
            insert(fm).values(
                view=view,
                start_at=_ms(start),
                end_at=_ms(end),
                partitions=partitions,
                partition=index,
                status=status,
                rows=rows,
                updated_at=int(time.time() * 1000),
            )
        )

    db.transact(write)


def last_done_end(db: Database, view: str) -> datetime | None:
    """The end of the latest materialization of ``view`` whose partitions are all DONE."""
    done = func.sum(case((fm.c.status == DONE, 1), else_=0))
    with db.read() as conn:
        found = conn.execute(
            select(func.max(fm.c.end_at)).where(
                fm.c.end_at.in_(
                    select(fm.c.end_at)
                    .where(fm.c.view == view)
                    .group_by(fm.c.start_at, fm.c.end_at, fm.c.partitions)
                    .having(done == fm.c.partitions)
                ),
                fm.c.view == view,
            )
        ).scalar()
    return None if found is None else datetime.fromtimestamp(found / 1000, UTC)


def materialize_views(
    db: Database,
    views: Sequence[FeatureView],
    windows: Sequence[tuple[datetime, datetime, datetime | None]],
    *,
    context: offline.SourceContext,
    online_url: str,
    root: Path,
    partitions: int,
    executor: str | Executor = "threads",
    progress: Callable[..., None] | None = None,
) -> list[Materialized]:
    """Materialize each of ``views`` over its ``(start, end, late_after)`` window, partition by
    partition on ``executor``; see the module doc. Raises :class:`MaterializationFailed` after
    every partition ran if any failed (the DONE ones are kept)."""
    from loopml.pipelines.context import TaskContext, function_payload
    from loopml.pipelines.executors import Job, resolve_executor

    if partitions < 1:
        raise FeatureDefinitionError(f"partitions must be at least 1, got {partitions}.")
    report = progress or (lambda **_: None)
    results = [
        Materialized(view.name, start, end, partitions)
        for view, (start, end, _) in zip(views, windows, strict=True)
    ]
    todo: list[tuple[int, Partition]] = []
    for i, (view, (start, end, late)) in enumerate(zip(views, windows, strict=True)):
        done = done_partitions(db, view.name, start, end, partitions)
        results[i].skipped = len(done)
        results[i].rows_by_partition.update(done)
        for index in range(partitions):
            if index not in done:
                todo.append(
                    (
                        i,
                        Partition(
                            view,
                            context,
                            online_url,
                            str(root),
                            start,
                            end,
                            partitions,
                            index,
                            late,
                        ),
                    )
                )
    report(total_files=len(todo))
    if not todo:
        return _finish(db, results)
    pool, owned = resolve_executor(executor)
    outcomes: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
    run_id = uuid.uuid4().hex
    payload = function_payload(run_partition)
    failures: list[tuple[tuple[int, int], str]] = []  # ((view, partition), what failed)
    errors: list[BaseException] = []
    try:
        jobs: dict[int, tuple[int, Partition]] = {}
        for number, (i, task) in enumerate(todo):
            _set_status(db, task.view.name, task.start, task.end, partitions, task.index, RUNNING)
            context_ = TaskContext(
                pipeline="features.materialize",
                pipeline_run_id=run_id,
                node=task.view.name,
                task=f"{task.view.name}[{task.index}/{partitions}]",
                attempt=1,
                partition=str(task.index),
            )
            job = Job(
                number,
                run_partition,
                (partition_payload(task),),
                {},
                context_,
                payload=lambda: payload,
            )
            jobs[number] = (i, task)
            pool.submit(job, outcomes.put)
        for _ in range(len(jobs)):
            outcome = outcomes.get()
            i, task = jobs[outcome.job.id]
            if outcome.ok:
                rows = int(outcome.value)
                _set_status(
                    db, task.view.name, task.start, task.end, partitions, task.index, DONE, rows
                )
                results[i].rows_by_partition[task.index] = rows
                results[i].ran += 1
                report(files=1, rows=rows)
            else:
                _set_status(
                    db, task.view.name, task.start, task.end, partitions, task.index, FAILED
                )
                errors.append(outcome.error or RuntimeError("failed"))
                failures.append(
                    (
                        (i, task.index),
                        f"{type(outcome.error).__name__}: {str(outcome.error).rstrip('.')}",
                    )
                )
                report(files=1)
    finally:
        if owned:
            pool.close()
    if failures:
        if all(isinstance(e, OnlineStoreUnavailable) for e in errors):
            # An unreachable store fails every partition alike: say it once.
            raise OnlineStoreUnavailable(str(errors[0])) from errors[0]
        raise MaterializationFailed(
            _failed(failures, [view.name for view in views], partitions, len(views) * partitions)
        )
    return _finish(db, results)


def _failed(
    failures: list[tuple[tuple[int, int], str]], names: list[str], partitions: int, total: int
) -> str:
    """What :class:`MaterializationFailed` says: each failure in (view, partition) order, a
    cause shared by every failed partition of a view said once, and "the others are done"
    only when some are."""
    ordered = sorted(failures)
    causes = {text for _, text in ordered}
    failed_views = sorted({i for (i, _), _ in ordered})
    if len(causes) == 1:
        (cause,) = causes
        if len(failed_views) == 1:
            name = names[failed_views[0]]
            count = len(ordered)
            which = (
                f"all {partitions} partitions of {name}"
                if count == partitions and partitions > 1
                else f"the only partition of {name}"
                if count == partitions
                else f"{count} of {partitions} partitions of {name} "
                f"({', '.join(str(p) for (_, p), _ in ordered)})"
            )
        else:
            which = (
                f"all {len(ordered)} partitions"
                if len(ordered) == total
                else f"{len(ordered)} partition(s)"
            ) + f" of {', '.join(names[i] for i in failed_views)}"
        head = f"{which} failed: {cause}"
    else:
        head = f"{len(ordered)} partition(s) failed: " + "; ".join(
            f"{names[i]} partition {p}/{partitions}: {text}" for (i, p), text in ordered[:5]
        )
        if len(ordered) > 5:
            head += f"; and {len(ordered) - 5} more"
    if len(ordered) < total:
        return f"{head}. The others are done; run the same materialization again to finish it."
    return f"{head}. Nothing was materialized; fix that and run it again."


def _finish(db: Database, results: list[Materialized]) -> list[Materialized]:
    for result in results:
        result.rows = sum(result.rows_by_partition.values())
        if result.ran:
            events.emit(
                db,
                "feature.materialized",
                result.view,
                {
                    "start": result.start.isoformat(),
                    "end": result.end.isoformat(),
                    "rows": result.rows,
                    "partitions": result.partitions,
                },
            )
    return results


def incremental_start(
    db: Database, view: FeatureView, end: datetime
) -> tuple[datetime, datetime | None]:
    """Where :meth:`materialize_incremental` starts for ``view``: the end of its last complete
    materialization (rows created since then are also taken, so late arrivals aren't
    missed); else ``end - ttl``; else the beginning of time."""
    last = last_done_end(db, view.name)
    if last is not None:
        return last, last
    if view.ttl is not None:
        return end - view.ttl, None
    return datetime(1970, 1, 1, tzinfo=UTC), None


# -- pushes ------------------------------------------------------------------------------------


def push(
    view: FeatureView,
    frame: Any,
    *,
    con: Any,
    store: OnlineStore | None,
    pushed_dir: Path | None,
) -> int:
    """Write ``frame``'s rows of ``view`` to ``store`` (newer-wins) and, with ``pushed_dir``,
    as a Parquet file of the view's offline log (``pushed_dir/<view>/*.parquet``, written to a
    temporary name then renamed, so a reader never sees half a file). Their created time is
    now. ``con`` (DuckDB) is closed."""
    from loopml.features.errors import InvalidEntityFrame

    q = offline.quote
    try:
        if not hasattr(frame, "columns") and hasattr(frame, "schema"):
            frame = frame.to_pandas()
        if not hasattr(frame, "columns"):
            raise InvalidEntityFrame(
                f"push takes a pandas DataFrame or an Arrow table, not {type(frame).__name__}."
            )
        ts = view.source.timestamp_field
        needed = [*view.join_keys, ts, *view.feature_names]
        columns = [str(c) for c in frame.columns]
        missing = [c for c in needed if c not in columns]
        if missing:
            raise InvalidEntityFrame(
                f"The rows pushed to {view.name!r} have no column {', '.join(map(repr, missing))}: "
                f"a push needs the join keys, {ts!r} and every feature of the view "
                f"(it has {', '.join(columns)})."
            )
        con.register("__pushed", frame)
        now = datetime.now(UTC)
        keys = ", ".join(q(k) for k in view.join_keys)
        features = ", ".join(
            f"CAST({q(f.name)} AS {DTYPES[f.dtype]}) AS {q(f.name)}" for f in view.schema
        )
        try:
            con.execute(
                f"CREATE TEMP TABLE __rows AS SELECT {keys}, CAST({q(ts)} AS TIMESTAMPTZ) AS "
                f"{offline.EVENT}, CAST($now AS TIMESTAMPTZ) AS {offline.CREATED}, {features} "
                "FROM __pushed",
                {"now": now},
            )
        except Exception as exc:
            raise InvalidEntityFrame(
                f"The rows pushed to {view.name!r} can't be read as the view's types: "
                f"{str(exc).splitlines()[0]}"
            ) from exc
        bad = con.execute(
            f"SELECT count(*) FROM __rows WHERE {offline.EVENT} IS NULL OR "
            + " OR ".join(f"{q(k)} IS NULL" for k in view.join_keys)
        ).fetchone()
        if bad and bad[0]:
            raise InvalidEntityFrame(
                f"{bad[0]} row(s) pushed to {view.name!r} have no {ts!r} or a null join key."
            )
        total = con.execute("SELECT count(*) FROM __rows").fetchone()
        count = int(total[0]) if total else 0
        if store is not None:
            n_keys = len(view.join_keys)
            names = view.feature_names
            cursor = con.execute(
                f"SELECT {keys}, epoch_us({offline.EVENT}), epoch_us({offline.CREATED}), "
                f"{', '.join(q(n) for n in names)} FROM __rows"
            )
            while batch := cursor.fetchmany(BATCH_ROWS):
                store.write(
                    view.name,
                    [
                        OnlineRow(
                            entity_key(row[:n_keys]),
                            row[n_keys],
                            row[n_keys + 1],
                            dict(zip(names, row[n_keys + 2 :], strict=True)),
                        )
                        for row in batch
                    ],
                )
        if pushed_dir is not None and count:
            folder = pushed_dir / view.name
            folder.mkdir(parents=True, exist_ok=True)
            name = f"{int(now.timestamp() * 1_000_000)}-{uuid.uuid4().hex[:8]}.parquet"
            temporary = folder / f".{name}.tmp"
            con.execute(f"COPY __rows TO {offline.literal(str(temporary))} (FORMAT parquet)")
            os.replace(temporary, folder / name)
        return count
    finally:
        con.close()
