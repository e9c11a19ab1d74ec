"""The metadata schema (SQLAlchemy Core). Alembic migrations in ``migrations/`` create it.

Times are integer milliseconds since the epoch (UTC). A metric value of NaN is stored as
NULL because SQLite cannot hold NaN; ``value IS NULL`` reads back as NaN.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

KEY = 250
RUN_ID = 32

experiments = Table(
    "experiments",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(KEY), nullable=False, unique=True),
    Column("created_at", BigInteger, nullable=False),
    Column("description", Text, nullable=True),
)

runs = Table(
    "runs",
    metadata,
    Column("id", String(RUN_ID), primary_key=True),
    Column("experiment_id", Integer, ForeignKey("experiments.id"), nullable=False),
    Column("name", String(KEY), nullable=False),
    Column("status", String(16), nullable=False),
    Column("start_time", BigInteger, nullable=False),
    Column("end_time", BigInteger, nullable=True),
    Column("parent_run_id", String(RUN_ID), ForeignKey("runs.id"), nullable=True),
    Column("deleted_at", BigInteger, nullable=True),
    Column("seed", BigInteger, nullable=True),
    Column("error", Text, nullable=True),
    Column("environment", Text, nullable=True),  # JSON, see tracking/environment.py
    # host:pid:start of the process running it, and its last sign of life (store/liveness.py).
    Column("owner", String(KEY), nullable=True),
    Column("heartbeat_at", BigInteger, nullable=True),
    Index("ix_runs_experiment_start", "experiment_id", "start_time"),
    Index("ix_runs_status", "status"),
)

params = Table(
    "params",
    metadata,
    Column("run_id", String(RUN_ID), ForeignKey("runs.id"), primary_key=True),
    Column("key", String(KEY), primary_key=True),
    Column("value", Text, nullable=False),
    Index("ix_params_key_value", "key", "value"),
)

tags = Table(
    "tags",
    metadata,
    Column("run_id", String(RUN_ID), ForeignKey("runs.id"), primary_key=True),
    Column("key", String(KEY), primary_key=True),
    Column("value", Text, nullable=False),
    Index("ix_tags_key", "key"),
)

metrics = Table(
    "metrics",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("run_id", String(RUN_ID), ForeignKey("runs.id"), nullable=False),
    Column("key", String(KEY), nullable=False),
    Column("value", Float(53), nullable=True),
    Column("step", BigInteger, nullable=False),
    Column("timestamp", BigInteger, nullable=False),
    Index("ix_metrics_run_key_step", "run_id", "key", "step"),
)

# One row per (run, key): the point with the highest (step, timestamp). Search and sort use it.
latest_metrics = Table(
    "latest_metrics",
    metadata,
    Column("run_id", String(RUN_ID), ForeignKey("runs.id"), primary_key=True),
    Column("key", String(KEY), primary_key=True),
    Column("value", Float(53), nullable=True),
    Column("step", BigInteger, nullable=False),
    Column("timestamp", BigInteger, nullable=False),
    Index("ix_latest_metrics_key_value", "key", "value"),
)

artifacts = Table(
    "artifacts",
    metadata,
    Column("run_id", String(RUN_ID), ForeignKey("runs.id"), primary_key=True),
    Column("path", String(1024), primary_key=True),
    Column("digest", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

# Datasets a run read, by content hash, so a model can be traced to its exact data.
run_inputs = Table(
    "run_inputs",
    metadata,
    Column("run_id", String(RUN_ID), ForeignKey("runs.id"), primary_key=True),
    Column("name", String(KEY), primary_key=True),
    Column("digest", String(64), nullable=False),
    Column("source", Text, nullable=True),
    Column("size", BigInteger, nullable=True),
    Column("file_count", Integer, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    Index("ix_run_inputs_digest", "digest"),
)

# -- model registry ---------------------------------------------------------------------------

registered_models = Table(
    "registered_models",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(KEY), nullable=False, unique=True),
    Column("created_at", BigInteger, nullable=False),
    Column("description", Text, nullable=True),
)

model_versions = Table(
    "model_versions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_id", Integer, ForeignKey("registered_models.id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("run_id", String(RUN_ID), ForeignKey("runs.id"), nullable=True),
    Column("flavor", String(64), nullable=False),
    Column("digest", String(64), nullable=False),  # blob: the model's file manifest
    Column("signature", Text, nullable=True),  # JSON
    Column("environment", Text, nullable=True),  # JSON: library versions at registration
    Column("stage", String(16), nullable=False),  # None, Staging, Production, Archived
    Column("description", Text, nullable=True),
    Column("created_at", BigInteger, nullable=False),
    UniqueConstraint("model_id", "version", name="uq_model_versions_model_id_version"),
    # At most one Production version per model, enforced by the database itself.
    Index(
        "ix_model_versions_one_production",
        "model_id",
        unique=True,
        sqlite_where=text("stage = 'Production'"),
        postgresql_where=text("stage = 'Production'"),
    ),
)

model_aliases = Table(
    "model_aliases",
    metadata,
    Column("model_id", Integer, ForeignKey("registered_models.id"), primary_key=True),
    Column("alias", String(KEY), primary_key=True),
    Column("version", Integer, nullable=False),
)

# Append-only: every registration, stage move, alias move, gate verdict, approval, rollback.
model_events = Table(
    "model_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_id", Integer, ForeignKey("registered_models.id"), nullable=False),
    Column("version", Integer, nullable=True),
    Column("kind", String(32), nullable=False),
    Column("target", String(KEY), nullable=True),  # the stage or alias moved
    Column("from_version", Integer, nullable=True),
    Column("to_version", Integer, nullable=True),
    Column("actor", String(KEY), nullable=True),
    Column("reason", Text, nullable=True),
    Column("verdict", Text, nullable=True),  # JSON
    Column("created_at", BigInteger, nullable=False),
    Index("ix_model_events_model_time", "model_id", "created_at"),
)

# -- pipelines --------------------------------------------------------------------------------

# One row per pipeline run. A triggered run's (pipeline, trigger, trigger_slot) is unique: the
# insert of the row is the claim, so two schedulers never start the same triggered run twice.
pipeline_runs = Table(
    "pipeline_runs",
    metadata,
    Column("id", String(RUN_ID), primary_key=True),
    Column("pipeline", String(KEY), nullable=False),
    Column("ref", Text, nullable=True),  # MODULE:NAME or path/to/file.py:NAME, to reload it
    Column("status", String(16), nullable=False),  # QUEUED RUNNING FINISHED FAILED KILLED
    Column("params", Text, nullable=False),  # JSON
    Column("partition", String(KEY), nullable=True),
    Column("trigger", String(KEY), nullable=False),  # manual, backfill, schedule:…, data:…
    Column("trigger_slot", String(KEY), nullable=True),
    Column("trigger_detail", Text, nullable=True),  # JSON
    Column("tracking_run_id", String(RUN_ID), ForeignKey("runs.id"), nullable=True),
    Column("executor", String(KEY), nullable=True),
    Column("attempt", Integer, nullable=False),  # 1, then +1 per resume
    Column("owner", String(KEY), nullable=True),  # host:pid:start of the process running it
    Column("created_at", BigInteger, nullable=False),
    Column("start_time", BigInteger, nullable=True),
    Column("end_time", BigInteger, nullable=True),
    Column("heartbeat_at", BigInteger, nullable=True),
    Column("superseded_by", String(RUN_ID), nullable=True),  # a later run of its partition
    Column("error", Text, nullable=True),
    UniqueConstraint(
        "pipeline", "trigger", "trigger_slot", name="uq_pipeline_runs_pipeline_trigger_slot"
    ),
    Index("ix_pipeline_runs_pipeline_created", "pipeline", "created_at"),
    Index("ix_pipeline_runs_status", "status"),
)

task_runs = Table(
    "task_runs",
    metadata,
    Column("pipeline_run_id", String(RUN_ID), ForeignKey("pipeline_runs.id"), primary_key=True),
    Column("node", String(KEY), primary_key=True),
    Column("task", String(KEY), nullable=False),
    Column("position", Integer, nullable=False),  # topological order, for display
    Column("status", String(16), nullable=False),  # PENDING RUNNING COMPLETED CACHED FAILED SKIPPED
    Column("attempts", Integer, nullable=False),
    Column("cache_key", String(64), nullable=True),
    Column("start_time", BigInteger, nullable=True),
    Column("end_time", BigInteger, nullable=True),
    Column("duration", Float(53), nullable=True),  # seconds of the last attempt
    Column("error", Text, nullable=True),
    Column("traceback", Text, nullable=True),
    Column("output_digest", String(64), nullable=True),  # BLAKE3 of the stored bytes
    Column("output_format", String(32), nullable=True),
    Column("output_size", BigInteger, nullable=True),
    # Small outputs (a few KiB) live here; larger ones only in the blob store, by digest.
    Column("output_inline", LargeBinary, nullable=True),
    Column("cached_from", String(RUN_ID), nullable=True),  # the pipeline run that computed it
    Index("ix_task_runs_cache_key", "cache_key"),
    Index("ix_task_runs_task_cache_key", "task", "cache_key"),
)

# The run whose outputs are current for a partition: rerunning a partition moves this row.
pipeline_partitions = Table(
    "pipeline_partitions",
    metadata,
    Column("pipeline", String(KEY), primary_key=True),
    Column("partition", String(KEY), primary_key=True),
    Column("pipeline_run_id", String(RUN_ID), ForeignKey("pipeline_runs.id"), nullable=False),
    Column("updated_at", BigInteger, nullable=False),
)

# Append-only events that triggers react to (monitoring alerts, registry events, your own).
events = Table(
    "events",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("kind", String(64), nullable=False),
    Column("subject", String(KEY), nullable=True),
    Column("payload", Text, nullable=True),  # JSON
    Column("created_at", BigInteger, nullable=False),
    Index("ix_events_kind_subject_id", "kind", "subject", "id"),
)

# Per (pipeline, trigger) cursor: the last cron slot evaluated, the last event id seen.
trigger_state = Table(
    "trigger_state",
    metadata,
    Column("pipeline", String(KEY), primary_key=True),
    Column("trigger", String(KEY), primary_key=True),
    Column("value", Text, nullable=True),
    Column("updated_at", BigInteger, nullable=False),
)

# -- data contracts ---------------------------------------------------------------------------

# The validation schema attached to a dataset version (by its hash) or to a model version
# (its feature contract); the schema's JSON is a blob.
schemas = Table(
    "schemas",
    metadata,
    Column("subject_kind", String(16), primary_key=True),  # "dataset" | "model"
    Column("subject", String(KEY + 16), primary_key=True),  # data hash, or "name/version"
    Column("digest", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
)
