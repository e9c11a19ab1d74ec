"""Pipelines: pipeline runs, task runs, partitions, events and trigger cursors.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

KEY = 250
RUN_ID = 32


def upgrade() -> None:
    op.create_table(
        "pipeline_runs",
        sa.Column("id", sa.String(RUN_ID), nullable=False),
        sa.Column("pipeline", sa.String(KEY), nullable=False),
        sa.Column("ref", sa.Text, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("params", sa.Text, nullable=False),
        sa.Column("partition", sa.String(KEY), nullable=True),
        sa.Column("trigger", sa.String(KEY), nullable=False),
        sa.Column("trigger_slot", sa.String(KEY), nullable=True),
        sa.Column("trigger_detail", sa.Text, nullable=True),
        sa.Column("tracking_run_id", sa.String(RUN_ID), nullable=True),
        sa.Column("executor", sa.String(KEY), nullable=True),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("owner", sa.String(KEY), nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("start_time", sa.BigInteger, nullable=True),
        sa.Column("end_time", sa.BigInteger, nullable=True),
        sa.Column("heartbeat_at", sa.BigInteger, nullable=True),
        sa.Column("superseded_by", sa.String(RUN_ID), nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_pipeline_runs"),
        sa.ForeignKeyConstraint(
            ["tracking_run_id"], ["runs.id"], name="fk_pipeline_runs_tracking_run_id_runs"
        ),
        sa.UniqueConstraint(
            "pipeline", "trigger", "trigger_slot", name="uq_pipeline_runs_pipeline_trigger_slot"
        ),
    )
    op.create_index(
        "ix_pipeline_runs_pipeline_created", "pipeline_runs", ["pipeline", "created_at"]
    )
    op.create_index("ix_pipeline_runs_status", "pipeline_runs", ["status"])

    op.create_table(
        "task_runs",
        sa.Column("pipeline_run_id", sa.String(RUN_ID), nullable=False),
        sa.Column("node", sa.String(KEY), nullable=False),
        sa.Column("task", sa.String(KEY), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("cache_key", sa.String(64), nullable=True),
        sa.Column("start_time", sa.BigInteger, nullable=True),
        sa.Column("end_time", sa.BigInteger, nullable=True),
        sa.Column("duration", sa.Float(53), nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("traceback", sa.Text, nullable=True),
        sa.Column("output_digest", sa.String(64), nullable=True),
        sa.Column("output_format", sa.String(32), nullable=True),
        sa.Column("output_size", sa.BigInteger, nullable=True),
        sa.Column("output_inline", sa.LargeBinary, nullable=True),
        sa.Column("cached_from", sa.String(RUN_ID), nullable=True),
        sa.PrimaryKeyConstraint("pipeline_run_id", "node", name="pk_task_runs"),
        sa.ForeignKeyConstraint(
            ["pipeline_run_id"],
            ["pipeline_runs.id"],
            name="fk_task_runs_pipeline_run_id_pipeline_runs",
        ),
    )
    op.create_index("ix_task_runs_cache_key", "task_runs", ["cache_key"])
    op.create_index("ix_task_runs_task_cache_key", "task_runs", ["task", "cache_key"])

    op.create_table(
        "pipeline_partitions",
        sa.Column("pipeline", sa.String(KEY), nullable=False),
        sa.Column("partition", sa.String(KEY), nullable=False),
        sa.Column("pipeline_run_id", sa.String(RUN_ID), nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("pipeline", "partition", name="pk_pipeline_partitions"),
        sa.ForeignKeyConstraint(
            ["pipeline_run_id"],
            ["pipeline_runs.id"],
            name="fk_pipeline_partitions_pipeline_run_id_pipeline_runs",
        ),
    )

    op.create_table(
        "events",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(KEY), nullable=True),
        sa.Column("payload", sa.Text, nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
    )
    op.create_index("ix_events_kind_subject_id", "events", ["kind", "subject", "id"])

    op.create_table(
        "trigger_state",
        sa.Column("pipeline", sa.String(KEY), nullable=False),
        sa.Column("trigger", sa.String(KEY), nullable=False),
        sa.Column("value", sa.Text, nullable=True),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("pipeline", "trigger", name="pk_trigger_state"),
    )


def downgrade() -> None:
    for table in ("trigger_state", "events", "pipeline_partitions", "task_runs", "pipeline_runs"):
        op.drop_table(table)
