"""Experiment tracking: runs with params, metrics, tags, artifacts, inputs and environment."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from loopml.tracking.api import Experiments, Runs, seed_globals
    from loopml.tracking.artifacts import ArtifactInfo
    from loopml.tracking.experiments import Experiment
    from loopml.tracking.inputs import DatasetRef, dataset_ref
    from loopml.tracking.runs import Run, RunStatus
    from loopml.tracking.search import RunRecord

# Imported on first use: `loopml.tracking.inputs` (dataset hashing, shared with `loopml data`)
# must not pull in SQLAlchemy and pandas.
_LAZY = {
    "ArtifactInfo": "loopml.tracking.artifacts",
    "DatasetRef": "loopml.tracking.inputs",
    "Experiment": "loopml.tracking.experiments",
    "Run": "loopml.tracking.runs",
    "RunRecord": "loopml.tracking.search",
    "RunStatus": "loopml.tracking.runs",
    "Experiments": "loopml.tracking.api",
    "Runs": "loopml.tracking.api",
    "dataset_ref": "loopml.tracking.inputs",
    "seed_globals": "loopml.tracking.api",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'loopml.tracking' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "ArtifactInfo",
    "DatasetRef",
    "Experiment",
    "Run",
    "RunRecord",
    "RunStatus",
    "Experiments",
    "Runs",
    "dataset_ref",
    "seed_globals",
]
