"""Partitions and backfills: one run per partition; rerunning replaces, never duplicates."""

from __future__ import annotations

from datetime import date

import pytest

from loopml.pipelines import (
    PipelineDefinitionError,
    backfill,
    partitions_between,
    pipeline,
    run_pipeline,
    task,
)
from loopml.pipelines import records as rec
from loopml.workspace import Workspace


def test_partitions_between() -> None:
    assert partitions_between("2026-10-30", "2026-11-02") == [
        "2026-10-30",
        "2026-10-31",
        "2026-11-01",
        "2026-11-02",
    ]
    assert partitions_between(date(2026, 1, 31), "2026-04-01", step="month") == [
        "2026-01-31",
        "2026-02-28",
        "2026-03-31",
    ]
    assert partitions_between("2026-01-01", "2026-01-15", step="week") == [
        "2026-01-01",
        "2026-01-08",
        "2026-01-15",
    ]
    hours = partitions_between("2026-01-01T22:00", "2026-01-02T01:00", "hour", "%Y-%m-%dT%H")
    assert hours == ["2026-01-01T22", "2026-01-01T23", "2026-01-02T00", "2026-01-02T01"]
    with pytest.raises(PipelineDefinitionError, match="before its start"):
        partitions_between("2026-02-01", "2026-01-01")
    with pytest.raises(PipelineDefinitionError, match="is not a date"):
        partitions_between("yesterday", "2026-01-01")
    # hours in a format of days: refused, not three runs quietly made one
    with pytest.raises(PipelineDefinitionError, match="can't tell one hour from the next"):
        partitions_between("2026-10-01T05:00", "2026-10-01T07:00", "hour")


@task
def daily_rows(day: date) -> int:
    if day.day == 13:
        raise ValueError("unlucky day")
    return day.day * 10


@task
def summary(rows: int, day: date) -> str:
    return f"{day:%a} {rows}"


@pipeline(partition="day")
def daily(day: date, region: str = "eu"):
    return summary(daily_rows(day), day)


def test_backfill_runs_one_pipeline_run_per_partition(pws: Workspace) -> None:
    runs = backfill(daily, "2026-10-01", "2026-10-07", parallel=3, params={"region": "us"})
    assert [r.partition for r in runs] == [f"2026-10-0{i}" for i in range(1, 8)]
    assert all(r.ok for r in runs)
    assert runs[0].result == "Thu 10"
    assert runs[0].params == {"day": date(2026, 10, 1), "region": "us"}
    current = rec.current_partitions(pws.db, "daily")
    assert current == {r.partition: r.id for r in runs}
    stored = rec.get_run(pws.db, runs[0].id)
    assert stored.trigger == "backfill" and stored.partition == "2026-10-01"
    assert stored.trigger_detail == {"start": "2026-10-01", "end": "2026-10-07"}


@pytest.mark.slow
def test_rerunning_a_range_replaces_its_runs(pws: Workspace) -> None:
    first = backfill(daily, "2026-10-01", "2026-10-03")
    again = backfill(daily, "2026-10-01", "2026-10-03", parallel=2)
    assert all(t.status == "CACHED" for r in again for t in r.tasks.values())
    forced = backfill(daily, "2026-10-02", "2026-10-02", cache=False)
    assert forced[0].tasks["daily_rows"].status == "COMPLETED"
    current = rec.current_partitions(pws.db, "daily")
    assert current == {
        "2026-10-01": again[0].id,
        "2026-10-02": forced[0].id,
        "2026-10-03": again[2].id,
    }
    assert rec.get_run(pws.db, first[0].id).superseded_by == again[0].id
    live = rec.list_runs(pws.db, "daily", include_superseded=False)
    assert sorted(r.partition or "" for r in live) == ["2026-10-01", "2026-10-02", "2026-10-03"]
    # One visible tracking run per partition: the replaced ones are soft-deleted.
    tracking = pws.search_runs(experiments=["daily"])
    assert len(tracking) == 3
    assert set(tracking["run_id"]) == {
        rec.get_run(pws.db, run_id).tracking_run_id for run_id in current.values()
    }
    # A manual run of a partition replaces it too.
    manual = run_pipeline(daily, {"day": date(2026, 10, 1)})
    assert rec.current_partitions(pws.db, "daily")["2026-10-01"] == manual.id


def test_a_failed_partition_does_not_stop_the_others(pws: Workspace) -> None:
    runs = backfill(daily, "2026-10-12", "2026-10-14", parallel=2)
    assert [r.status for r in runs] == ["FINISHED", "FAILED", "FINISHED"]
    assert "2026-10-13" not in rec.current_partitions(pws.db, "daily")


def test_backfill_needs_a_partition_key(pws: Workspace) -> None:
    @pipeline
    def unpartitioned(day: date):
        daily_rows(day)

    with pytest.raises(PipelineDefinitionError, match="has no partition key"):
        backfill(unpartitioned, "2026-10-01", "2026-10-02")
    with pytest.raises(PipelineDefinitionError, match="set per run"):
        backfill(daily, "2026-10-01", "2026-10-02", params={"day": "x"})


def test_backfill_reports_progress_run_by_run(pws: Workspace) -> None:
    from loopml.cli.progress import Tracker

    seen: list[dict[str, int]] = []
    tracker = Tracker(by_bytes=False)

    def progress(**counts: int) -> None:
        seen.append(counts)
        tracker(**counts)

    backfill(daily, "2026-10-01", "2026-10-04", parallel=2, progress=progress)
    assert seen[0] == {"total_files": 4}
    assert seen[1:] == [{"files": 1}] * 4
    assert (tracker.files, tracker.total_files) == (4, 4)
