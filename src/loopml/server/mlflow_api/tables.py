"""Tables of MLflow's API that loopml has no record of its own for.

- ``logged_models``: MLflow 3's logged models (``mlflow.<flavor>.log_model`` creates one, its
  files go to its artifact location, a model version's ``source`` may be ``models:/<id>``).
- ``proxied_artifacts``: files uploaded through ``/api/2.0/mlflow-artifacts`` to a path that
  is not a run's artifact folder (a run's files go to tracking's ``artifacts`` table, so
  ``loopml runs show`` lists them). Each path names a blob by its hash.
- ``mlflow_registry_tags``: tags of registered models (``version`` 0) and of model versions,
  which loopml's registry has no column for.
- ``mlflow_version_sources``: where a model version registered through MLflow's API came from
  (its ``source`` URI, the logged model, the run link) and where MLflow's client downloads
  its files (``storage_location``). Versions registered by loopml itself have no row.
- ``mlflow_experiment_state`` / ``mlflow_experiment_tags``: what MLflow keeps on an experiment
  that loopml's ``experiments`` table has no column for: its lifecycle (deleted or active) and
  its tags. An experiment without a state row is active.
- ``mlflow_run_models``: MLflow 3's logged models a run produced (``direction`` "output",
  with the step, from ``runs/outputs``) or used (``direction`` "input", from ``log-inputs``;
  the client logs one when a metric names a model).
- ``mlflow_dataset_inputs``: the parts of an MLflow dataset input that tracking's
  ``run_inputs`` (name, digest, source) has no column for: source type, schema, profile, tags.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, ForeignKey, Index, Integer, String, Table, Text

from loopml.registry.tables import registered_models
from loopml.store.tables import KEY, RUN_ID, metadata
from loopml.tracking.tables import experiments, runs

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

mlflow_experiment_state = Table(
    "mlflow_experiment_state",
    metadata,
    Column("experiment_id", Integer, ForeignKey(experiments.c.id), primary_key=True),
    Column("deleted_at", BigInteger, nullable=True),
    Column("updated_at", BigInteger, nullable=False),
)

mlflow_experiment_tags = Table(
    "mlflow_experiment_tags",
    metadata,
    Column("experiment_id", Integer, ForeignKey(experiments.c.id), primary_key=True),
    Column("key", String(KEY), primary_key=True),
    Column("value", Text, nullable=False),
)

mlflow_run_models = Table(
    "mlflow_run_models",
    metadata,
    Column("run_id", String(RUN_ID), ForeignKey(runs.c.id), primary_key=True),
    Column("model_id", String(64), primary_key=True),
    Column("direction", String(8), primary_key=True),  # input | output
    Column("step", BigInteger, nullable=True),
)

mlflow_dataset_inputs = Table(
    "mlflow_dataset_inputs",
    metadata,
    Column("run_id", String(RUN_ID), ForeignKey(runs.c.id), primary_key=True),
    Column("name", String(KEY), primary_key=True),
    Column("source_type", String(KEY), nullable=True),
    Column("schema", Text, nullable=True),
    Column("profile", Text, nullable=True),
    Column("tags", Text, nullable=True),  # JSON object
)

mlflow_registry_tags = Table(
    "mlflow_registry_tags",
    metadata,
    Column("model_id", Integer, ForeignKey(registered_models.c.id), primary_key=True),
    Column("version", Integer, primary_key=True),  # 0: the registered model's own tags
    Column("key", String(KEY), primary_key=True),
    Column("value", Text, nullable=False),
)

mlflow_version_sources = Table(
    "mlflow_version_sources",
    metadata,
    Column("model_id", Integer, ForeignKey(registered_models.c.id), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("source", Text, nullable=False),
    Column("storage_location", Text, nullable=True),
    Column("logged_model_id", String(64), nullable=True),
    Column("run_link", Text, nullable=True),
    Column("user_id", String(KEY), nullable=True),
)
