"""Pipelines' tables: pipeline runs, their task runs, current partitions, trigger cursors.

A pipeline run is also a tracking run (``tracking_run_id``); tracking's ``runs`` is imported
here so that table is on the metadata whenever this one is.
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
    String,
    Table,
    Text,
    UniqueConstraint,
)

from loopml.store.tables import KEY, RUN_ID, metadata
from loopml.tracking.tables import runs

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
    Column("tracking_run_id", String(RUN_ID), ForeignKey(runs.c.id), nullable=True),
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

# Per (pipeline, trigger) cursor: the last cron slot evaluated, the last event id seen.
trigger_state = Table(
    "trigger_state",
    metadata,
    Column("pipeline", String(KEY), primary_key=True),
    Column("trigger", String(KEY), primary_key=True),
    Column("value", Text, nullable=True),
    Column("updated_at", BigInteger, nullable=False),
)
