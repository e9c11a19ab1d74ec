"""Initial schema: experiments, runs, params, tags, metrics, latest metrics, artifacts, inputs.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

RUN_ID = 32
KEY = 250


def upgrade() -> None:
    op.create_table(
        "experiments",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(KEY), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("description", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_experiments"),
        sa.UniqueConstraint("name", name="uq_experiments_name"),
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.String(RUN_ID), nullable=False),
        sa.Column("experiment_id", sa.Integer, nullable=False),
        sa.Column("name", sa.String(KEY), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("start_time", sa.BigInteger, nullable=False),
        sa.Column("end_time", sa.BigInteger, nullable=True),
        sa.Column("parent_run_id", sa.String(RUN_ID), nullable=True),
        sa.Column("deleted_at", sa.BigInteger, nullable=True),
        sa.Column("seed", sa.BigInteger, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("environment", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
        sa.ForeignKeyConstraint(
            ["experiment_id"], ["experiments.id"], name="fk_runs_experiment_id_experiments"
        ),
        sa.ForeignKeyConstraint(["parent_run_id"], ["runs.id"], name="fk_runs_parent_run_id_runs"),
    )
    op.create_index("ix_runs_experiment_start", "runs", ["experiment_id", "start_time"])

    for name, value_nullable in (("params", False), ("tags", False)):
        op.create_table(
            name,
            sa.Column("run_id", sa.String(RUN_ID), nullable=False),
            sa.Column("key", sa.String(KEY), nullable=False),
            sa.Column("value", sa.Text, nullable=value_nullable),
            sa.PrimaryKeyConstraint("run_id", "key", name=f"pk_{name}"),
            sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=f"fk_{name}_run_id_runs"),
        )
    op.create_index("ix_params_key_value", "params", ["key", "value"])
    op.create_index("ix_tags_key", "tags", ["key"])

    op.create_table(
        "metrics",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("run_id", sa.String(RUN_ID), nullable=False),
        sa.Column("key", sa.String(KEY), nullable=False),
        sa.Column("value", sa.Float(53), nullable=True),
        sa.Column("step", sa.BigInteger, nullable=False),
        sa.Column("timestamp", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_metrics"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_metrics_run_id_runs"),
    )
    op.create_index("ix_metrics_run_key_step", "metrics", ["run_id", "key", "step"])

    op.create_table(
        "latest_metrics",
        sa.Column("run_id", sa.String(RUN_ID), nullable=False),
        sa.Column("key", sa.String(KEY), nullable=False),
        sa.Column("value", sa.Float(53), nullable=True),
        sa.Column("step", sa.BigInteger, nullable=False),
        sa.Column("timestamp", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("run_id", "key", name="pk_latest_metrics"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_latest_metrics_run_id_runs"),
    )
    op.create_index("ix_latest_metrics_key_value", "latest_metrics", ["key", "value"])

    op.create_table(
        "artifacts",
        sa.Column("run_id", sa.String(RUN_ID), nullable=False),
        sa.Column("path", sa.String(1024), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("run_id", "path", name="pk_artifacts"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_artifacts_run_id_runs"),
    )
    op.create_table(
        "run_inputs",
        sa.Column("run_id", sa.String(RUN_ID), nullable=False),
        sa.Column("name", sa.String(KEY), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("source", sa.Text, nullable=True),
        sa.Column("size", sa.BigInteger, nullable=True),
        sa.Column("file_count", sa.Integer, nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("run_id", "name", name="pk_run_inputs"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_run_inputs_run_id_runs"),
    )
    op.create_index("ix_run_inputs_digest", "run_inputs", ["digest"])


def downgrade() -> None:
    for table in (
        "run_inputs",
        "artifacts",
        "latest_metrics",
        "metrics",
        "tags",
        "params",
        "runs",
        "experiments",
    ):
        op.drop_table(table)
