"""The feature store: versioned definitions, materialization progress, and the feature
service a model version reads.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

KEY = 250
NAME = 128


def upgrade() -> None:
    op.create_table(
        "feature_definitions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("name", sa.String(NAME), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("digest", sa.String(32), nullable=False),
        sa.Column("spec", sa.Text, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.UniqueConstraint(
            "kind", "name", "version", name="uq_feature_definitions_kind_name_version"
        ),
    )
    op.create_index("ix_feature_definitions_kind_name", "feature_definitions", ["kind", "name"])
    op.create_table(
        "feature_materializations",
        sa.Column("view", sa.String(NAME), primary_key=True),
        sa.Column("start_at", sa.BigInteger, primary_key=True),
        sa.Column("end_at", sa.BigInteger, primary_key=True),
        sa.Column("partitions", sa.Integer, primary_key=True),
        sa.Column("partition", sa.Integer, primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("rows", sa.Integer, nullable=True),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.add_column("model_versions", sa.Column("feature_service", sa.String(KEY), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        batch.drop_column("feature_service")
    op.drop_table("feature_materializations")
    op.drop_index("ix_feature_definitions_kind_name", table_name="feature_definitions")
    op.drop_table("feature_definitions")
