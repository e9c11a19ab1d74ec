"""Tracking's tables: experiments, runs and what a run logs (see ``loopml.store.tables``).

Times are integer milliseconds since the epoch (UTC). A metric value of NaN is stored as
NULL because SQLite cannot hold NaN; ``value IS NULL`` reads back as NaN.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, ForeignKey, Index, Integer, String, Table, Text

from loopml.store.tables import KEY, RUN_ID, metadata

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
    # Covering: run search walks it in value order and reads run ids without the table.
    Index("ix_params_key_value_run", "key", "value", "run_id"),
)

tags = Table(
    "tags",
    metadata,
    Column("run_id", String(RUN_ID), ForeignKey("runs.id"), primary_key=True),
    Column("key", String(KEY), primary_key=True),
    Column("value", Text, nullable=False),
    Index("ix_tags_key_value_run", "key", "value", "run_id"),
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
