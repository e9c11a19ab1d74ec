"""Backfills: one pipeline run per partition over a range, a few at a time.

    backfill(train_churn, "2026-10-01", "2026-10-31", parallel=4)

A partition's run replaces the partition's previous run (its outputs and its tracking run),
so rerunning a range never duplicates anything; with the cache on, tasks whose code and
inputs did not change are reused, not recomputed.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from loopml.pipelines.exceptions import PipelineDefinitionError
from loopml.pipelines.executors import Executor, resolve_executor
from loopml.workspace import resolve_workspace

if TYPE_CHECKING:
    from loopml.pipelines.pipeline import Pipeline
    from loopml.pipelines.runner import PipelineRun
    from loopml.workspace import WorkspaceLike

STEPS = ("hour", "day", "week", "month")
MAX_PARTITIONS = 100_000


def _moment(value: str | date | datetime, what: str) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    try:
        return datetime.fromisoformat(str(value).strip())
    except ValueError as exc:
        raise PipelineDefinitionError(
            f"The backfill {what} {value!r} is not a date: use YYYY-MM-DD (or an ISO datetime)."
        ) from exc


def partitions_between(
    start: str | date | datetime,
    end: str | date | datetime,
    step: str = "day",
    fmt: str = "%Y-%m-%d",
) -> list[str]:
    """Partition keys from ``start`` to ``end`` inclusive, every ``step`` (hour, day, week,
    month), formatted with ``fmt``.

    >>> partitions_between("2026-10-30", "2026-11-01")
    ['2026-10-30', '2026-10-31', '2026-11-01']
    """
    first, last = _moment(start, "start"), _moment(end, "end")
    if step not in STEPS:
        raise PipelineDefinitionError(f"Unknown step {step!r}: use one of {', '.join(STEPS)}.")
    if last < first:
        raise PipelineDefinitionError(
            f"The backfill end {last:%Y-%m-%d} is before its start {first:%Y-%m-%d}."
        )
    keys: dict[str, datetime] = {}
    index = 0
    current = first
    while current <= last:
        key = current.strftime(fmt)
        if key in keys:
            raise PipelineDefinitionError(
                f"The partition format {fmt!r} can't tell one {step} from the next: "
                f"{keys[key]:%Y-%m-%dT%H:%M} and {current:%Y-%m-%dT%H:%M} are both partition "
                f"{key!r}. Use a --step the format can hold, or give the pipeline a finer "
                "partition_format (e.g. @pipeline(partition=..., partition_format="
                "'%Y-%m-%dT%H') for hours)."
            )
        keys[key] = current
        if len(keys) > MAX_PARTITIONS:
            raise PipelineDefinitionError(
                f"The range has more than {MAX_PARTITIONS:,} partitions: split it."
            )
        index += 1
        current = _add_months(first, index) if step == "month" else first + index * _STEP[step]
    return list(keys)


_STEP = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(weeks=1)}


def _add_months(moment: datetime, months: int) -> datetime:
    """``moment`` plus ``months`` months, the day clamped to the month's length (Jan 31 →
    Feb 28 → Mar 31)."""
    total = moment.month - 1 + months
    year, month = moment.year + total // 12, total % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def backfill(
    pipeline: Pipeline | str,
    start: str | date | datetime | None = None,
    end: str | date | datetime | None = None,
    *,
    partitions: Iterable[str] | None = None,
    step: str = "day",
    params: Mapping[str, Any] | None = None,
    parallel: int = 1,
    executor: str | Executor = "threads",
    max_workers: int | None = None,
    cache: bool = True,
    workspace: WorkspaceLike = None,
    progress: Callable[..., None] | None = None,
) -> list[PipelineRun]:
    """Run ``pipeline`` once per partition from ``start`` to ``end`` (or of ``partitions``),
    ``parallel`` runs at a time sharing one executor; returns the runs in partition order.
    A failed partition does not stop the others: check each run's ``status``.

    ``progress`` is called with keywords only: ``total_files=`` the number of runs once
    known, then ``files=1`` as each run ends (the CLI draws it as a bar)."""
    from loopml.pipelines.refs import load_pipeline
    from loopml.pipelines.runner import run_pipeline

    ws = resolve_workspace(workspace)
    pipe = load_pipeline(pipeline, ws.root)
    if pipe.partition is None:
        raise PipelineDefinitionError(
            f"Pipeline {pipe.name!r} has no partition key: declare one with "
            f"@pipeline(partition='<param>') to backfill it."
        )
    if partitions is not None:
        keys = list(dict.fromkeys(str(p) for p in partitions))
    elif start is not None and end is not None:
        keys = partitions_between(start, end, step, pipe.partition_format)
    else:
        raise PipelineDefinitionError("backfill needs start and end, or partitions=[...].")
    if parallel < 1:
        raise PipelineDefinitionError(f"parallel must be at least 1, got {parallel}.")
    base = dict(params or {})
    if pipe.partition in base:
        raise PipelineDefinitionError(
            f"{pipe.partition!r} is the partition key: it is set per run, not in params."
        )
    pool, owned = resolve_executor(executor, max_workers)
    detail = {"start": keys[0] if keys else None, "end": keys[-1] if keys else None}
    report = progress or (lambda **_: None)
    report(total_files=len(keys))

    def one(key: str) -> PipelineRun:
        values = {**base, **pipe.coerce({pipe.partition or "": key})}
        try:
            return run_pipeline(
                pipe,
                values,
                executor=pool,
                cache=cache,
                workspace=ws,
                raise_on_failure=False,
                trigger="backfill",
                trigger_detail=detail,
            )
        finally:
            report(files=1)

    try:
        if parallel == 1 or len(keys) <= 1:
            return [one(key) for key in keys]
        with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="loopml-backfill") as tp:
            return list(tp.map(one, keys))
    finally:
        if owned:
            pool.close()
