"""Tables of MLflow's API that loopml has no record of its own for.

- ``logged_models``: MLflow 3's logged models (``mlflow.<flavor>.log_model`` creates one, its
  files go to its artifact location, a model version's ``source`` may be ``models:/<id>``).
- ``proxied_artifacts``: files uploaded through ``/api/2.0/mlflow-artifacts`` to a path that
  is not a run's artifact folder (a run's files go to tracking's ``artifacts`` table, so
  ``loopml runs show`` lists them). Each path names a blob by its hash.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, ForeignKey, Index, Integer, String, Table, Text

from loopml.store.tables import KEY, RUN_ID, metadata
from loopml.tracking.tables import experiments

logged_models = Table(
    "logged_models",
    metadata,
    Column("id", String(64), primary_key=True),  # "m-" + 32 hex digits, as MLflow makes them
    Column("experiment_id", Integer, ForeignKey(experiments.c.id), nullable=False),
    Column("name", String(KEY), nullable=False),
    Column("source_run_id", String(RUN_ID), nullable=True),
    Column("status", String(16), nullable=False),  # PENDING | READY | FAILED
    Column("model_type", String(KEY), nullable=True),
    Column("artifact_location", Text, nullable=False),
    Column("tags", Text, nullable=True),  # JSON object
    Column("params", Text, nullable=True),  # JSON object
    Column("metrics", Text, nullable=True),  # JSON list of MLflow Metric objects
    Column("created_at", BigInteger, nullable=False),
    Column("updated_at", BigInteger, nullable=False),
    Column("deleted_at", BigInteger, nullable=True),
    Index("ix_logged_models_experiment_id", "experiment_id"),
)

proxied_artifacts = Table(
    "proxied_artifacts",
    metadata,
    Column("path", String(1024), primary_key=True),
    Column("digest", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("created_at", BigInteger, nullable=False),
)
