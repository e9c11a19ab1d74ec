"""Batches the HTTP client sent, by id, so that a replay stores nothing twice (loopml.server.api).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


RUN_ID = 32


def upgrade() -> None:
    op.create_table(
        "client_batches",
        sa.Column("batch_id", sa.String(64), primary_key=True),
        sa.Column("run_id", sa.String(RUN_ID), nullable=False),
        sa.Column("points", sa.Integer, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_client_batches_run_id", "client_batches", ["run_id"])


def downgrade() -> None:
    op.drop_index("ix_client_batches_run_id", table_name="client_batches")
    op.drop_table("client_batches")
