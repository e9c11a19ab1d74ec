"""Why each task of a pipeline run was reused from the cache or ran again.

    for line in explain_cache(run.id):
        print(line.node, line.status, line.reason)

Each run records what its tasks' cache keys were made of (an artifact of its tracking run,
``loopml/cache.json``): the parts of each task's code fingerprint and the digest of each
argument. A task that ran is compared with the same task in the newest earlier run of the
pipeline that recorded it, and the parts that differ are named: ``global flow.K changed``,
``function helpers.scale changed``, ``package numpy changed from 1.26.4 to 2.1.0``,
``argument day changed``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from loopml.exceptions import LoopmlError
from loopml.pipelines.fingerprint import changed_components
from loopml.pipelines.records import PipelineRunRecord, get_run, resolve_run_id
from loopml.pipelines.tables import pipeline_runs
from loopml.workspace import resolve_workspace

if TYPE_CHECKING:
    from loopml.workspace import Workspace, WorkspaceLike

#: How many earlier runs of the pipeline are searched for the same task.
LOOKBACK = 20


@dataclass(frozen=True)
class CacheExplanation:
    """Why task ``node`` was ``status`` (CACHED, COMPLETED, …): ``reason`` in words, and
    ``changes`` — the parts of its key that differ from ``compared_with`` (a run id)."""

    node: str
    status: str
    reason: str
    changes: list[str] = field(default_factory=list)
    compared_with: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "status": self.status,
            "reason": self.reason,
            "changes": list(self.changes),
            "compared_with": self.compared_with,
        }


def load_manifest(ws: Workspace, tracking_run_id: str | None) -> dict[str, Any] | None:
    """The cache manifest a run recorded, or None (an older run, or none written)."""
    from loopml.pipelines.runner import MANIFEST_ARTIFACT
    from loopml.tracking.artifacts import list_artifacts

    if not tracking_run_id:
        return None
    try:
        found = list_artifacts(ws.db, tracking_run_id, MANIFEST_ARTIFACT)
        if not found:
            return None
        value = json.loads(ws.blobs.get_bytes(found[0].digest))
    except (LoopmlError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def explain_cache(run_id: str, workspace: WorkspaceLike = None) -> list[CacheExplanation]:
    """For each task of pipeline run ``run_id`` (an id or unique prefix), why it was reused
    or ran, in execution order."""

    ws = resolve_workspace(workspace)
    record = get_run(ws.db, resolve_run_id(ws.db, run_id))
    mine = load_manifest(ws, record.tracking_run_id) or {}
    nodes: dict[str, Any] = mine.get("nodes", {})
    earlier = _earlier_manifests(ws, record)
    out = []
    for task in record.tasks:
        entry = nodes.get(task.node)
        if task.status == "CACHED":
            source = f" (output of run {task.cached_from[:8]})" if task.cached_from else ""
            reason = f"reused: its code and inputs are unchanged{source}"
            out.append(CacheExplanation(task.node, task.status, reason))
            continue
        if task.status in ("SKIPPED", "PENDING"):
            why = "an upstream task failed" if task.status == "SKIPPED" else "the run stopped"
            out.append(CacheExplanation(task.node, task.status, f"did not run: {why}"))
            continue
        if entry is None:
            reason = "no record of its cache key (an input failed to hash, or an older run)"
            out.append(CacheExplanation(task.node, task.status, reason))
            continue
        out.append(_compare(task.node, task.status, entry, mine, earlier))
    return out


def _compare(
    node: str,
    status: str,
    entry: dict[str, Any],
    mine: dict[str, Any],
    earlier: list[tuple[str, dict[str, Any]]],
) -> CacheExplanation:
    task = entry.get("task", node)
    for run_id, manifest in earlier:
        before = _find(manifest, node, task)
        if before is None:
            continue
        if before.get("key") == entry.get("key"):
            reason = (
                f"ran although run {run_id[:8]} had the same key: the cache was off "
                "(--no-cache or @task(cache=False)), that run did not complete it, or its "
                "output is gone"
            )
            return CacheExplanation(node, status, reason, [], run_id)
        code_before = manifest.get("tasks", {}).get(before.get("task", task), {})
        code_now = mine.get("tasks", {}).get(task, {})
        changes = changed_components(code_before, code_now)
        args_before, args_now = before.get("arguments", {}), entry.get("arguments", {})
        for name in sorted(set(args_before) | set(args_now)):
            if args_before.get(name) != args_now.get(name):
                changes.append(f"argument {name} changed")
        if manifest.get("recipe") != mine.get("recipe"):
            changes.append("the cache key recipe changed (a new loopml)")
        reason = "ran: " + ("; ".join(changes) if changes else "its key changed")
        return CacheExplanation(node, status, reason, changes, run_id)
    return CacheExplanation(node, status, "ran: no earlier run of this task to reuse")


def _find(manifest: dict[str, Any], node: str, task: str) -> dict[str, Any] | None:
    nodes = manifest.get("nodes", {})
    entry = nodes.get(node)
    if isinstance(entry, dict) and entry.get("task", task) == task:
        return entry
    for other in nodes.values():  # the same task under another node name
        if isinstance(other, dict) and other.get("task") == task:
            return other
    return None


def _earlier_manifests(
    ws: Workspace, record: PipelineRunRecord
) -> list[tuple[str, dict[str, Any]]]:
    created = round(record.created_at.timestamp() * 1000)
    with ws.db.read() as conn:
        rows = conn.execute(
            select(pipeline_runs.c.id, pipeline_runs.c.tracking_run_id)
            .where(
                pipeline_runs.c.pipeline == record.pipeline,
                pipeline_runs.c.created_at <= created,
                pipeline_runs.c.id != record.id,
            )
            .order_by(pipeline_runs.c.created_at.desc())
            .limit(LOOKBACK)
        ).all()
    found = []
    for row in rows:
        manifest = load_manifest(ws, row.tracking_run_id)
        if manifest is not None:
            found.append((row.id, manifest))
    return found


__all__ = ["CacheExplanation", "explain_cache"]
