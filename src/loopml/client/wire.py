"""The JSON of loopml's own API (``/api/loopml``): how records travel, both ways.

Both ends use these functions, so a record read through a server is equal to the one read
from the store. Times are ISO 8601 with their offset; a metric value that is not finite
travels as ``null`` (NaN), ``"Infinity"`` or ``"-Infinity"`` (JSON has no such numbers).
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from loopml.registry.signature import Signature
from loopml.registry.versions import ModelEvent, ModelVersion
from loopml.tracking.artifacts import ArtifactInfo
from loopml.tracking.experiments import Experiment
from loopml.tracking.search import RunRecord


def num(value: float | None) -> float | str | None:
    """A metric value for JSON: NaN (or None) → null, ±inf → "Infinity" / "-Infinity"."""
    if value is None or value != value:
        return None
    if value in (math.inf, -math.inf):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def unnum(value: Any) -> float:
    """The inverse of :func:`num` (null → NaN)."""
    if value is None:
        return math.nan
    return float(value)


def when(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def parse_when(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


# -- runs ----------------------------------------------------------------------------------


def run_to_json(record: RunRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "name": record.name,
        "experiment_id": record.experiment_id,
        "experiment": record.experiment,
        "status": record.status,
        "start_time": when(record.start_time),
        "end_time": when(record.end_time),
        "parent_run_id": record.parent_run_id,
        "deleted": record.deleted,
        "seed": record.seed,
        "error": record.error,
        "params": record.params,
        "metrics": {k: num(v) for k, v in record.metrics.items()},
        "tags": record.tags,
        "inputs": record.inputs,
        "environment": record.environment,
    }


def run_from_json(data: dict[str, Any]) -> RunRecord:
    start = parse_when(data["start_time"])
    assert start is not None
    return RunRecord(
        id=data["id"],
        name=data["name"],
        experiment_id=int(data["experiment_id"]),
        experiment=data["experiment"],
        status=data["status"],
        start_time=start,
        end_time=parse_when(data.get("end_time")),
        parent_run_id=data.get("parent_run_id"),
        deleted=bool(data.get("deleted")),
        seed=data.get("seed"),
        error=data.get("error"),
        params=dict(data.get("params") or {}),
        metrics={k: unnum(v) for k, v in (data.get("metrics") or {}).items()},
        tags=dict(data.get("tags") or {}),
        inputs=list(data.get("inputs") or []),
        environment=data.get("environment"),
    )


def listing_to_json(record: dict[str, Any]) -> dict[str, Any]:
    """A record of ``Runs.records`` (see :func:`loopml.tracking.search.search_records`)."""
    out = dict(record)
    out["start_time"] = when(record.get("start_time"))
    out["end_time"] = when(record.get("end_time"))
    out["metrics"] = {k: num(v) for k, v in record.get("metrics", {}).items()}
    return out


def listing_from_json(data: dict[str, Any]) -> dict[str, Any]:
    out = dict(data)
    out["start_time"] = parse_when(data.get("start_time"))
    out["end_time"] = parse_when(data.get("end_time"))
    out["metrics"] = {k: unnum(v) for k, v in (data.get("metrics") or {}).items()}
    return out


def artifact_to_json(info: ArtifactInfo) -> dict[str, Any]:
    return {"path": info.path, "size": info.size, "digest": info.digest}


def artifact_from_json(data: dict[str, Any]) -> ArtifactInfo:
    return ArtifactInfo(str(data["path"]), int(data["size"]), str(data["digest"]))


def experiment_to_json(exp: Experiment) -> dict[str, Any]:
    return {
        "id": exp.id,
        "name": exp.name,
        "created_at": when(exp.created_at),
        "description": exp.description,
        "run_count": exp.run_count,
    }


def experiment_from_json(data: dict[str, Any]) -> Experiment:
    created = parse_when(data["created_at"])
    assert created is not None
    return Experiment(
        id=int(data["id"]),
        name=data["name"],
        created_at=created,
        description=data.get("description"),
        run_count=int(data.get("run_count") or 0),
    )


# -- models --------------------------------------------------------------------------------


def version_to_json(mv: ModelVersion) -> dict[str, Any]:
    return {
        "name": mv.name,
        "version": mv.version,
        "stage": mv.stage,
        "flavor": mv.flavor,
        "digest": mv.digest,
        "run_id": mv.run_id,
        "created_at": when(mv.created_at),
        "signature": mv.signature.to_dict() if mv.signature else None,
        "environment": mv.environment,
        "description": mv.description,
        "aliases": list(mv.aliases),
        "feature_service": mv.feature_service,
    }


def version_from_json(data: dict[str, Any]) -> ModelVersion:
    created = parse_when(data["created_at"])
    assert created is not None
    signature = data.get("signature")
    return ModelVersion(
        name=data["name"],
        version=int(data["version"]),
        stage=data["stage"],
        flavor=data["flavor"],
        digest=data["digest"],
        run_id=data.get("run_id"),
        created_at=created,
        signature=Signature.from_dict(signature) if signature else None,
        environment=dict(data.get("environment") or {}),
        description=data.get("description"),
        aliases=tuple(data.get("aliases") or ()),
        feature_service=data.get("feature_service"),
    )


def event_to_json(event: ModelEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "name": event.name,
        "kind": event.kind,
        "version": event.version,
        "target": event.target,
        "from_version": event.from_version,
        "to_version": event.to_version,
        "actor": event.actor,
        "reason": event.reason,
        "verdict": event.verdict,
        "created_at": when(event.created_at),
    }


def event_from_json(data: dict[str, Any]) -> ModelEvent:
    created = parse_when(data["created_at"])
    assert created is not None
    return ModelEvent(
        id=int(data["id"]),
        name=data["name"],
        kind=data["kind"],
        version=data.get("version"),
        target=data.get("target"),
        from_version=data.get("from_version"),
        to_version=data.get("to_version"),
        actor=data.get("actor"),
        reason=data.get("reason"),
        verdict=data.get("verdict"),
        created_at=created,
    )


def model_summary_to_json(summary: dict[str, Any]) -> dict[str, Any]:
    """An entry of ``Models.list``."""
    return {**summary, "created_at": when(summary.get("created_at"))}


def model_summary_from_json(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "created_at": parse_when(data.get("created_at"))}
