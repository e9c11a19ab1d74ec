"""Serving: registry models over HTTP, deployments with progressive-delivery strategies, and
the prediction log monitoring reads.

    ws.deployments.create("churn", "churn@production")     # or `loopml deploy create`
    # `loopml serve churn --port 8000`: POST /predict, /invocations, /feedback; GET /health,
    # /ready, /metrics, /deployment

Deployments are revisions of a configuration in the metadata DB
(:mod:`loopml.serving.deployments`); every server replica follows the newest revision.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from loopml.exports import lazy_exports

if TYPE_CHECKING:
    from loopml.serving.app import create_app
    from loopml.serving.batch import BatchResult, batch_predict
    from loopml.serving.deployments import Deployment, DeploymentNotFound, Variant
    from loopml.serving.labels import IngestResult, ingest_labels
    from loopml.serving.log import PredictionLogger, read_feedback, read_predictions
    from loopml.serving.namespace import Deployments
    from loopml.serving.report import Report, promote_challenger
    from loopml.serving.router import Routing, assign

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "Deployment": "loopml.serving.deployments",
        "DeploymentNotFound": "loopml.serving.deployments",
        "Deployments": "loopml.serving.namespace",
        "Variant": "loopml.serving.deployments",
        "PredictionLogger": "loopml.serving.log",
        "read_feedback": "loopml.serving.log",
        "read_predictions": "loopml.serving.log",
        "create_app": "loopml.serving.app",
        "Routing": "loopml.serving.router",
        "assign": "loopml.serving.router",
        "BatchResult": "loopml.serving.batch",
        "batch_predict": "loopml.serving.batch",
        "IngestResult": "loopml.serving.labels",
        "ingest_labels": "loopml.serving.labels",
        "Report": "loopml.serving.report",
        "promote_challenger": "loopml.serving.report",
    },
)
__all__ = [
    "BatchResult",
    "Deployment",
    "DeploymentNotFound",
    "Deployments",
    "IngestResult",
    "PredictionLogger",
    "Report",
    "Routing",
    "Variant",
    "assign",
    "batch_predict",
    "create_app",
    "ingest_labels",
    "promote_challenger",
    "read_feedback",
    "read_predictions",
]
