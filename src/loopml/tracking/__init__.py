"""Experiment tracking: runs with params, metrics, tags, artifacts, inputs and environment."""

from loopml.tracking.api import TrackingAPI, seed_globals
from loopml.tracking.artifacts import ArtifactInfo
from loopml.tracking.experiments import Experiment
from loopml.tracking.inputs import DatasetRef, dataset_ref
from loopml.tracking.runs import Run, RunStatus
from loopml.tracking.search import RunRecord

__all__ = [
    "ArtifactInfo",
    "DatasetRef",
    "Experiment",
    "Run",
    "RunRecord",
    "RunStatus",
    "TrackingAPI",
    "dataset_ref",
    "seed_globals",
]
