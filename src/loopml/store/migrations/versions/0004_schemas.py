"""Data contracts: validation schemas attached to dataset and model versions.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "schemas",
        sa.Column("subject_kind", sa.String(16), nullable=False),
        sa.Column("subject", sa.String(266), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("subject_kind", "subject", name="pk_schemas"),
    )


def downgrade() -> None:
    op.drop_table("schemas")
