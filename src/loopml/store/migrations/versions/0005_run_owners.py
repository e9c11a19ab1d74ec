"""Tracking runs get an owner and a heartbeat, so a run whose process died shows as KILLED.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

KEY = 250


def upgrade() -> None:
    op.add_column("runs", sa.Column("owner", sa.String(KEY), nullable=True))
    op.add_column("runs", sa.Column("heartbeat_at", sa.BigInteger, nullable=True))
    op.create_index("ix_runs_status", "runs", ["status"])


def downgrade() -> None:
    op.drop_index("ix_runs_status", table_name="runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("heartbeat_at")
        batch.drop_column("owner")
