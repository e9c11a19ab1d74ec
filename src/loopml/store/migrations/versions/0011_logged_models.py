"""MLflow 3 logged models, files proxied by the MLflow artifacts API, and what MLflow keeps on
experiments, the logged models of runs and dataset inputs that loopml's own tables have no column for
(loopml.server.mlflow_api).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


KEY = 250
RUN_ID = 32


def upgrade() -> None:
    op.create_table(
        "logged_models",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column(
            "experiment_id",
            sa.Integer,
            sa.ForeignKey("experiments.id", name="fk_logged_models_experiment_id_experiments"),
            nullable=False,
        ),
        sa.Column("name", sa.String(KEY), nullable=False),
        sa.Column("source_run_id", sa.String(RUN_ID), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("model_type", sa.String(KEY), nullable=True),
        sa.Column("artifact_location", sa.Text, nullable=False),
        sa.Column("tags", sa.Text, nullable=True),
        sa.Column("params", sa.Text, nullable=True),
        sa.Column("metrics", sa.Text, nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
        sa.Column("deleted_at", sa.BigInteger, nullable=True),
    )
    op.create_index("ix_logged_models_experiment_id", "logged_models", ["experiment_id"])
    op.create_table(
        "proxied_artifacts",
        sa.Column("path", sa.String(1024), primary_key=True),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "mlflow_experiment_state",
        sa.Column(
            "experiment_id",
            sa.Integer,
            sa.ForeignKey(
                "experiments.id", name="fk_mlflow_experiment_state_experiment_id_experiments"
            ),
            primary_key=True,
        ),
        sa.Column("deleted_at", sa.BigInteger, nullable=True),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "mlflow_experiment_tags",
        sa.Column(
            "experiment_id",
            sa.Integer,
            sa.ForeignKey(
                "experiments.id", name="fk_mlflow_experiment_tags_experiment_id_experiments"
            ),
            primary_key=True,
        ),
        sa.Column("key", sa.String(KEY), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_table(
        "mlflow_run_models",
        sa.Column(
            "run_id",
            sa.String(RUN_ID),
            sa.ForeignKey("runs.id", name="fk_mlflow_run_models_run_id_runs"),
            primary_key=True,
        ),
        sa.Column("model_id", sa.String(64), primary_key=True),
        sa.Column("direction", sa.String(8), primary_key=True),
        sa.Column("step", sa.BigInteger, nullable=True),
    )
    op.create_table(
        "mlflow_dataset_inputs",
        sa.Column(
            "run_id",
            sa.String(RUN_ID),
            sa.ForeignKey("runs.id", name="fk_mlflow_dataset_inputs_run_id_runs"),
            primary_key=True,
        ),
        sa.Column("name", sa.String(KEY), primary_key=True),
        sa.Column("source_type", sa.String(KEY), nullable=True),
        sa.Column("schema", sa.Text, nullable=True),
        sa.Column("profile", sa.Text, nullable=True),
        sa.Column("tags", sa.Text, nullable=True),
    )

    op.create_table(
        "mlflow_registry_tags",
        sa.Column(
            "model_id",
            sa.Integer,
            sa.ForeignKey(
                "registered_models.id", name="fk_mlflow_registry_tags_model_id_registered_models"
            ),
            primary_key=True,
        ),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("key", sa.String(KEY), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_table(
        "mlflow_version_sources",
        sa.Column(
            "model_id",
            sa.Integer,
            sa.ForeignKey(
                "registered_models.id", name="fk_mlflow_version_sources_model_id_registered_models"
            ),
            primary_key=True,
        ),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("storage_location", sa.Text, nullable=True),
        sa.Column("logged_model_id", sa.String(64), nullable=True),
        sa.Column("run_link", sa.Text, nullable=True),
        sa.Column("user_id", sa.String(KEY), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("mlflow_version_sources")
    op.drop_table("mlflow_registry_tags")
    op.drop_table("mlflow_dataset_inputs")
    op.drop_table("mlflow_run_models")
    op.drop_table("mlflow_experiment_tags")
    op.drop_table("mlflow_experiment_state")
    op.drop_table("proxied_artifacts")
    op.drop_index("ix_logged_models_experiment_id", table_name="logged_models")
    op.drop_table("logged_models")
