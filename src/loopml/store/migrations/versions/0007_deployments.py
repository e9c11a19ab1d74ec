"""Serving: every revision of every deployment's configuration.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

KEY = 250


def upgrade() -> None:
    op.create_table(
        "deployments",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(KEY), nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("config", sa.Text, nullable=False),
        sa.Column("actor", sa.String(KEY), nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("name", "revision", name="uq_deployments_name_revision"),
    )
    op.create_index("ix_deployments_name", "deployments", ["name"])


def downgrade() -> None:
    op.drop_index("ix_deployments_name", table_name="deployments")
    op.drop_table("deployments")
